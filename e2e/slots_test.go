package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sleepPID waits, bounded, until the build account runs `sleep secs`
// (busybox's, a timed derivation's) and returns its PID.
func sleepPID(t testing.TB, b *builder, secs int) int {
	t.Helper()
	argv := []byte(fmt.Sprintf("\x00sleep\x00%d\x00", secs))
	for i := 0; i < 600; i++ {
		for _, p := range accountProcesses(b.account.uid) {
			if data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); bytes.Contains(data, argv) {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the build account never ran sleep %d", secs)
	return 0
}

// TestBuildSlots has real Nix 2.8 run three remote builds from two keys
// on one nixgate serve builder with [admission] max_builds = 1, in an
// order the test sets up and then checks: A1 (key build) takes the slot
// and holds it (its builder sleeps until the test ends that sleep); A2
// (key build) then queues, then B1 (key trusted). Round-robin across
// keys must run B1 before A2, although A2 came first: the intervals the
// builds record are A1, B1, A2, and never overlap. Every build succeeds,
// and the waits show in the session records and the metrics. Then, with
// build_queue_timeout = "1s", a build that cannot get the slot in time
// fails with the reason in one line, and with refuse_when_busy a new
// build session is refused at connect while the slot is taken.
func TestBuildSlots(t *testing.T) {
	b := newBuilder(t, modeServe)
	good := readFile(t, b.config)
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\n", 0o644)
	b.signalServe(t, syscall.SIGHUP)
	b.waitReload(t)
	// Open the builder's store once first: three nix-store processes
	// creating a new store's database at the same moment can find it
	// busy (Nix's own race, nothing of nixgate's).
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))

	type build struct {
		name, key string
		cmd       *exec.Cmd
		out       *strings.Builder
	}
	start := func(name, key string, secs int) *build {
		nonce := fmt.Sprintf("%d-%s", time.Now().UnixNano(), name)
		// Three jobs on the machine line: the client does not queue them
		// itself, nixgate does.
		cmd, out := b.startNix(t, "nix-build", writeTimedDerivation(t, b.root, nonce, secs), "--no-out-link", "-j0",
			"--builders", "ssh://"+b.Host(key)+" x86_64-linux - 3")
		return &build{name: name, key: key, cmd: cmd, out: out}
	}
	// A1 holds the slot, in its sleep, until the test ends that sleep.
	const hold = 300
	a1 := start("A1", "build", hold)
	b.waitMetric(t, "nixgate_builds_running", 1)
	a1Sleep := sleepPID(t, b, hold)
	a2 := start("A2", "build", 2)
	b.waitMetric(t, "nixgate_build_queue_depth", 1)
	b1 := start("B1", "trusted", 2)
	b.waitMetric(t, "nixgate_build_queue_depth", 2)
	if got := b.metric(t, "nixgate_builds_running"); got != 1 {
		t.Fatalf("nixgate_builds_running = %v with A1 holding the slot and two waiting; want 1", got)
	}
	// A1 ends; the slot goes to B1, then to A2.
	if err := syscall.Kill(a1Sleep, syscall.SIGTERM); err != nil {
		t.Fatalf("ending A1's sleep (pid %d): %v", a1Sleep, err)
	}
	type span struct {
		name       string
		start, end float64
	}
	var spans []span
	for _, bl := range []*build{a1, a2, b1} {
		err := waitCmd(t, bl.cmd, 2*time.Minute)
		out := strings.TrimSpace(lastLine(bl.out.String()))
		if err != nil || !strings.HasPrefix(out, "/nix/store/") {
			t.Fatalf("nix-build %s with key %s failed: %v\n%s", bl.name, bl.key, err, bl.out)
		}
		if !inStore(b.storeDir, out) {
			t.Errorf("%s is not in the builder's store: not built remotely", out)
		}
		s, e := interval(t, filepath.Join(b.storeDir, out))
		spans = append(spans, span{bl.name, s, e})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var order []string
	for i, sp := range spans {
		order = append(order, sp.name)
		if i > 0 && sp.start < spans[i-1].end {
			t.Errorf("two builds at once with max_builds = 1: %v", spans)
		}
	}
	if got := strings.Join(order, " "); got != "A1 B1 A2" {
		t.Errorf("the builds ran in the order %s; want A1 B1 A2 (round-robin across keys: B1, of a key not yet served, before A2, which queued first): %v", got, spans)
	}
	waited := 0
	for _, r := range logRecords(t, b.log) {
		if r["msg"] == "session ended" && r["slot_wait"] != nil {
			waited++
		}
	}
	if waited < 2 {
		t.Errorf("%d session records with slot_wait; want at least 2 of the 3 builds to have waited", waited)
	}
	if got := b.metric(t, "nixgate_build_queue_depth"); got != 0 {
		t.Errorf("nixgate_build_queue_depth = %v after the builds; want 0", got)
	}
	if got := b.metric(t, "nixgate_builds_running"); got != 0 {
		t.Errorf("nixgate_builds_running = %v after the builds; want 0", got)
	}
	if got := b.metric(t, "nixgate_build_slot_wait_seconds_count"); got < 3 {
		t.Errorf("nixgate_build_slot_wait_seconds_count = %v; want 3 or more", got)
	}
	if got := b.metric(t, "nixgate_build_slot_wait_seconds_sum"); got < 2 {
		t.Errorf("nixgate_build_slot_wait_seconds_sum = %v; want 2 s or more (A2 waits for A1 and B1, which sleeps 2 s)", got)
	}

	// A build that cannot get the slot within build_queue_timeout.
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nbuild_queue_timeout = \"1s\"\n", 0o644)
	b.signalServe(t, syscall.SIGHUP)
	b.waitReload(t)
	slow, _ := b.startNix(t, "nix-build", writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 300), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 3")
	waitBuilding(t, b)
	r := b.nix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano())), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("trusted")+" x86_64-linux - 3")
	if r.code == 0 {
		t.Fatalf("a build got a slot held by another with max_builds = 1: %s", r)
	}
	const want = "nixgate: no build slot within 1s (max_builds 1, 1 waiting)"
	if n := strings.Count(r.stderr, want); n != 1 {
		t.Errorf("the client shows %q %d times; want once:\n%s", want, n, r.stderr)
	}
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "operation refused" && r["key"] == "trusted" && strings.HasPrefix(fmt.Sprint(r["reason"]), "no build slot within 1s")
	}) == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, b.log))
	}

	// refuse_when_busy: while the slot is taken, a new build session is
	// refused at connect, with the line once.
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nrefuse_when_busy = true\n", 0o644)
	b.signalServe(t, syscall.SIGHUP)
	b.waitReload(t)
	r = b.nix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano())), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("trusted")+" x86_64-linux - 3")
	const busy = "nixgate: builder busy: all 1 build slots are taken (max_builds)"
	if r.code == 0 || strings.Count(r.stderr, busy) != 1 || !strings.Contains(r.stderr, "cannot build on") {
		t.Errorf("a build while the slot is taken, refuse_when_busy: %s; want Nix unable to build there, with %q once", r, busy)
	}
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["busy"] == true && r["key"] == "trusted"
	}) == nil {
		t.Errorf("no log record of the busy refusal:\n%s", readFile(t, b.log))
	}

	// A client that goes away while its build waits for the slot (Nix
	// killed; the ssh it started lives on and ends its stream) leaves the
	// queue then, not when build_queue_timeout (5 minutes) runs out.
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nbuild_queue_timeout = \"5m\"\n", 0o644)
	b.signalServe(t, syscall.SIGHUP)
	b.waitReload(t)
	gone, _ := b.startNix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano())), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("trusted")+" x86_64-linux - 3")
	b.waitMetric(t, "nixgate_build_queue_depth", 1)
	syscall.Kill(-gone.Process.Pid, syscall.SIGKILL)
	waitCmd(t, gone, 30*time.Second)
	b.waitMetric(t, "nixgate_build_queue_depth", 0)
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "operation refused" && r["key"] == "trusted" && r["reason"] == "the client closed its end while its build waited for a slot"
	}) == nil {
		t.Errorf("no log record of the build given up:\n%s", readFile(t, b.log))
	}
	syscall.Kill(-slow.Process.Pid, syscall.SIGKILL)
	waitCmd(t, slow, 30*time.Second)
}

// TestBuildSlotPipelined: a raw worker client that sends its next
// operation right behind a build (as a hostile build key may) does not
// give the slot back while Nix still builds. With [admission] max_builds
// = 1, a second key's build waits in the queue for as long as the first
// session's Nix runs, and builds once it has gone. Before the slot was
// held until Nix exits, the pipelined operation freed it at once and the
// second build never queued.
func TestBuildSlotPipelined(t *testing.T) {
	b, d := newDaemonBuilder(t, modeServe)
	writeFile(t, b.config, readFile(t, b.config)+"\n[admission]\nmax_builds = 1\n", 0o644)
	b.waitReload(t)
	b.waitHealthy(t, 1)
	nonce := fmt.Sprint("pipelined-", time.Now().UnixNano())
	slow := d.instantiateScript(t, nonce+"-a", "/bin/sleep 5; echo a > $out")
	quick := d.instantiateScript(t, nonce+"-b", "echo b > $out")
	slowOut := strings.TrimSpace(mustRun(t, d.env(), "nix-store", "-q", "--outputs", slow).stdout)

	a := b.dialWorker(t, "build", 1<<8|34)
	defer a.close()
	// The build and, without waiting for its answer, the next operation.
	a.send(wop(9).strs(slow + "!out").u64(0).b)
	a.send(wop(1).str(slowOut).b)
	b.waitMetric(t, "nixgate_builds_running", 1)

	c := b.dialWorker(t, "trusted", 1<<8|34)
	defer c.close()
	c.send(wop(9).strs(quick + "!out").u64(0).b)
	// The second build queues: the slot is still the first session's.
	b.waitMetric(t, "nixgate_build_queue_depth", 1)

	if msg, failed := a.stderrUntilLast(); failed || a.u64() != 1 {
		t.Fatalf("the first build: %q", msg)
	}
	if msg, failed := a.stderrUntilLast(); failed || a.u64() != 1 {
		t.Fatalf("IsValidPath behind the build: %q; want the output valid", msg)
	}
	a.close()
	if msg, failed := c.stderrUntilLast(); failed || c.u64() != 1 {
		t.Fatalf("the second build, once the first session ended: %q", msg)
	}
	b.waitMetric(t, "nixgate_build_queue_depth", 0)
}
