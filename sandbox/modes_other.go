//go:build !linux

package sandbox

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"

	"github.com/nixgate/nixgate/policy"
)

// errNoSandbox is why the sandbox modes refuse here: each needs Linux.
func errNoSandbox(mode policy.SandboxMode) error {
	return errorf("sandbox.mode %s needs Linux (user and mount namespaces, or ptrace for proot); on %s use sandbox.mode = \"direct\" with a Nix installed for the machine", mode, runtime.GOOS)
}

// prepareSandbox refuses: the userns, nix-user-chroot and proot modes
// exist only on Linux.
func prepareSandbox(cfg *policy.Config, argv []string, a Account, env []string) (*Command, error) {
	return nil, errNoSandbox(cfg.Sandbox.Mode)
}

// startError turns a failure to start c into an error of this package.
func (c *Command) startError(err error) error {
	return errorf("starting %s: %w", c.Path, err)
}

// namespaceAttr is never used here: no Command has Namespace set.
func namespaceAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// growPipe leaves the pipe as it is: only Linux can grow it.
func growPipe(w *os.File) {}

// UserChroot refuses: it needs Linux's user and mount namespaces.
func UserChroot(dir string, argv []string) (int, error) {
	return 0, errNoSandbox("user-chroot")
}

// NestMain refuses: it needs Linux's user and mount namespaces.
func NestMain(args []string) (int, error) {
	return 0, errNoSandbox(policy.SandboxNixUserChroot)
}

// HelperMain refuses: the helper runs only inside a Linux sandbox.
func HelperMain(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nixgate: "+policy.Line(errNoSandbox(policy.SandboxUserNS)))
	return 126
}
