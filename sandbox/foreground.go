package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// StoreDir returns cfg's store directory for account a, "~/" expanded.
func StoreDir(cfg *policy.Config, a Account) string {
	if d := ExpandDirs([]string{cfg.Sandbox.StoreDir}, a.Home); len(d) == 1 {
		return d[0]
	}
	return cfg.Sandbox.StoreDir
}

// CheckStoreDir returns nil when cfg's store directory for account a
// (StoreDir), which the sandbox modes show as /nix, is a directory. A
// store_dir that does not exist is refused, never made: a mistyped one
// would be an empty store that nothing says is wrong. The error is one
// line that names the setting, the path, where the configuration sets it
// (policy.Config.Where), and the fix, `mkdir -p DIR` for a new store.
// Direct mode has no store_dir: nil.
func CheckStoreDir(cfg *policy.Config, a Account) error {
	if cfg.Sandbox.Mode == policy.SandboxDirect || cfg.Sandbox.Mode == "" {
		return nil
	}
	dir := StoreDir(cfg, a)
	what := fmt.Sprintf("sandbox.store_dir %q", cfg.Sandbox.StoreDir)
	fix := "correct sandbox.store_dir"
	if at := cfg.Where("sandbox.store_dir"); at != "" {
		what = at + ": " + what
	} else {
		what = fmt.Sprintf("sandbox.store_dir (the default, %q)", cfg.Sandbox.StoreDir)
		fix = "set sandbox.store_dir to the store's directory"
		if cfg.Source != "" {
			fix += " in " + cfg.Source
		}
	}
	if dir != cfg.Sandbox.StoreDir {
		what += " is " + dir + ", which"
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf("%s does not exist: mkdir -p %s if it is to be a new store, else %s", what, dir, fix)
	case err != nil:
		return errorf("%s cannot be reached: %v", what, errors.Unwrap(err))
	case !fi.IsDir():
		return errorf("%s is not a directory: %s", what, fix)
	}
	return nil
}

// RunForeground runs c as a child with the caller's stdin, stdout and
// stderr, passes on SIGTERM, SIGINT and SIGHUP, and returns its exit
// status (128+n for signal n). Exec mode uses it where c cannot replace
// the process.
func (c *Command) RunForeground() (int, error) {
	cmd := &exec.Cmd{Path: c.Path, Args: c.Argv, Env: c.Env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if c.Namespace {
		cmd.SysProcAttr = namespaceAttr()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, c.startError(err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return 1, err
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// Check runs `nix-store --version` for account a the way cfg's sandbox
// runs commands, and reports what stands in the way; where builds run as
// the account (the userns and nix-user-chroot modes) it also proves that
// Nix's build sandbox works inside nixgate's (see BuildSandboxSettings).
// serve mode calls it at start-up and refuses to start on an error.
func Check(cfg *policy.Config, a Account) error {
	if out, err := runChecked(cfg, a, policy.NixStore, "--version"); err != nil {
		var notStarted *startFailure
		if errors.As(err, &notStarted) {
			return notStarted.err
		}
		return errorf("sandbox.mode %s cannot run nix-store: %s", cfg.Sandbox.Mode, strings.TrimPrefix(out, "nixgate: "))
	}
	switch cfg.Sandbox.Mode {
	case policy.SandboxUserNS, policy.SandboxNixUserChroot:
		return checkBuildSandbox(cfg, a)
	}
	return nil
}

// checkBuildSandbox builds a derivation whose builder is the nix-store
// that nixgate runs: a path outside the store, which only a build
// outside Nix's sandbox could run. Inside it, the build must fail to
// execute it (outside, nix-store --version would run and fail to make
// the output).
func checkBuildSandbox(cfg *policy.Config, a Account) error {
	probe, _, err := Which(cfg, a, policy.NixStore)
	if err != nil {
		return err
	}
	expr := fmt.Sprintf(`derivation { name = "nixgate-sandbox-probe"; system = builtins.currentSystem; builder = %q; args = [ "--version" ]; }`, probe)
	out, err := runChecked(cfg, a, "nix-build", "--no-out-link", "--expr", expr)
	var notStarted *startFailure
	if errors.As(err, &notStarted) {
		return notStarted.err
	}
	switch {
	case err == nil:
		return errorf("builds are not sandboxed in sandbox.mode %s: a probe build ran %s, which is outside the Nix store", cfg.Sandbox.Mode, probe)
	case strings.Contains(out, "executing '"+probe+"'"):
		return nil
	}
	return errorf("Nix's build sandbox does not work inside sandbox.mode %s, and builds would run unsandboxed as %s: %s", cfg.Sandbox.Mode, a.Name, lastLine(out))
}

// startFailure is runChecked's error when the command did not start.
type startFailure struct{ err error }

func (e *startFailure) Error() string { return e.err.Error() }

// runChecked runs prog with args for a the way cfg's sandbox runs
// commands, bounded in time, and returns its combined output; a
// *startFailure when it could not be started.
func runChecked(cfg *policy.Config, a Account, prog policy.Program, args ...string) (string, error) {
	d := policy.Decision{Allow: true, Program: prog, Args: args}
	c, err := Prepare(cfg, d, a)
	if err != nil {
		return "", &startFailure{err}
	}
	defer c.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path)
	cmd.Args, cmd.Env = c.Argv, c.Env
	if c.Namespace {
		cmd.SysProcAttr = namespaceAttr()
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", &startFailure{c.startError(err)}
	}
	err = cmd.Wait()
	return strings.TrimSpace(out.String()), err
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
