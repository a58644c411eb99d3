package gateway

import (
	"fmt"
	"log/slog"
	"strings"

	gliderssh "github.com/gliderlabs/ssh"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// terminal is the operator's terminal: its size when the shell starts,
// and the client's window changes.
type terminal struct {
	size   sandbox.Terminal
	resize <-chan gliderssh.Window
}

// runShell gives a shell-role key the build account's login shell,
// started by package sandbox and run like a Nix command (see run): on a
// terminal with window-size changes when the client asked for one, else
// through pipes.
func (s *Server) runShell(sess gliderssh.Session, log *slog.Logger, cfg *policy.Config, d policy.Decision) {
	ptyReq, winCh, isPty := sess.Pty()
	var tty *terminal
	var size *sandbox.Terminal
	if isPty {
		tty = &terminal{size: sandbox.Terminal{Term: ptyReq.Term, Rows: uint16(ptyReq.Window.Height), Cols: uint16(ptyReq.Window.Width)}, resize: winCh}
		size = &tty.size
	}
	cmd := sandbox.Shell(cfg, s.account, d.Command, size)
	s.run(sess, log.With("argv", cmd.Argv, "shell", cmd.Path, "pty", isPty), cmd, nil, tty, nil)
}

// shellHint is what a key without the shell role is told when it asks
// for a terminal or a shell.
func shellHint(role policy.Role) string {
	return fmt.Sprintf("no terminal here: this builder runs only Nix's commands (role %s; an operator key needs role \"shell\")", strings.TrimSpace(string(role)))
}
