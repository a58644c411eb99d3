package sandbox

import (
	"bytes"
	"context"
	"fmt"
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
// runs commands, and reports what stands in the way. serve mode calls it
// at start-up.
func Check(cfg *policy.Config, a Account) error {
	d := policy.Decision{Allow: true, Program: policy.NixStore, Args: []string{"--version"}}
	c, err := Prepare(cfg, d, a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path)
	cmd.Args, cmd.Env = c.Argv, c.Env
	if c.Namespace {
		cmd.SysProcAttr = namespaceAttr()
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return c.startError(err)
	}
	if err := cmd.Wait(); err != nil {
		msg := strings.TrimSpace(out.String())
		return fmt.Errorf("sandbox: sandbox.mode %s cannot run nix-store: %s", cfg.Sandbox.Mode, strings.TrimPrefix(msg, "nixgate: "))
	}
	return nil
}
