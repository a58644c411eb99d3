package e2e

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBuildSlotsExec is TestBuildSlots for exec mode, where each session
// is a nixgate process of its own behind OpenSSH: real Nix 2.8 runs three
// builds at once, from two keys, with [admission] max_builds = 1; all
// succeed, no two build at the same time (the intervals the builds
// record do not overlap), and they run in the fair order (B1 of the
// other key before A2, which queued first); the waits and the queue show
// in the session records. Then a build that cannot get the slot within
// build_queue_timeout fails with the reason once, and with
// refuse_when_busy a new build session is refused at connect.
func TestBuildSlotsExec(t *testing.T) {
	b := newBuilder(t, modeExec)
	good := readFile(t, b.config)
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\n", 0o644)
	// Open the builder's store once first (see TestBuildSlots).
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))

	// The order is set up as in TestBuildSlots: A1 (key build) takes the
	// slot and holds it, A2 (key build) queues, then B1 (key trusted).
	type build struct {
		name, key string
		cmd       *exec.Cmd
		out       *strings.Builder
	}
	start := func(name, key string, secs int) *build {
		nonce := fmt.Sprintf("%d-exec%s", time.Now().UnixNano(), name)
		cmd, out := b.startNix(t, "nix-build", writeTimedDerivation(t, b.root, nonce, secs), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host(key)+" x86_64-linux - 3")
		return &build{name: name, key: key, cmd: cmd, out: out}
	}
	waiting := func(n int) {
		t.Helper()
		for i := 0; i < 600 && len(lockFiles(t, b, "w.")) != n; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if w := lockFiles(t, b, "w."); len(w) != n {
			t.Fatalf("builds waiting in the lock directory: %q; want %d", w, n)
		}
	}
	const hold = 300
	a1 := start("A1", "build", hold)
	a1Sleep := sleepPID(t, b, hold)
	a2 := start("A2", "build", 2)
	waiting(1)
	b1 := start("B1", "trusted", 2)
	waiting(2)
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
			t.Errorf("two builds at once with max_builds = 1 in exec mode: %v", spans)
		}
	}
	if got := strings.Join(order, " "); got != "A1 B1 A2" {
		t.Errorf("the builds ran in the order %s; want A1 B1 A2 (round-robin across keys, across exec's processes): %v", got, spans)
	}
	waited, queued := 0, 0
	for _, r := range logRecords(t, b.log) {
		if r["msg"] != "session ended" {
			continue
		}
		if r["slot_wait"] != nil {
			waited++
		}
		if d, ok := r["build_queue_depth"].(float64); ok && d >= 2 {
			queued++
		}
	}
	if waited < 2 || queued < 1 {
		t.Errorf("%d session records with slot_wait, %d with build_queue_depth of 2 or more; want at least 2 and 1", waited, queued)
	}
	// Nothing is left held: every holder's file went with its process.
	if left := lockFiles(t, b, "b.", "w."); len(left) != 0 {
		t.Errorf("build slot files left after the builds: %v", left)
	}

	// A build that cannot get the slot within build_queue_timeout.
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nbuild_queue_timeout = \"1s\"\n", 0o644)
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
	// refused at connect, with the line once, and Nix says it cannot
	// build there (it would try its next builder).
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nrefuse_when_busy = true\n", 0o644)
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
	// A substitute key does not build: it still gets in.
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))

	// A client that goes away while its build waits for the slot leaves
	// the queue then, not when build_queue_timeout runs out: its
	// nixgate process (and the Nix it started) ends.
	writeFile(t, b.config, good+"\n[admission]\nmax_builds = 1\nbuild_queue_timeout = \"5m\"\n", 0o644)
	waitSessions := func(want int) []int {
		left := execSessions(b)
		for i := 0; i < 300 && len(left) != want; i++ {
			time.Sleep(100 * time.Millisecond)
			left = execSessions(b)
		}
		return left
	}
	if n := len(waitSessions(1)); n != 1 {
		t.Fatalf("%d nixgate exec processes with one build running; want 1", n)
	}
	gone, _ := b.startNix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano())), "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("trusted")+" x86_64-linux - 3")
	for i := 0; i < 300 && len(lockFiles(t, b, "w.")) == 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if w := lockFiles(t, b, "w."); len(w) != 1 {
		t.Fatalf("waiting builds in the lock directory: %q; want the one of key trusted", w)
	}
	syscall.Kill(-gone.Process.Pid, syscall.SIGKILL)
	waitCmd(t, gone, 30*time.Second)
	left := waitSessions(1)
	if w := lockFiles(t, b, "w."); len(left) != 1 || len(w) != 0 {
		var cmds []string
		for _, p := range accountProcesses(b.account.uid) {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			cmds = append(cmds, fmt.Sprint(p, " ", strings.ReplaceAll(string(data), "\x00", " ")))
		}
		t.Errorf("30 s after its client went away, a build waiting for the slot still has its nixgate process or its place in the queue: %d sessions, waiting %q; running %q", len(left), w, cmds)
	}
	syscall.Kill(-slow.Process.Pid, syscall.SIGKILL)
	waitCmd(t, slow, 30*time.Second)
}

// TestMaxSessionsExec has exec mode enforce a key's max_sessions across
// its processes: with max_sessions = 1, a second session of the key is
// refused with one line while the first is open, another key is not
// held back, and once the first session's nixgate process is killed
// with SIGKILL (nothing of it runs to let go) the key gets in again.
func TestMaxSessionsExec(t *testing.T) {
	b := newBuilder(t, modeExec)
	b.limitBuildKey(t, "max_sessions = 1\n")
	ping := []string{"nix", "store", "ping", "--store", "ssh://" + b.Host("build")}
	b.mustNix(t, ping...) // one session at a time is allowed
	// The ping's nixgate may still be on its way out: wait until it has
	// gone, so that the session holding the key's place below is the
	// first one's.
	for i := 0; i < 300 && len(execSessions(b)) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if left := execSessions(b); len(left) > 0 {
		t.Fatalf("nixgate exec processes %v still run after the ping", left)
	}

	// The first session: Nix's serve command, waiting for the client's
	// hello on a stdin that stays open.
	first := exec.Command("ssh", "-F", b.sshConfig, b.Host("build"), "--", "nix-store --serve --write")
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var firstOut strings.Builder
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		first.Process.Kill()
		first.Wait()
	})
	pid := sessionHolder(t, b, "build")

	r := b.nix(t, ping...)
	const want = `nixgate: refused: key "build" already has 1 sessions running (max_sessions)`
	if r.code == 0 || strings.Count(r.stderr, want) != 1 {
		t.Errorf("a second session of a key with max_sessions = 1: %s; want a failure with %q once", r, want)
	}
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["key"] == "build" && strings.Contains(fmt.Sprint(r["reason"]), "(max_sessions)")
	}) == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, b.log))
	}
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("trusted"))

	// SIGKILL the first session's nixgate: the kernel lets go of its lock.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	waitCmd(t, first, 30*time.Second)
	b.mustNix(t, ping...)
}

// lockFiles lists the files of exec mode's lock directory (state_dir/run)
// whose names start with one of prefixes.
func lockFiles(t testing.TB, b *builder, prefixes ...string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.root, "serve-state", "run"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		for _, p := range prefixes {
			if strings.HasPrefix(e.Name(), p) {
				names = append(names, e.Name())
			}
		}
	}
	return names
}

// sessionHolder waits, bounded, until a live session of key holds its
// place in exec mode's lock directory and returns the pid of the nixgate
// process that holds it (named in the file's name: s.KEY.PID-N-RANDOM).
// The file of a session that has ended stays until a later session
// sweeps it, so only a file whose process still runs nixgate counts.
func sessionHolder(t testing.TB, b *builder, key string) int {
	t.Helper()
	prefix := "s." + hex.EncodeToString([]byte(key)) + "."
	var seen []string
	for range 300 {
		seen = seen[:0]
		for _, name := range lockFiles(t, b, prefix) {
			id, _, _ := strings.Cut(strings.TrimPrefix(name, prefix), "-")
			pid, err := strconv.Atoi(id)
			if err != nil {
				t.Fatalf("%s: no pid in the name", name)
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err == nil && exe == nixgateBin {
				return pid
			}
			seen = append(seen, fmt.Sprintf("%s (%q, %v)", name, exe, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no live nixgate session of key %s holds a lock in %s; files: %q", key, filepath.Join(b.root, "serve-state", "run"), seen)
	return 0
}

// execSessions returns the PIDs of the build account's nixgate exec
// processes.
func execSessions(b *builder) []int {
	var pids []int
	for _, pid := range accountProcesses(b.account.uid) {
		argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if f := strings.Split(string(argv), "\x00"); len(f) > 1 && filepath.Base(f[0]) == "nixgate" && f[1] == "exec" {
			pids = append(pids, pid)
		}
	}
	return pids
}
