package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// selfTimeout bounds RunSelfAs's child.
const selfTimeout = 30 * time.Second

// RunSelfAs runs nixgate itself (os.Executable) with args, as cred, and
// returns what it printed on stdout: for the hidden subcommands that
// must find something out as the account itself, because the kernel
// answers for the calling process's own user (access(2) in
// HomeCheckCommand, who owns what it makes in admission's
// RuntimeDirCheckCommand). The child gets an empty environment, / as
// its directory and 30 seconds; the account must be able to execute
// nixgate. It fails when the child does not exit 0, with the child's
// stderr as the reason when it said something (the hidden subcommands
// print their error's line, policy.Line). A nil cred runs it as this
// process's user.
func RunSelfAs(cred *syscall.Credential, args ...string) ([]byte, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, errorf("finding nixgate itself: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), selfTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env, cmd.Dir = []string{}, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			return nil, errorf("%s", msg)
		}
		return nil, errorf("%w", err)
	}
	return out.Bytes(), nil
}
