//go:build bench

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkBuildLogOverhead measures what keeping build logs costs a
// chatty remote build (200,000 log lines, 3 MiB): nixgate serve with
// [build_logs] kept against the same nixgate with keep = false, over
// ssh:// and ssh-ng://, each round a fresh derivation for each, in
// rotating order, in the same run. Target: the ratio of the medians at
// most 1.03. Run it with bench/build-logs.sh.
func BenchmarkBuildLogOverhead(b *testing.B) {
	const lines = 200000
	with := newBuilder(b, modeServe)
	without := newBuilder(b, modeServe)
	writeFile(b, without.config, strings.Replace(readFile(b, without.config), "[limits]\n", "[build_logs]\nkeep = false\n\n[limits]\n", 1), 0o644)
	without.waitReload(b)
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		build := func(bd *builder, nonce string) float64 {
			drv := writeChattyDerivation(b, bd.root, nonce, lines)
			return timed(b, func() {
				bd.mustNix(b, "nix-build", drv, "--no-out-link", "-j0", "--builders", scheme+"://"+bd.Host("build")+" x86_64-linux - 1")
			})
		}
		build(with, fmt.Sprint("warm-", scheme, time.Now().UnixNano()))
		build(without, fmt.Sprint("warm-", scheme, time.Now().UnixNano()))
		var w, wo []float64
		for i := 0; i < b.N; i++ {
			n := fmt.Sprint(scheme, "-", i, "-", time.Now().UnixNano())
			if i%2 == 0 {
				w, wo = append(w, build(with, n+"w")), append(wo, build(without, n+"o"))
			} else {
				wo, w = append(wo, build(without, n+"o")), append(w, build(with, n+"w"))
			}
		}
		ratio := median(w) / median(wo)
		b.ReportMetric(ratio, scheme+"-ratio")
		if os.Getenv("NIXGATE_BENCH_REPORT") != "" {
			fmt.Printf("a build logging %d lines over %s://, %d rounds, alternated: logs kept median %.0f ms, not kept %.0f ms: ratio %.3f (target at most 1.03: %s)\n",
				lines, scheme, b.N, median(w), median(wo), ratio, verdict(ratio <= 1.03))
		}
	}
	// The logs were kept on one and not the other.
	kept := func(bd *builder) int {
		m, _ := filepath.Glob(filepath.Join(bd.root, "serve-state", "build-logs", "k-build", "*.drv.gz"))
		return len(m)
	}
	if kept(with) == 0 || kept(without) != 0 {
		b.Fatalf("logs kept: %d with, %d without", kept(with), kept(without))
	}
	b.ReportMetric(0, "ns/op")
}
