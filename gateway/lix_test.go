package gateway

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/policy"
)

// lixSession opens a session that plays Lix 2.93.0's start-up up to the
// "started" line, and returns it with its stdin and stderr.
func lixSession(t *testing.T, c *gossh.Client) (*gossh.Session, io.WriteCloser, *bytes.Buffer) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	var stderr bytes.Buffer
	s.Stderr = &stderr
	if err := s.Start("bash"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "echo started\n")
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "started\n" {
		t.Fatalf("Lix start-up: %q, %v", line, err)
	}
	go io.Copy(io.Discard, stdout)
	return s, stdin, &stderr
}

// waitSession waits for s to end, at most 10 seconds.
func waitSession(t *testing.T, s *gossh.Session) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
		return nil
	}
}

// runCmdWithin is runCmd that gives up after 10 seconds (a session that
// was wrongly allowed may never end).
func runCmdWithin(t *testing.T, c *gossh.Client, cmd string) (stderr string, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var e bytes.Buffer
	s.Stderr = &e
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	err = waitSession(t, s)
	return e.String(), err
}

// TestLixRevokedDuringDialogue: a session that sent "bash" before its
// key was revoked could still run nix-store --serve --write afterwards,
// as the decision used the configuration captured before the dialogue.
func TestLixRevokedDuringDialogue(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	s, stdin, stderr := lixSession(t, ts.dial(t))
	// The key is revoked (a reload) while Lix's dialogue is under way.
	revoked, err := config.Parse("revoked.toml", []byte("user = \"builder\"\n[[keys]]\nname = \"other\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(revoked); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "exec nix-store --serve --write\n")
	err = waitSession(t, s)
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 1 || !strings.Contains(stderr.String(), `nixgate: refused: key "ci" is not configured`) {
		t.Fatalf("Lix command after the key was revoked: %v, stderr %q; want refused", err, stderr.String())
	}
	if strings.Contains(ts.log(), `"msg":"allowed"`) {
		t.Errorf("the log records an allowed session:\n%s", ts.log())
	}
}

// TestLixDialogueDeadline: the dialogue had no deadline, so a client
// that sent "bash" held its session (and connection) for ever.
func TestLixDialogueDeadline(t *testing.T) {
	ts := newTestServer(t, "cat", "[limits]\nlogin_grace_time = \"300ms\"")
	s, _, stderr := lixSession(t, ts.dial(t))
	err := waitSession(t, s)
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 1 || !strings.Contains(stderr.String(), "nixgate: refused: Lix start-up: no command within 300ms") {
		t.Fatalf("Lix dialogue without a command: %v, stderr %q; want refused at the deadline", err, stderr.String())
	}
}

// TestLixCountsAgainstMaxSessions: a session in Lix's dialogue was not
// counted in max_sessions.
func TestLixCountsAgainstMaxSessions(t *testing.T) {
	ts := newTestServer(t, "sleep", "max_sessions = 1")
	s, stdin, _ := lixSession(t, ts.dial(t))
	errOut, err := runCmdWithin(t, ts.dial(t), "nix-store --serve --write")
	if err == nil || !strings.Contains(errOut, `nixgate: refused: key "ci" already has 1 sessions running (max_sessions)`) {
		t.Fatalf("second session while Lix's dialogue runs: %v %q; want refused by max_sessions", err, errOut)
	}
	// The Lix session itself goes on to run its command.
	io.WriteString(stdin, "exec nix-store --serve --write\n")
	readPid(t, filepath.Join(ts.dir, "self.pid"))
	s.Close()
}

// TestShellCountsAgainstMaxSessions: shell-role sessions were not
// counted in max_sessions.
func TestShellCountsAgainstMaxSessions(t *testing.T) {
	ts := newTestServerRole(t, "cat", policy.RoleShell, "max_sessions = 1")
	s, err := ts.dial(t).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pidFile := filepath.Join(ts.dir, "shell.pid")
	if err := s.Start("echo $$ > " + pidFile + "; exec sleep 1000"); err != nil {
		t.Fatal(err)
	}
	readPid(t, pidFile)
	errOut, err := runCmdWithin(t, ts.dial(t), "exec sleep 1000")
	if err == nil || !strings.Contains(errOut, `nixgate: refused: key "ci" already has 1 sessions running (max_sessions)`) {
		t.Fatalf("second shell session: %v %q; want refused by max_sessions", err, errOut)
	}
}
