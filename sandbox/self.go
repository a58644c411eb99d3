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

// maxSelfOutput bounds what RunSelfAs keeps of its child's stdout and
// stderr: the hidden subcommands answer in a few lines.
const maxSelfOutput = 1 << 20

// RunSelfAs runs nixgate itself (os.Executable) with args, as cred, and
// returns what it printed on stdout: for the hidden subcommands that
// must find something out as the account itself, because the kernel
// answers for the calling process's own user (access(2) in
// HomeCheckCommand, who owns what it makes in admission's
// RuntimeDirCheckCommand). The child gets an empty environment, / as
// its directory and 30 seconds (a process it leaves behind with its
// output open, a second more), and may print at most maxSelfOutput
// bytes: it runs as the account, which may bend its own processes (by
// ptrace) and must not keep the caller, often root, waiting or filling
// memory. The account must be able to execute
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
	// A process the child leaves behind with its output open does not
	// keep the caller waiting past the child's end.
	cmd.WaitDelay = time.Second
	out, errOut := &cappedBuffer{}, &cappedBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	err = cmd.Run()
	switch {
	case out.over || errOut.over:
		return nil, errorf("nixgate %s as another account wrote more than %d bytes", args[0], maxSelfOutput)
	case err != nil:
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			return nil, errorf("%s", msg)
		}
		return nil, errorf("%w", err)
	}
	return out.Bytes(), nil
}

// cappedBuffer keeps up to maxSelfOutput bytes and then fails, which
// ends the copy of the child's output. (Only Write: a ReadFrom would be
// used instead, unbounded.)
type cappedBuffer struct {
	b    bytes.Buffer
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.b.Len()+len(p) > maxSelfOutput {
		c.over = true
		return 0, errorf("output too long")
	}
	return c.b.Write(p)
}

func (c *cappedBuffer) Bytes() []byte  { return c.b.Bytes() }
func (c *cappedBuffer) String() string { return c.b.String() }
