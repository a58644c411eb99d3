//go:build bench

package e2e

// What the benchmarks share, behind the build tag bench like every
// bench_*_test.go file, so that none of it is in the correctness tests'
// binary: statistics of the series, timing, the report's verdicts and the
// memory of a process tree. What correctness tests measure too (ms,
// vmRSS, burst) is in the untagged harness.

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// median is the 50th percentile of xs (see pct).
func median(xs []float64) float64 { return pct(xs, 0.5) }

// pct is the p-th quantile (0 to 1) of xs, the nearest sample; 0 for no
// samples.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

// timed runs f and returns how long it took, in ms.
func timed(b testing.TB, f func()) float64 {
	start := time.Now()
	f()
	return ms(time.Since(start))
}

// verdict marks a target in the report as met or missed.
func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(**MISSED**)"
}

// treeRSS sums VmRSS (bytes) of pid and all its descendants.
func treeRSS(pid int) int64 {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	var total int64
	var walk func(int)
	walk = func(p int) {
		total += vmRSS(p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return total
}
