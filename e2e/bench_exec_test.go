//go:build bench

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkExecOverhead measures what `nixgate exec` as the forced command
// adds to a real `nix store ping --store ssh://…` through a real OpenSSH
// sshd, against a plain forced command running nix-store directly with
// the same store. The two are run alternately in the same run; the
// reported figure is the median of the paired differences. Target: under
// 5 ms. Run it with bench/exec-overhead.sh.
func BenchmarkExecOverhead(b *testing.B) {
	bd := newBuilder(b, modeExec)
	ping := func(key string) time.Duration {
		start := time.Now()
		r := run(b, bd.clientEnv, nil, "nix", "store", "ping", "--store", "ssh://"+bd.Host(key))
		d := time.Since(start)
		if r.code != 0 {
			b.Fatalf("nix store ping via %s: %s", key, r)
		}
		return d
	}
	// Warm up both paths (page cache, store database).
	ping("build")
	ping("direct")
	var viaNixgate, direct, diff []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var n, d time.Duration
		if i%2 == 0 {
			n, d = ping("build"), ping("direct")
		} else {
			d, n = ping("direct"), ping("build")
		}
		viaNixgate = append(viaNixgate, ms(n))
		direct = append(direct, ms(d))
		diff = append(diff, ms(n-d))
	}
	b.StopTimer()
	b.ReportMetric(median(viaNixgate), "ms/ping-nixgate")
	b.ReportMetric(median(direct), "ms/ping-direct")
	b.ReportMetric(median(diff), "ms/added")
	b.ReportMetric(median(viaNixgate)/median(direct), "ratio")
	b.ReportMetric(0, "ns/op")
	if os.Getenv("NIXGATE_BENCH_REPORT") != "" {
		fmt.Printf("nix store ping through OpenSSH, %d alternating pairs:\n", b.N)
		fmt.Printf("  plain forced command (nix-store directly): median %.1f ms, p90 %.1f ms\n", median(direct), pct(direct, 0.9))
		fmt.Printf("  nixgate exec as the forced command:        median %.1f ms, p90 %.1f ms\n", median(viaNixgate), pct(viaNixgate, 0.9))
		fmt.Printf("  added by nixgate (median of pair differences): %.2f ms (target: under 5 ms), ratio %.3f\n", median(diff), median(viaNixgate)/median(direct))
	}
}

// BenchmarkExecDecide measures nixgate exec itself without SSH: the time
// from starting `nixgate exec` to nix-store answering the serve greeting,
// against starting nix-store directly.
func BenchmarkExecDecide(b *testing.B) {
	bd := newBuilder(b, modeExec)
	hello := func(argv []string, env []string) time.Duration {
		start := time.Now()
		cmd := exec.Command("setpriv", append([]string{"--reuid", fmt.Sprint(bd.account.uid), "--regid", fmt.Sprint(bd.account.gid), "--clear-groups", "--"}, argv...)...)
		cmd.Env = env
		cmd.Dir = bd.account.home
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		in.Write(serveHello)
		buf := make([]byte, 8)
		if _, err := out.Read(buf); err != nil {
			b.Fatalf("%q: %v", argv, err)
		}
		d := time.Since(start)
		in.Close()
		cmd.Wait()
		return d
	}
	base := []string{"HOME=" + bd.account.home, "USER=" + bd.account.name, "LOGNAME=" + bd.account.name, "PATH=/usr/bin:/bin"}
	viaEnv := append(slices.Clone(base), "SSH_ORIGINAL_COMMAND=nix-store --serve --write", "SSH_CONNECTION=127.0.0.1 1 127.0.0.1 22")
	via := []string{nixgateBin, "exec", "--config", bd.config, "--key", "build"}
	direct := []string{"/usr/bin/nix-store", "--serve", "--write", "--store", bd.store}
	hello(via, viaEnv)
	hello(direct, base)
	var diff []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		diff = append(diff, ms(hello(via, viaEnv)-hello(direct, base)))
	}
	b.ReportMetric(median(diff), "ms/added")
	b.ReportMetric(0, "ns/op")
}
