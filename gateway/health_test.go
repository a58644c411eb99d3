package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/admission"
)

// TestUnhealthy checks that a builder whose store is below min_free
// refuses a new Nix session with one line naming the reason and exit
// status 1, logs the refusal and the change, and takes sessions again
// once healthy: the session reads the verdict of the last CheckHealth.
func TestUnhealthy(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	c := ts.dial(t)
	status := func() (int, string, string) {
		t.Helper()
		out, errOut, err := runCmd(t, c, "nix-store --serve --write")
		var ee *gossh.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("session: %v", err)
		}
		return ee.ExitStatus(), out, errOut
	}
	if code, _, _ := status(); code != 3 {
		t.Fatalf("healthy: exit %d; want Nix's 3", code)
	}
	cfg := *ts.srv.Config()
	cfg.Admission.MinFree = 1 << 62
	if err := ts.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	// Not checked yet: the session does not check for itself.
	if code, _, _ := status(); code != 3 {
		t.Fatalf("before CheckHealth: exit %d; want Nix's 3 (the cached verdict)", code)
	}
	if h := ts.srv.CheckHealth(); h.OK {
		t.Fatalf("CheckHealth with min_free 4 EiB = %+v; want unhealthy", h)
	}
	code, out, errOut := status()
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "nixgate: builder unhealthy: store ") || !strings.Contains(errOut, "below min_free 4096.0 PiB") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("unhealthy: exit %d, stdout %q, stderr %q; want 1 and one line with the reason", code, out, errOut)
	}
	for _, want := range []string{`"msg":"unhealthy: new Nix sessions are refused, so that Nix builds elsewhere"`, `"reason":"builder unhealthy: store `, `"decision":"deny"`, `"unhealthy":true`} {
		if !strings.Contains(ts.log(), want) {
			t.Errorf("log lacks %s:\n%s", want, ts.log())
		}
	}
	cfg.Admission.MinFree = 0
	ts.srv.Reload(&cfg)
	if h := ts.srv.CheckHealth(); !h.OK {
		t.Fatalf("CheckHealth with min_free 0 = %+v; want healthy", h)
	}
	if code, _, _ := status(); code != 3 {
		t.Errorf("healthy again: exit %d; want Nix's 3", code)
	}
	if !strings.Contains(ts.log(), `"msg":"healthy again: new Nix sessions are taken"`) {
		t.Errorf("the recovery is not logged:\n%s", ts.log())
	}
}

// TestHealthMetric checks the nixgate_healthy gauge, set at start and on
// each CheckHealth.
func TestHealthMetric(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Admission.MinFree = 1 << 62
	m := NewMetrics()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	srv, err := New(Options{Config: &cfg, HostSigners: []gossh.Signer{host}, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, m, "nixgate_healthy"); got != 0 {
		t.Errorf("nixgate_healthy at start, below min_free = %v; want 0", got)
	}
	cfg.Admission.MinFree = 0
	srv.Reload(&cfg)
	srv.CheckHealth()
	if got := gaugeValue(t, m, "nixgate_healthy"); got != 1 {
		t.Errorf("nixgate_healthy once healthy = %v; want 1", got)
	}
}

// gaugeValue returns the value of the gauge name in m.
func gaugeValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s metric", name)
	return 0
}

// TestHealthGreetsDaemonSparingly checks that CheckHealth greets the Nix
// daemon (a line in the daemon's log each time) only every
// admission.GreetInterval while it answers, and at every call while the builder
// is unhealthy.
func TestHealthGreetsDaemonSparingly(t *testing.T) {
	if _, err := os.Stat("/nix/store"); err != nil {
		t.Skip("no /nix/store, the daemon store's directory")
	}
	sock := filepath.Join(t.TempDir(), "socket")
	var greetings atomic.Int32
	listen := func() net.Listener {
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				greetings.Add(1)
				// Nix's daemon greeting: magic, version; then after the
				// client's 24 bytes, STDERR_LAST.
				var b [32]byte
				io.ReadFull(c, b[:8])
				c.Write([]byte{0x6f, 0x69, 0x78, 0x64, 0, 0, 0, 0, 34, 1, 0, 0, 0, 0, 0, 0})
				io.ReadFull(c, b[:24])
				c.Write([]byte{0x73, 0x74, 0x6c, 0x61, 0, 0, 0, 0})
				c.Close()
			}
		}()
		return l
	}
	l := listen()
	ts := newTestServer(t, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Nix.Store = "unix://" + sock
	cfg.Admission.MinFree = 0
	if err := ts.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if h := ts.srv.CheckHealth(); !h.OK {
			t.Fatalf("CheckHealth = %+v; want healthy", h)
		}
	}
	if n := greetings.Load(); n != 1 {
		t.Errorf("%d greetings in three checks; want 1 (a new socket, then every %s)", n, admission.GreetInterval)
	}
	l.Close() // removes the socket
	if h := ts.srv.CheckHealth(); h.OK || !strings.Contains(h.Reason, "no Nix daemon socket") {
		t.Fatalf("CheckHealth without the daemon = %+v; want unhealthy", h)
	}
	l = listen()
	defer l.Close()
	if h := ts.srv.CheckHealth(); !h.OK {
		t.Fatalf("CheckHealth with the daemon back = %+v; want healthy", h)
	}
	if n := greetings.Load(); n != 2 {
		t.Errorf("%d greetings; want 2 (greeted again once unhealthy)", n)
	}
}
