//go:build bench

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// noQuickAckPatch takes out of nixgate the immediate acknowledgement of
// what a connection reads during its handshake (gateway's quickAck).
var noQuickAckPatch = map[string][]*regexp.Regexp{
	"gateway/conn.go": {regexp.MustCompile(`(?m)^\s*quickAck\(c\.raw\)\n`)},
}

// delayedACKs reads the kernel's count of delayed acknowledgements sent
// when their timer fired (TcpExt DelayedACKs, for every socket of the
// network namespace); -1 when it cannot be read.
func delayedACKs() int {
	data, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "DelayedACKs" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					return -1
				}
				return v
			}
		}
	}
	return -1
}

// pingSeries is one server's rounds: the time of each ping in ms and
// the delayed-ACK timeouts the machine had during it.
type pingSeries struct {
	ms   []float64
	acks []float64
}

func (p *pingSeries) report(name string) {
	fmt.Printf("  %-40s median %5.1f ms, min %5.1f, p10 %5.1f, p90 %5.1f, max %5.1f; rounds >= 30 ms over min: %2d of %d; delayed ACKs per ping: median %.0f, max %.0f\n",
		name+":", median(p.ms), pct(p.ms, 0), pct(p.ms, 0.1), pct(p.ms, 0.9), pct(p.ms, 1), slow(p.ms), len(p.ms), median(p.acks), pct(p.acks, 1))
}

// slow counts the rounds at least 30 ms slower than the fastest.
func slow(xs []float64) int {
	n := 0
	for _, x := range xs {
		if x >= pct(xs, 0)+30 {
			n++
		}
	}
	return n
}

// BenchmarkHandshakeQuickAck measures a real `nix store ping --store
// ssh://…` (Nix's own ssh client) through nixgate serve as it is against
// the same source built without quickAck, with OpenSSH's sshd and a
// plain forced nix-store as the reference, alternated in the same run.
// Without it, OpenSSH's client, which leaves Nagle's algorithm on until
// its session channel is open, waits once or twice per connection for a
// delayed acknowledgement (40 ms each). Run it with
// bench/handshake-ack.sh.
func BenchmarkHandshakeQuickAck(b *testing.B) {
	with := newBuilder(b, modeServe)
	without := newBuilderWith(b, modeServe, builderOptions{bin: buildPatched(b, noQuickAckPatch)})
	ossh := newBuilder(b, modeExec)
	for _, bd := range []*builder{with, without} {
		writeFile(b, bd.config, allowPingRate(b, readFile(b, bd.config)), 0o644)
		bd.waitReload(b)
	}
	ping := func(bd *builder, key string, s *pingSeries) {
		before := delayedACKs()
		s.ms = append(s.ms, timed(b, func() { bd.mustNix(b, "nix", "store", "ping", "--store", "ssh://"+bd.Host(key)) }))
		s.acks = append(s.acks, float64(delayedACKs()-before))
	}
	var w, wo, o, warm pingSeries
	ping(with, "build", &warm)
	ping(without, "build", &warm)
	ping(ossh, "direct", &warm)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		switch i % 3 {
		case 0:
			ping(with, "build", &w)
			ping(without, "build", &wo)
			ping(ossh, "direct", &o)
		case 1:
			ping(without, "build", &wo)
			ping(ossh, "direct", &o)
			ping(with, "build", &w)
		default:
			ping(ossh, "direct", &o)
			ping(with, "build", &w)
			ping(without, "build", &wo)
		}
	}
	b.StopTimer()
	b.ReportMetric(median(w.ms), "ms/ping-quickack")
	b.ReportMetric(median(wo.ms), "ms/ping-without")
	b.ReportMetric(median(o.ms), "ms/ping-openssh")
	b.ReportMetric(0, "ns/op")
	if os.Getenv("NIXGATE_BENCH_REPORT") != "" {
		fmt.Printf("nix store ping, %d rounds, each server once per round in rotating order (delayed ACKs: the machine's TcpExt DelayedACKs during the ping):\n", b.N)
		o.report("OpenSSH sshd, plain forced nix-store")
		wo.report("nixgate serve without quickAck")
		w.report("nixgate serve")
	}
}
