package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/sandbox"
	"github.com/nixgate/nixgate/usage"
)

// TestUsage checks that a session that ran Nix and a refused one are
// counted for the key, in the usage store and the metrics.
func TestUsage(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Serve.StateDir = t.TempDir()
	m := NewMetrics()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	srv, err := New(Options{
		Config: &cfg, HostSigners: []gossh.Signer{host}, Account: sandbox.Account{Name: "builder", Home: ts.dir},
		Metrics: m, Usage: &usage.Recorder{StateDir: cfg.Serve.StateDir}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ts2 := *ts
	ts2.addr = l.Addr().String()
	c := ts2.dial(t)
	if _, _, err := runCmd(t, c, "nix-store --serve --write"); err == nil {
		t.Fatal("fake nix-store: exit 0; want 3")
	}
	if _, errOut, err := runCmd(t, c, "sh -c ls"); err == nil {
		t.Fatalf("sh -c ls allowed (stderr %q)", errOut)
	}
	// The refusal is counted after its line reaches the client.
	var got map[string]usage.Counters
	eventually(t, "the refusal counted", func() bool {
		got, err = usage.Sums(cfg.Serve.StateDir, time.Time{}, 0)
		return err == nil && got["ci"].Refusals == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	ci := got["ci"]
	if len(got) != 1 || ci.Sessions != 1 || ci.Refusals != 1 || ci.BytesOut == 0 || ci.Builds != 0 {
		t.Errorf("usage = %+v; want key ci: one session with bytes out, one refusal", got)
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"nixgate_usage_sessions_total": 1, "nixgate_usage_refusals_total": 1}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		ms := mf.GetMetric()
		if len(ms) != 1 || ms[0].GetLabel()[0].GetValue() != "ci" || ms[0].GetCounter().GetValue() != w {
			t.Errorf("%s = %v; want {key=\"ci\"} %v", mf.GetName(), ms, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("metrics missing: %v", want)
	}
}
