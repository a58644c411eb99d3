//go:build bench

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkSandboxModes measures what each sandbox costs, in the same
// run: nix store ping, and a nix copy --to of a 64 MiB path, through
// nixgate serve with direct mode (a root builder) and with userns and
// proot (a builder without root). Run it with bench/sandbox-modes.sh.
func BenchmarkSandboxModes(b *testing.B) {
	type result struct {
		mode       string
		ping, copy []float64
	}
	var results []*result
	builders := map[string]*builder{
		"direct": newBuilderIn(b, modeServe, ""),
		"userns": newBuilderIn(b, modeServe, "userns"),
		"proot":  newBuilderIn(b, modeServe, "proot"),
	}
	order := []string{"direct", "userns", "proot"}
	for _, m := range order {
		results = append(results, &result{mode: m})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, m := range order {
			bd := builders[m]
			start := time.Now()
			r := run(b, bd.clientEnv, nil, "nix", "store", "ping", "--store", "ssh://"+bd.Host("build"))
			if r.code != 0 {
				b.Fatalf("%s: ping: %s", m, r)
			}
			results[j].ping = append(results[j].ping, ms(time.Since(start)))
			p := bd.addBigPath(b, fmt.Sprintf("bench-%d", i), 64<<20)
			start = time.Now()
			r = run(b, bd.clientEnv, nil, "nix", "copy", "--to", "ssh://"+bd.Host("build"), p)
			if r.code != 0 {
				b.Fatalf("%s: copy: %s", m, r)
			}
			results[j].copy = append(results[j].copy, ms(time.Since(start)))
		}
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	base := results[0]
	for _, r := range results {
		b.ReportMetric(median(r.ping), "ms/ping-"+r.mode)
		b.ReportMetric(median(r.copy), "ms/copy64M-"+r.mode)
	}
	if os.Getenv("NIXGATE_BENCH_REPORT") != "" {
		fmt.Printf("sandbox modes through nixgate serve, %d rounds, medians:\n", b.N)
		fmt.Printf("  %-8s %12s %8s %16s %8s\n", "mode", "store ping", "ratio", "nix copy 64 MiB", "ratio")
		for _, r := range results {
			fmt.Printf("  %-8s %9.1f ms %7.2fx %13.1f ms %7.2fx\n", r.mode, median(r.ping), median(r.ping)/median(base.ping), median(r.copy), median(r.copy)/median(base.copy))
		}
	}
}
