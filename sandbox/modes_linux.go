//go:build linux

package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixgate/nixgate/policy"
)

// prepareSandbox builds the command for the userns, nix-user-chroot and
// proot modes. In each, nixgate's helper runs inside the sandbox to
// resolve the program and build PATH as seen there, and the home
// directory cannot be written: userns and nix-user-chroot remount it
// read-only, proot shows an empty directory in its place.
func prepareSandbox(cfg *policy.Config, argv []string, a Account, env []string) (*Command, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, errorf("finding nixgate itself: %w", err)
	}
	store := StoreDir(cfg, a)
	if err := CheckStoreDir(cfg, a); err != nil {
		return nil, err
	}
	spec := helperSpec{binDirs: cfg.BinDirs(), argv: argv}
	if spec.binDirs == nil {
		spec.binDirs = []string{}
	}
	switch cfg.Sandbox.Mode {
	case policy.SandboxUserNS, policy.SandboxNixUserChroot:
		env = withNixConfig(env, BuildSandboxSettings)
	}
	switch cfg.Sandbox.Mode {
	case policy.SandboxUserNS:
		spec.storeDir, spec.hideHome, spec.hide, spec.isolate = store, a.Home, secretPaths(cfg), true
		return &Command{Path: self, Argv: append([]string{self, HelperCommand}, spec.args()...), Env: env, Namespace: true}, nil
	case policy.SandboxNixUserChroot:
		bin, err := lookBinary(cfg.Sandbox.NixUserChroot, "sandbox.nix_user_chroot", "nix-user-chroot (or nixgate itself, linked as nix-user-chroot)")
		if err != nil {
			return nil, err
		}
		spec.hideHome, spec.hide, spec.isolate = a.Home, secretPaths(cfg), true
		return &Command{Path: bin, Argv: append([]string{bin, store, self, NestCommand}, spec.args()...), Env: env}, nil
	case policy.SandboxProot:
		bin, err := lookBinary(cfg.Sandbox.Proot, "sandbox.proot", "proot (apt-get install proot)")
		if err != nil {
			return nil, err
		}
		argv := []string{bin, "-b", store + ":/nix"}
		if a.Home != "" && a.Home != "/" {
			empty, err := emptyDir()
			if err != nil {
				return nil, err
			}
			argv = append(argv, "-b", empty+":"+a.Home)
			if under(self, a.Home) {
				// nixgate itself where the README installs it without
				// root, ~/.local/bin: shown in the empty home too.
				argv = append(argv, "-b", self+":"+self)
			}
			argv = append(argv, self, HelperCommand)
			return &Command{Path: bin, Argv: append(argv, spec.args()...), Env: env, scratch: []string{empty}}, nil
		}
		argv = append(argv, self, HelperCommand)
		return &Command{Path: bin, Argv: append(argv, spec.args()...), Env: env}, nil
	}
	return nil, errorf("unknown mode %q", cfg.Sandbox.Mode)
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// secretPaths are the files of nixgate's that Nix has no need to see:
// the configuration, the keys file, the host keys and serve's state
// directory.
func secretPaths(cfg *policy.Config) []string {
	var out []string
	for _, p := range append([]string{cfg.Source, cfg.AuthorizedKeys, cfg.Serve.StateDir}, cfg.Serve.HostKeys...) {
		if filepath.IsAbs(p) {
			out = append(out, filepath.Clean(p))
		}
	}
	return out
}

// lookBinary finds an external sandbox program by path, in PATH, or in
// SystemPath (a forced command's PATH may be anything).
func lookBinary(name, setting, what string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil && !strings.Contains(name, "/") {
		for _, d := range SystemPath {
			if q, err2 := exec.LookPath(filepath.Join(d, name)); err2 == nil {
				p, err = q, nil
				break
			}
		}
	}
	if err != nil {
		return "", errorf("%s not found (%s = %q): install %s, or set %s to its path", name, setting, name, what, setting)
	}
	return filepath.Abs(p)
}

// emptyDir returns a new empty directory that its owner cannot write,
// for one session; proot shows it in place of the home directory. A
// build can write into it (same uid), so no session shares it, and
// Command.Done removes it.
func emptyDir() (string, error) {
	p, err := os.MkdirTemp("", "nixgate-empty-")
	if err != nil {
		return "", errorf("%w", err)
	}
	if err := os.Chmod(p, 0o555); err != nil {
		os.Remove(p)
		return "", errorf("%w", err)
	}
	return p, nil
}

// startError turns a failure to start c into one that says what to
// change.
func (c *Command) startError(err error) error {
	var errno syscall.Errno
	if c.Namespace && errors.As(err, &errno) {
		return namespaceError("a new user namespace", errno)
	}
	return errorf("starting %s: %w", c.Path, err)
}

// UserChroot runs argv with dir as /nix, as nix-user-chroot does: the rest
// of the file system as it is, the home directory writable.
func UserChroot(dir string, argv []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, errorf("finding nixgate itself: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, errorf("%w", err)
	}
	spec := helperSpec{storeDir: abs, argv: argv}
	if wd, err := os.Getwd(); err == nil {
		spec.chdir = wd
	}
	c := &Command{Path: self, Argv: append([]string{self, HelperCommand}, spec.args()...), Env: os.Environ(), Namespace: true}
	return c.RunForeground()
}

// NestMain runs the helper with args in a new user and mount namespace
// and returns its exit status (see NestCommand).
func NestMain(args []string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, errorf("finding nixgate itself: %w", err)
	}
	c := &Command{Path: self, Argv: append([]string{self, HelperCommand}, args...), Env: os.Environ(), Namespace: true}
	return c.RunForeground()
}
