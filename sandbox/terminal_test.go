package sandbox

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// screen collects what a terminal shows, and says when it shows a string.
type screen struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	shown chan struct{}
}

func newScreen(want string) *screen { return &screen{want: want, shown: make(chan struct{})} }

func (s *screen) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	had := strings.Contains(s.buf.String(), s.want)
	s.buf.Write(b)
	if !had && s.want != "" && strings.Contains(s.buf.String(), s.want) {
		close(s.shown)
	}
	return len(b), nil
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func startOnTerminal(t *testing.T, script string, stdin io.Reader, out io.Writer) *Process {
	t.Helper()
	c := &Command{Path: "/bin/sh", Argv: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}}
	p, err := c.Start(nil, "/", IO{Stdin: stdin, Stdout: out, Terminal: &Terminal{Term: "xterm", Rows: 30, Cols: 100}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTerminal: the operator's shell gets a terminal of the client's size
// as stdin, stdout and stderr, what the client types, a window change,
// and its exit status back.
func TestTerminal(t *testing.T) {
	in, typed := io.Pipe()
	out := newScreen("ready")
	p := startOnTerminal(t, `test -t 0 && test -t 1 && test -t 2 && echo on-a-tty; stty size; echo ready; read line; stty size; echo got=$line >&2; exit 3`, in, out)
	<-out.shown
	if err := p.Resize(40, 120); err != nil {
		t.Errorf("Resize: %v", err)
	}
	io.WriteString(typed, "hello\n")
	status, sig, err := p.Wait()
	typed.Close()
	if status != 3 || sig != 0 || err != nil {
		t.Errorf("Wait = %d, %v, %v; want exit status 3", status, sig, err)
	}
	for _, want := range []string{"on-a-tty", "30 100", "40 120", "got=hello"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the terminal never showed %q:\n%s", want, out)
		}
	}
	if err := p.Resize(1, 1); err != nil {
		t.Errorf("Resize after the end: %v; want nothing done", err)
	}
}

// TestTerminalStop: a shell on a terminal is stopped like a Nix command,
// through its process group (its session), and reports the signal.
func TestTerminalStop(t *testing.T) {
	out := newScreen("ready")
	p := startOnTerminal(t, `echo ready; sleep 600`, nil, out)
	<-out.shown
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if status, sig, _ := p.Wait(); sig != syscall.SIGTERM {
		t.Errorf("Wait = status %d, signal %v; want SIGTERM", status, sig)
	}
}

// TestTerminalLeftOpen: a process left behind that holds the terminal
// (one that ignores the hang-up when the shell ends) does not hold up
// Wait, which waits for the output only so long.
func TestTerminalLeftOpen(t *testing.T) {
	out := newScreen("")
	p := startOnTerminal(t, `trap "" HUP; sleep 600 & echo bye`, nil, out)
	t.Cleanup(func() { p.Signal(syscall.SIGKILL) })
	if status, sig, err := p.Wait(); status != 0 || sig != 0 || err != nil {
		t.Errorf("Wait = %d, %v, %v; want exit status 0", status, sig, err)
	}
	if !strings.Contains(out.String(), "bye") {
		t.Errorf("output %q; want bye", out)
	}
}

func TestShell(t *testing.T) {
	cfg := &policy.Config{}
	a := Account{Name: "nobody-such-account", Home: "/var/empty"}
	tests := []struct {
		command string
		tty     *Terminal
		argv    []string
		term    string
	}{
		{"", nil, []string{"/bin/sh"}, ""},
		{"id", nil, []string{"/bin/sh", "-c", "id"}, ""},
		{"", &Terminal{Term: "xterm"}, []string{"-sh"}, "TERM=xterm"},
		{"id", &Terminal{Term: "xterm"}, []string{"sh", "-c", "id"}, "TERM=xterm"},
	}
	for _, tt := range tests {
		c := Shell(cfg, a, tt.command, tt.tty)
		if c.Path != "/bin/sh" || !slices.Equal(c.Argv, tt.argv) || !slices.Contains(c.Env, "SHELL=/bin/sh") || !slices.Contains(c.Env, "HOME=/var/empty") {
			t.Errorf("Shell(%q, %v) = %q %q %q; want %q", tt.command, tt.tty, c.Path, c.Argv, c.Env, tt.argv)
		}
		hasTerm := slices.ContainsFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") })
		if (tt.term != "") != hasTerm || (tt.term != "" && !slices.Contains(c.Env, tt.term)) {
			t.Errorf("Shell(%q, %v) env %q; want %q", tt.command, tt.tty, c.Env, tt.term)
		}
	}
}
