package e2e

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// TestServeProcessorsFollowConnections: nixgate serve runs its Go code
// on as many processors as it has connections, at least one and at most
// the runtime's own choice, as its metrics show
// (go_sched_gomaxprocs_threads); GOMAXPROCS in its environment stands.
// Issue 23: one copy on idle processors spent a fifth of its CPU handing
// packets between threads.
func TestServeProcessorsFollowConnections(t *testing.T) {
	b := newBuilder(t, modeServe)
	const metric = "go_sched_gomaxprocs_threads"
	// What serve's runtime chooses: the same as this process's, on the
	// same machine, when neither has GOMAXPROCS set.
	most := float64(nixgateDefaultProcs())
	one, two := 1.0, min(2, most)
	if s := os.Getenv("GOMAXPROCS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("GOMAXPROCS=%q", s)
		}
		one, two = float64(n), float64(n)
	}
	first := b.dialWorker(t, "build", 1<<8|34)
	b.waitMetric(t, metric, one)
	second := b.dialWorker(t, "build", 1<<8|34)
	b.waitMetric(t, metric, two)
	second.close()
	b.waitMetric(t, metric, one)
	first.close()
	b.waitMetric(t, metric, one)
}

// nixgateDefaultProcs is the GOMAXPROCS the Go runtime chooses on this
// machine: this test process's own, unless set in the environment.
func nixgateDefaultProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0 // not used: the environment's number stands
	}
	return runtime.GOMAXPROCS(0)
}
