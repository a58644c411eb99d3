package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	gliderssh "github.com/gliderlabs/ssh"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// runShell gives a shell-role key the build account's login shell: on a
// terminal (github.com/creack/pty) with window-size changes when the
// client asked for one, else through pipes.
func (s *Server) runShell(sess gliderssh.Session, log *slog.Logger, cfg *policy.Config, d policy.Decision) {
	shell := sandbox.LoginShell(s.account.Name)
	env := append(sandbox.Env(cfg.BinDirs(), s.account, cfg.Nix.Env), "SHELL="+shell)
	ptyReq, winCh, isPty := sess.Pty()
	if !isPty {
		argv := []string{shell}
		if d.Command != "" {
			argv = append(argv, "-c", d.Command)
		}
		s.run(sess, log.With("argv", argv), &sandbox.Command{Path: shell, Argv: argv, Env: env}, nil)
		return
	}
	cmd := exec.Command(shell)
	cmd.Args = []string{"-" + filepath.Base(shell)} // a login shell
	if d.Command != "" {
		cmd.Args = []string{filepath.Base(shell), "-c", d.Command}
	}
	cmd.Env = append(env, "TERM="+ptyReq.Term)
	cmd.Dir = s.account.Home
	if fi, err := os.Stat(cmd.Dir); cmd.Dir == "" || err != nil || !fi.IsDir() {
		cmd.Dir = "/"
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		refuse(sess, log, "the builder is shutting down; try again shortly")
		return
	}
	s.active++
	s.mu.Unlock()
	defer s.sessionDone()
	start := time.Now()
	size := &pty.Winsize{Rows: uint16(ptyReq.Window.Height), Cols: uint16(ptyReq.Window.Width)}
	tty, err := pty.StartWithAttrs(cmd, size, &syscall.SysProcAttr{Credential: s.cred})
	if err != nil {
		refuse(sess, log, "cannot start the shell: "+err.Error(), "decision", "error")
		return
	}
	// Window changes and the final close take turns on the terminal.
	var ttyMu sync.Mutex
	ttyClosed := false
	defer func() {
		ttyMu.Lock()
		ttyClosed = true
		tty.Close()
		ttyMu.Unlock()
	}()
	s.metrics.session("allowed")
	log.Info("allowed", "decision", "allow", "shell", shell, "pty", true, "pid", cmd.Process.Pid)
	go func() {
		for w := range winCh {
			ttyMu.Lock()
			if !ttyClosed {
				pty.Setsize(tty, &pty.Winsize{Rows: uint16(w.Height), Cols: uint16(w.Width)})
			}
			ttyMu.Unlock()
		}
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-sess.Context().Done():
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	go io.Copy(tty, sess)
	io.Copy(sess, tty) // until the terminal closes with the shell
	err = cmd.Wait()
	close(done)
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
		if status < 0 {
			status = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	}
	log.Info("session ended", "decision", "allow", "exit_status", status, "duration", time.Since(start).String())
	sess.Exit(status)
}

// shellHint is what a key without the shell role is told when it asks
// for a terminal or a shell.
func shellHint(role policy.Role) string {
	return fmt.Sprintf("no terminal here: this builder runs only Nix's commands (role %s; an operator key needs role \"shell\")", strings.TrimSpace(string(role)))
}
