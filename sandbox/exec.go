package sandbox

import (
	"os"
	"strings"
	"syscall"

	"github.com/nixgate/nixgate/policy"
)

// Command is a Nix command ready to run: the Nix program itself (direct
// mode), or the sandbox that will run it.
type Command struct {
	// Path is the program to start.
	Path string
	// Argv is the full argv. Argv[0] is Path, or a login shell's name
	// ("-sh", see Shell).
	Argv []string
	// Env is the complete environment.
	Env []string
	// Namespace is set when Path must start in a new user and mount
	// namespace (userns mode): it cannot replace the calling process.
	Namespace bool

	// scratch are directories made for this command alone, removed by
	// Done.
	scratch []string
}

// Done removes what Prepare made for this command alone (proot's empty
// home); call it when the command has ended. A nil Command does nothing.
func (c *Command) Done() {
	if c == nil {
		return
	}
	for _, d := range c.scratch {
		os.Chmod(d, 0o755)
		os.RemoveAll(d)
	}
}

// Prepare builds the command that runs d's program for account a in
// cfg's sandbox mode: in direct mode nixgate's own resolved binary; in
// the other modes the sandbox, which resolves the program inside, where
// /nix is the store directory. The key's build limits are appended to
// NIX_CONFIG (see nixconfig.go). It fails for a Decision that does not
// allow.
func Prepare(cfg *policy.Config, d policy.Decision, a Account) (*Command, error) {
	if !d.Allow {
		return nil, errorf("decision does not allow: %s", d.Reason)
	}
	env := Env(cfg.BinDirs(), a, cfg.Nix.Env)
	if lines := d.Ops.Limits.NixSettings(); len(lines) > 0 {
		// The key's build limits, as the settings Nix starts with.
		env = withNixConfig(env, lines)
	}
	if cfg.Sandbox.Mode == policy.SandboxDirect || cfg.Sandbox.Mode == "" {
		path, err := Resolve(d.Program, cfg.BinDirs(), a.Home)
		if err != nil {
			return nil, err
		}
		if LocalStore(d.Args) {
			// Nix builds as the account here too: in its build sandbox.
			env = withNixConfig(env, BuildSandboxSettings)
		}
		return &Command{Path: path, Argv: d.Argv(path), Env: env}, nil
	}
	return prepareSandbox(cfg, append([]string{string(d.Program)}, d.Args...), a, env)
}

// LocalStore reports whether args name a store that the Nix process
// opens itself, and so builds in as the account: "local", "local?…" or a
// path. A daemon store (or none named, which is Nix's default) builds in
// the daemon, whose own settings decide; nixgate leaves those alone (an
// empty build-users-group given to a root daemon would build as root).
func LocalStore(args []string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--store" {
			s := args[i+1]
			return s == "local" || strings.HasPrefix(s, "local?") || strings.HasPrefix(s, "/")
		}
	}
	return false
}

// Exec replaces the calling process with c. It returns only on failure;
// a Command with Namespace set cannot be exec'd (see RunForeground).
func (c *Command) Exec() error {
	if c.Namespace {
		return errorf("%s must start in a new namespace", c.Path)
	}
	err := syscall.Exec(c.Path, c.Argv, c.Env)
	return errorf("exec %s: %w", c.Path, err)
}
