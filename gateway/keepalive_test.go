package gateway

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// stallingProxy forwards one TCP connection to addr until stall, after
// which it forwards nothing either way and closes nothing: a client
// whose machine vanished, or a path that went dark.
type stallingProxy struct {
	addr    string
	mu      sync.Mutex
	stalled bool
	cond    *sync.Cond
}

func newStallingProxy(t *testing.T, to string) *stallingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{addr: l.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		p.stalled = false // let the copies end with their sockets
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	go func() {
		in, err := l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", to)
		if err != nil {
			in.Close()
			return
		}
		t.Cleanup(func() { in.Close(); out.Close() })
		go p.copy(out, in)
		go p.copy(in, out)
	}()
	return p
}

// copy copies src to dst, holding every read while the proxy stalls.
func (p *stallingProxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.stalled {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallingProxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// TestKeepaliveEndsVanishedClient: a client that answers keepalives
// keeps its session however long it is silent; once its path goes dark
// (nothing arrives, nothing is closed) serve closes the connection after
// keepalive_count_max unanswered keepalives, which stops the session's
// command; with keepalives off the session of the vanished client is
// never ended (the control).
func TestKeepaliveEndsVanishedClient(t *testing.T) {
	const interval = 200 * time.Millisecond
	for _, tc := range []struct {
		name, limits string
		ended        bool
	}{
		{"on", `keepalive_interval = "200ms"` + "\nkeepalive_count_max = 2", true},
		{"off", `keepalive_interval = "0"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, "cat", "[limits]\n"+tc.limits)
			p := newStallingProxy(t, ts.addr)
			c := ts.dialAddr(t, p.addr)
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			stdin, _ := s.StdinPipe()
			defer stdin.Close()
			if err := s.Start("nix-store --serve --write"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the command to start", func() bool { return ts.srv.Running() == 1 })
			// Silent for many intervals, the client answering: it stays.
			time.Sleep(10 * interval)
			if ts.srv.Running() != 1 || strings.Contains(ts.log(), "answered no keepalive") {
				t.Fatalf("a silent session whose client answers keepalives was ended:\n%s", ts.log())
			}
			p.stall()
			if !tc.ended {
				time.Sleep(20 * interval)
				if ts.srv.Running() != 1 {
					t.Fatal("with keepalives off the session ended: the test does not test keepalives")
				}
				return
			}
			eventually(t, "the vanished client's session to end", func() bool { return ts.srv.Running() == 0 })
			if !strings.Contains(ts.log(), `"reason":"the client answered no keepalive"`) {
				t.Errorf("no record of why the connection was closed:\n%s", ts.log())
			}
		})
	}
}
