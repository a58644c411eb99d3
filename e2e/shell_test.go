package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tmux drives a terminal program the way a person would.
type tmux struct {
	t    *testing.T
	sock string
}

func (m tmux) run(args ...string) result {
	m.t.Helper()
	return run(m.t, nil, nil, append([]string{"tmux", "-S", m.sock}, args...)...)
}

// waitFor polls the pane until it shows want, bounded.
func (m tmux) waitFor(want string) string {
	m.t.Helper()
	var screen string
	for i := 0; i < 100; i++ {
		screen = m.run("capture-pane", "-p", "-t", "t").stdout
		if strings.Contains(screen, want) {
			return screen
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.t.Fatalf("the terminal never showed %q:\n%s", want, screen)
	return ""
}

// TestServeOperatorShell reaches the builder's login shell with a shell
// key through real ssh -tt on a real terminal (tmux): it runs a command,
// follows a window resize, and exits with a status; its end is logged,
// and a client that goes away takes it down, as with a Nix command.
func TestServeOperatorShell(t *testing.T) {
	b := newBuilder(t, modeServe)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is missing (package tmux)")
	}
	m := tmux{t: t, sock: filepath.Join(b.root, "tmux.sock")}
	line := fmt.Sprintf("ssh -F %s -tt %s; echo SSH-EXIT=$?; sleep 600", b.sshConfig, b.Host("op"))
	if r := m.run("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", line); r.code != 0 {
		t.Fatalf("tmux: %s", r)
	}
	t.Cleanup(func() { m.run("kill-server") })

	m.run("send-keys", "-t", "t", "echo hello-$((6*7)) $(id -un)", "Enter")
	m.waitFor("hello-42 " + b.account.name)
	m.run("send-keys", "-t", "t", "stty size", "Enter")
	m.waitFor("30 100")
	m.run("resize-window", "-t", "t", "-x", "120", "-y", "40")
	m.run("send-keys", "-t", "t", "clear; stty size", "Enter")
	m.waitFor("40 120")
	m.run("send-keys", "-t", "t", "exit 7", "Enter")
	m.waitFor("SSH-EXIT=7")
	waitLog(t, b, "allowed", map[string]string{"key": "op", "pty": "true"})
	// Its end is logged as a Nix command's is.
	waitLog(t, b, "session ended", map[string]string{"key": "op", "pty": "true", "exit_status": "7", "duration": "s"})

	// A client that goes away takes the shell with it, as it takes Nix:
	// SIGTERM (which an interactive shell ignores), then SIGKILL, and
	// the signal is logged.
	if r := m.run("respawn-pane", "-k", "-t", "t", fmt.Sprintf("ssh -F %s -tt %s", b.sshConfig, b.Host("op"))); r.code != 0 {
		t.Fatalf("tmux: %s", r)
	}
	m.run("send-keys", "-t", "t", "echo again-$((6*7))", "Enter")
	m.waitFor("again-42")
	if r := m.run("respawn-pane", "-k", "-t", "t", "sleep 600"); r.code != 0 {
		t.Fatalf("tmux: %s", r)
	}
	waitLog(t, b, "session ended", map[string]string{"key": "op", "pty": "true", "signal": "SIGKILL"})

	// Without a terminal, the shell key runs a command through the shell.
	r := b.sshWith(t, "op", nil, "echo $((2+3)); exit 3", nil)
	if r.code != 3 || strings.TrimSpace(r.stdout) != "5" {
		t.Errorf("ssh op command: %s", r)
	}
}

// TestExecShellRoleRefused: under OpenSSH the shell role has no meaning.
func TestExecShellRoleRefused(t *testing.T) {
	b := newBuilder(t, modeExec)
	r := b.ssh(t, "op", "id", nil)
	checkRefused(t, b, r, "id", "the shell role is for serve mode")
}
