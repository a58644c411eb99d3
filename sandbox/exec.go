package sandbox

import (
	"fmt"
	"syscall"

	"github.com/nixgate/nixgate/policy"
)

// Command is a resolved Nix command, ready to run.
type Command struct {
	// Path is the resolved program.
	Path string
	// Argv is the full argv, Argv[0] == Path.
	Argv []string
	// Env is the complete environment.
	Env []string
}

// Prepare resolves d's program in cfg's Nix directories and builds its
// argv and environment for account a. It fails for a Decision that does
// not allow.
func Prepare(cfg *policy.Config, d policy.Decision, a Account) (*Command, error) {
	if !d.Allow {
		return nil, fmt.Errorf("sandbox: decision does not allow: %s", d.Reason)
	}
	path, err := Resolve(d.Program, cfg.BinDirs(), a.Home)
	if err != nil {
		return nil, err
	}
	return &Command{Path: path, Argv: d.Argv(path), Env: Env(cfg.BinDirs(), a, cfg.Nix.Env)}, nil
}

// Exec replaces the calling process with c. It returns only on failure.
func (c *Command) Exec() error {
	err := syscall.Exec(c.Path, c.Argv, c.Env)
	return fmt.Errorf("sandbox: exec %s: %w", c.Path, err)
}
