package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
)

// TestServeProcessorsFollowConnections: nixgate serve runs its Go code
// on as many processors as it serves streams (connections, or the
// sessions of a connection that has several), at least one and at most
// the runtime's own choice, as its metrics show
// (go_sched_gomaxprocs_threads); GOMAXPROCS in its environment stands.
// Issue 23: one copy on idle processors spent a fifth of its CPU handing
// packets between threads.
func TestServeProcessorsFollowConnections(t *testing.T) {
	b := newBuilder(t, modeServe)
	const metric = "go_sched_gomaxprocs_threads"
	// What serve's runtime chooses: the same as this process's, on the
	// same machine, when neither has GOMAXPROCS set.
	most := float64(runtime.GOMAXPROCS(0))
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

	// Two sessions over one connection, as OpenSSH's ControlMaster
	// runs them.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	control := filepath.Join(t.TempDir(), "control")
	master := exec.CommandContext(ctx, "ssh", "-F", b.sshConfig, "-o", "ControlMaster=yes", "-o", "ControlPath="+control, "-N", b.Host("build"))
	master.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	master.Cancel = func() error { return syscall.Kill(-master.Process.Pid, syscall.SIGKILL) }
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); master.Wait() })
	b.waitMetric(t, metric, one)
	muxed := func() *rawWorker {
		wctx, wcancel := context.WithTimeout(context.Background(), commandTimeout)
		cmd := exec.CommandContext(wctx, "ssh", "-F", b.sshConfig, "-o", "ControlMaster=no", "-o", "ControlPath="+control, b.Host("build"), "--", "nix-daemon --stdio")
		return startWorker(t, cmd, wcancel, 1<<8|34)
	}
	waitFor(t, "ControlMaster socket", commandTimeout, func() bool { _, err := os.Stat(control); return err == nil })
	const accepted = `nixgate_connections_total{result="accepted"}`
	conns := b.metric(t, accepted)
	a := muxed()
	b.waitMetric(t, metric, one)
	c := muxed()
	b.waitMetric(t, metric, two)
	if n := b.metric(t, accepted); n != conns {
		t.Fatalf("the two sessions came over %v new connections, not over the master's", n-conns)
	}
	c.close()
	b.waitMetric(t, metric, one)
	a.close()

	// GOMAXPROCS in serve's environment stands: a number the rule never
	// sets (more than the runtime's choice), with a connection open.
	b.serve.Process.Kill()
	<-b.serveDone
	fixed := int(most) + 1
	b.startServeWith(t, nil, []string{fmt.Sprintf("GOMAXPROCS=%d", fixed)})
	waitPort(t, fmt.Sprintf("127.0.0.1:%d", b.port), b.serveDone)
	w := b.dialWorker(t, "build", 1<<8|34)
	if n := b.metric(t, metric); n != float64(fixed) {
		t.Errorf("with GOMAXPROCS=%d in serve's environment and one connection, %s = %v", fixed, metric, n)
	}
	w.close()
}
