//go:build bench

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// filterCopies are the wall times, in ms, of nix copy over ssh-ng:// of
// one path, --to and --from, through three paths to the same OpenSSH
// sshd's builder store: OpenSSH's plain forced nix-daemon --stdio (no
// nixgate, no filter), nixgate exec (the filter in the forced command),
// and nixgate serve (the filter in nixgate's own server).
type filterCopies struct {
	toPlain, toBase, toExec, toServe         []float64
	fromPlain, fromBase, fromExec, fromServe []float64
}

// measureFilterCopies runs rounds of each copy, alternating the three.
func measureFilterCopies(t testing.TB, ossh, ng *builder, size, rounds int) filterCopies {
	t.Helper()
	var c filterCopies
	for r := 0; r < rounds; r++ {
		pPlain := ossh.addBigPath(t, fmt.Sprintf("ng-plain-%d-%d", size, r), size)
		pExec := ossh.addBigPath(t, fmt.Sprintf("ng-exec-%d-%d", size, r), size)
		pServe := ng.addBigPath(t, fmt.Sprintf("ng-serve-%d-%d", size, r), size)
		pBase := ossh.addBigPath(t, fmt.Sprintf("ng-base-%d-%d", size, r), size)
		c.toPlain = append(c.toPlain, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--to", "ssh-ng://"+ossh.Host("direct-ng"), pPlain) }))
		c.toBase = append(c.toBase, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--to", "ssh-ng://"+ossh.Host("baseline"), pBase) }))
		c.toExec = append(c.toExec, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--to", "ssh-ng://"+ossh.Host("build"), pExec) }))
		c.toServe = append(c.toServe, timed(t, func() { ng.mustNix(t, "nix", "copy", "--to", "ssh-ng://"+ng.Host("build"), pServe) }))
		ossh.mustNix(t, "nix", "store", "delete", pPlain, pExec, pBase)
		ng.mustNix(t, "nix", "store", "delete", pServe)
		c.fromPlain = append(c.fromPlain, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--from", "ssh-ng://"+ossh.Host("direct-ng"), pPlain) }))
		c.fromBase = append(c.fromBase, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--from", "ssh-ng://"+ossh.Host("baseline"), pBase) }))
		c.fromExec = append(c.fromExec, timed(t, func() { ossh.mustNix(t, "nix", "copy", "--from", "ssh-ng://"+ossh.Host("build"), pExec) }))
		c.fromServe = append(c.fromServe, timed(t, func() { ng.mustNix(t, "nix", "copy", "--from", "ssh-ng://"+ng.Host("build"), pServe) }))
		ossh.mustNix(t, "nix", "store", "delete", pPlain, pExec, pBase)
		ng.mustNix(t, "nix", "store", "delete", pServe)
	}
	return c
}

// table renders the copies as a Markdown table. The filter's target: the
// filtered nixgate exec at most 3 % slower than the same forced command
// without the filter (baseline).
func (c filterCopies) table(size int) string {
	var s strings.Builder
	s.WriteString("| size | direction | OpenSSH, plain nix-daemon --stdio | nixgate exec without the filter | nixgate exec with the filter | filter / without | filter / plain | nixgate serve (filter) | serve / plain | target (filter / without ≤ 1.03×) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, d := range []struct {
		dir                       string
		plain, base, exec, served []float64
	}{{"--to", c.toPlain, c.toBase, c.toExec, c.toServe}, {"--from", c.fromPlain, c.fromBase, c.fromExec, c.fromServe}} {
		ratio := median(d.exec) / median(d.base)
		fmt.Fprintf(&s, "| %d MiB | %s | %.0f ms | %.0f ms | %.0f ms | %.3f× | %.3f× | %.0f ms | %.3f× | %s |\n", size>>20, d.dir, median(d.plain), median(d.base), median(d.exec), ratio, median(d.exec)/median(d.plain), median(d.served), median(d.served)/median(d.plain), verdict(ratio <= 1.03))
	}
	return s.String()
}

// BenchmarkProtocolFilter measures what the protocol filter costs a 256
// MiB nix copy over ssh-ng://, both ways, against the same forced command
// without the filter (nixgate as it was before it, built by
// bench/protocol-filter.sh and named by NIXGATE_BENCH_BASELINE) and
// against OpenSSH's plain forced nix-daemon --stdio, in the same run.
func BenchmarkProtocolFilter(b *testing.B) {
	ossh := newBuilder(b, modeExec)
	ng := newBuilder(b, modeServe)
	rounds := 3
	if os.Getenv("NIXGATE_BENCH_LONG") != "" {
		rounds = 9
	}
	c := measureFilterCopies(b, ossh, ng, 256<<20, rounds)
	b.ReportMetric(median(c.toExec)/median(c.toBase), "to-ratio")
	b.ReportMetric(median(c.fromExec)/median(c.fromBase), "from-ratio")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("nix copy over ssh-ng://, median of %d rounds:\n\n%s", rounds, c.table(256<<20))
}
