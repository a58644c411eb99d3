package gateway

import "testing"

// BenchmarkAdmissionPath measures what a session's path pays for the drain
// and health checks in serve mode: reading state_dir's drain file (one
// open(2) of a file that is not there) and loading the health verdict
// that CheckHealth keeps. bench/admission-overhead.sh puts the same
// checks against nix store ping end to end; this is the part of it that
// is nixgate's alone, in µs against a ping of about 100 ms.
func BenchmarkAdmissionPath(b *testing.B) {
	ts := newTestServer(b, "exit3", "")
	cfg := *ts.srv.Config()
	cfg.Serve.StateDir = b.TempDir()
	if err := ts.srv.Reload(&cfg); err != nil {
		b.Fatal(err)
	}
	ts.srv.CheckHealth()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d, _ := ts.srv.draining(); d {
			b.Fatal("draining")
		}
		if ok, why := ts.srv.healthy(); !ok {
			b.Fatalf("unhealthy: %s", why)
		}
	}
}
