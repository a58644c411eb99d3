package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/nixproto"
)

// TestDrain checks that a draining builder refuses a new session with one
// line and exit status 1, logs the refusal, and takes sessions again
// after the drain ends, all without a reload.
func TestDrain(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Serve.StateDir = t.TempDir()
	if err := ts.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
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
		t.Fatalf("not draining: exit %d; want Nix's 3", code)
	}
	if err := admission.SetDrain(cfg.Serve.StateDir, "disk swap"); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := status(); code != 1 || out != "" || errOut != "nixgate: builder draining: disk swap\n" {
		t.Errorf("draining: exit %d, stdout %q, stderr %q; want 1 and one line", code, out, errOut)
	}
	log := ts.log()
	for _, want := range []string{`"msg":"draining: new sessions are refused, running ones finish"`, `"reason":"builder draining: disk swap"`, `"decision":"deny"`, `"draining":true`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if err := admission.ClearDrain(cfg.Serve.StateDir); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := status(); code != 3 {
		t.Errorf("drain ended: exit %d; want Nix's 3", code)
	}
	if !strings.Contains(ts.log(), `"msg":"not draining: new sessions are taken"`) {
		t.Errorf("the end of the drain is not logged:\n%s", ts.log())
	}
}

// TestDrainMetric checks the nixgate_draining gauge, read at start, on
// CheckDrain and on reload.
func TestDrainMetric(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Serve.StateDir = t.TempDir()
	admission.SetDrain(cfg.Serve.StateDir, "")
	m := NewMetrics()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	srv, err := New(Options{Config: &cfg, HostSigners: []gossh.Signer{host}, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if got := drainingValue(t, m); got != 1 {
		t.Errorf("nixgate_draining at start = %v; want 1", got)
	}
	admission.ClearDrain(cfg.Serve.StateDir)
	if srv.CheckDrain() || drainingValue(t, m) != 0 {
		t.Errorf("after drain --off: CheckDrain true or nixgate_draining = %v; want 0", drainingValue(t, m))
	}
	admission.SetDrain(cfg.Serve.StateDir, "")
	if err := srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if got := drainingValue(t, m); got != 1 {
		t.Errorf("nixgate_draining after reload = %v; want 1", got)
	}
}

// drainingValue returns the value of nixgate_draining in m.
func drainingValue(t *testing.T, m *Metrics) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "nixgate_draining" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no nixgate_draining metric")
	return 0
}

// TestDrainLetsRunningSessionsFinish checks that a drain refuses only new
// sessions: one already running goes on and ends as it would have.
func TestDrainLetsRunningSessionsFinish(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	cfg := *ts.srv.Config()
	cfg.Serve.StateDir = t.TempDir()
	if err := ts.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdin, _ := s.StdinPipe()
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the command to start", func() bool { return ts.srv.Running() == 1 })
	if err := admission.SetDrain(cfg.Serve.StateDir, "now"); err != nil {
		t.Fatal(err)
	}
	// A new session is refused...
	if _, errOut, _ := runCmd(t, c, "nix-store --serve --write"); errOut != "nixgate: builder draining: now\n" {
		t.Errorf("new session while draining: stderr %q", errOut)
	}
	// ...the running one still works and ends as it would have: the fake
	// nix-store echoes the hello and a QueryPathInfos.
	request := binary.LittleEndian.AppendUint64(nil, nixproto.ServeMagicClient)
	request = binary.LittleEndian.AppendUint64(request, nixproto.ServeMaxVersion)
	request = binary.LittleEndian.AppendUint64(request, 2) // QueryPathInfos
	request = binary.LittleEndian.AppendUint64(request, 1)
	request = binary.LittleEndian.AppendUint64(request, 56)
	request = append(request, "/nix/store/00000000000000000000000000000000-stillrunning"...)
	stdin.Write(request)
	stdin.Close()
	hello := binary.LittleEndian.AppendUint64(nil, nixproto.ServeMagicServer)
	hello = binary.LittleEndian.AppendUint64(hello, nixproto.ServeMaxVersion)
	if err := s.Wait(); err != nil || !bytes.Equal(out.Bytes(), append(hello, request...)) {
		t.Errorf("running session after the drain: %v %q; want exit 0 and the echo", err, out.String())
	}
}
