package gateway

import (
	"os"
	"runtime"
	"sync"
)

// procs keeps GOMAXPROCS at the number of streams nixgate serves: at
// least one, at most what the Go runtime would choose (the CPUs nixgate
// may use). A stream is an open connection, or each of its sessions
// when it has several (a client's ControlMaster runs them all over one).
// Each stream's bytes pass along one chain of goroutines (x/crypto's
// reader, its dispatcher, the session's filter), handed on packet by
// packet; a processor with nothing else to run spends that
// hand-off waking a thread that spins looking for work and sleeps again.
// One copy on two processors cost about a fifth more CPU than on one,
// for no gain in speed (issue 23's bench). With as many processors as
// streams, streams still run side by side.
//
// When GOMAXPROCS is set in the environment, the operator's number
// stands and procs changes nothing.
type procs struct {
	// set and reset are runtime.GOMAXPROCS and
	// runtime.SetDefaultGOMAXPROCS (a test's stand-ins).
	set   func(int) int
	reset func()

	mu      sync.Mutex
	off     bool // GOMAXPROCS is the environment's
	streams int
	// most is the runtime's own choice, read when it was last in force;
	// now is what procs last set (most when it reset).
	most, now int
}

// processProcs is the process's procs, which every Server shares:
// GOMAXPROCS is the process's.
var processProcs = sync.OnceValue(newProcs)

// newProcs returns procs for this process, its runtime's choice in
// force.
func newProcs() *procs {
	_, env := os.LookupEnv("GOMAXPROCS")
	n := runtime.GOMAXPROCS(0)
	return &procs{set: runtime.GOMAXPROCS, reset: runtime.SetDefaultGOMAXPROCS, off: env, most: n, now: n}
}

// add counts d more streams (fewer, when negative) and sets GOMAXPROCS
// to follow.
func (p *procs) add(d int) {
	if d == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return
	}
	p.streams += d
	want := min(max(p.streams, 1), p.most)
	switch {
	case want == p.now:
	case want == p.most:
		// Back to the runtime's choice, and to its following changes
		// of the CPUs nixgate may use (a cgroup's quota), which any
		// other setting turns off.
		p.reset()
		p.most = p.set(0)
		p.now = p.most
	default:
		p.set(want)
		p.now = want
	}
}
