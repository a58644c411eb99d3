package admission

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func openTestDir(t *testing.T) *LockDir {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := OpenLockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenRuntimeDir(t *testing.T) {
	uid := os.Geteuid()
	tests := []struct {
		name string
		// setup makes what the test needs in root and returns the
		// state_dir to pass.
		setup   func(t *testing.T, root string) string
		want    string // the directory used, relative to root
		wantErr string
	}{
		{"state_dir", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "state"), 0o755)
			return filepath.Join(root, "state")
		}, "state/run", ""},
		{"state_dir/run already there", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "state", "run"), 0o700)
			return filepath.Join(root, "state")
		}, "state/run", ""},
		{"no state_dir", func(t *testing.T, root string) string {
			return ""
		}, fmt.Sprintf("tmp/nixgate-%d", uid), ""},
		{"state_dir missing", func(t *testing.T, root string) string {
			return filepath.Join(root, "missing")
		}, fmt.Sprintf("tmp/nixgate-%d", uid), ""},
		{"state_dir is a file", func(t *testing.T, root string) string {
			if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, "file")
		}, fmt.Sprintf("tmp/nixgate-%d", uid), ""},
		{"state_dir/run written by others", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "state", "run"), 0o777)
			return filepath.Join(root, "state")
		}, "", "may be written by others (mode 0777; want 0700)"},
		{"state_dir/run a symbolic link", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "state"), 0o755)
			mkdir(t, filepath.Join(root, "elsewhere"), 0o700)
			symlink(t, filepath.Join(root, "elsewhere"), filepath.Join(root, "state", "run"))
			return filepath.Join(root, "state")
		}, "", "is a symbolic link"},
		{"/tmp: a symbolic link planted by another", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "elsewhere"), 0o700)
			symlink(t, filepath.Join(root, "elsewhere"), filepath.Join(root, "tmp", fmt.Sprintf("nixgate-%d", uid)))
			return ""
		}, "", "is a symbolic link"},
		{"/tmp: another account's directory", func(t *testing.T, root string) string {
			if uid != 0 {
				t.Skip("making a directory of another account needs root")
			}
			p := filepath.Join(root, "tmp", fmt.Sprintf("nixgate-%d", uid))
			mkdir(t, p, 0o700)
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return ""
		}, "", "belongs to uid 4242, not to this account (uid 0)"},
		{"/tmp: written by others", func(t *testing.T, root string) string {
			mkdir(t, filepath.Join(root, "tmp", fmt.Sprintf("nixgate-%d", uid)), 0o733)
			return ""
		}, "", "may be written by others (mode 0733; want 0700)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			mkdir(t, filepath.Join(root, "tmp"), 0o1777)
			stateDir := tt.setup(t, root)
			d, err := openRuntimeDir(stateDir, filepath.Join(root, "tmp"))
			if tt.wantErr != "" {
				if err == nil {
					d.Close()
					t.Fatalf("openRuntimeDir(%q) = %s; want an error with %q", stateDir, d.Path, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "admission: ") || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("openRuntimeDir(%q): %v; want an error with %q", stateDir, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("openRuntimeDir(%q): %v", stateDir, err)
			}
			defer d.Close()
			if want := filepath.Join(root, tt.want); d.Path != want {
				t.Errorf("openRuntimeDir(%q) = %s; want %s", stateDir, d.Path, want)
			}
			fi, err := os.Lstat(d.Path)
			if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: %v, %v; want a directory of mode 0700", d.Path, fi.Mode(), err)
			}
		})
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func TestLockDirSessions(t *testing.T) {
	d := openTestDir(t)
	r1, err := d.AcquireSession("ci", 2)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := d.AcquireSession("ci", 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.AcquireSession("ci", 2)
	if want := `admission: key "ci" already has 2 sessions running (max_sessions)`; err == nil || err.Error() != want {
		t.Errorf("a third session of max_sessions 2: %v; want %q", err, want)
	}
	// Another key is counted apart, and no limit counts nothing.
	r3, err := d.AcquireSession("other", 1)
	if err != nil {
		t.Errorf("another key: %v", err)
	} else {
		r3()
	}
	if _, err := d.AcquireSession("ci", 0); err != nil {
		t.Errorf("max_sessions 0: %v", err)
	}
	r1()
	r1() // a second call does nothing
	r4, err := d.AcquireSession("ci", 2)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r4()
	r2()
	if names := holderFiles(t, d); len(names) != 0 {
		t.Errorf("files left after every release: %v", names)
	}
}

// holderFiles lists the holders' files in d.
func holderFiles(t *testing.T, d *LockDir) []string {
	t.Helper()
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); n != lockFile && n != fairFile && n != fairTemp {
			names = append(names, n)
		}
	}
	return names
}

// TestLockDirHelper is the process that TestLockDirReleasedOnSIGKILL
// starts and kills; on its own it skips.
func TestLockDirHelper(t *testing.T) {
	what := os.Getenv("NIXGATE_LOCKDIR_HELPER")
	if what == "" {
		t.Skip("a helper process of TestLockDirReleasedOnSIGKILL, run only by it")
	}
	d, err := OpenLockDir(os.Getenv("NIXGATE_LOCKDIR_PATH"))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	switch what {
	case "session":
		_, err = d.AcquireSession("ci", 1)
	case "build":
		_, _, _, err = d.AcquireBuild(nil, SlotRequest{Key: "ci", Max: 1, Timeout: time.Second})
	case "wait":
		fmt.Println("held") // before it waits: the parent counts it
		_, _, _, err = d.AcquireBuild(nil, SlotRequest{Key: "ci", Max: 1, Timeout: time.Minute})
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("held")
	time.Sleep(2 * time.Minute) // until killed
	os.Exit(1)
}

// startHelper runs TestLockDirHelper in a process of its own, doing
// what, and waits for it to say it holds it.
func startHelper(t *testing.T, d *LockDir, what string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDirHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NIXGATE_LOCKDIR_HELPER="+what, "NIXGATE_LOCKDIR_PATH="+d.Path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		cmd.Wait()
		close(exited)
	}()
	select {
	case s := <-line:
		if s != "held\n" {
			t.Fatalf("helper %s: %q; want held", what, s)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper %s said nothing in 30s", what)
	}
	return cmd
}

// kill ends the helper with SIGKILL, so that nothing of it runs to let
// go of its locks, and waits until it is gone.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range 3000 {
		if err := syscall.Kill(cmd.Process.Pid, 0); err == syscall.ESRCH {
			return
		}
		// Reaped by startHelper's goroutine; until then a zombie
		// holds no lock either, but wait for it all the same.
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("helper %d still there 30s after SIGKILL", cmd.Process.Pid)
}

// TestLockDirReleasedOnSIGKILL has other processes hold a session, a
// build slot and a place in the queue, and kills them with SIGKILL: the
// kernel lets go of their locks, and the next process gets what they
// held.
func TestLockDirReleasedOnSIGKILL(t *testing.T) {
	d := openTestDir(t)

	h := startHelper(t, d, "session")
	if _, err := d.AcquireSession("ci", 1); err == nil {
		t.Fatal("a second session of max_sessions 1 while another process holds one")
	}
	kill(t, h)
	release, err := d.AcquireSession("ci", 1)
	if err != nil {
		t.Fatalf("after the holder's SIGKILL: %v", err)
	}
	release()

	h = startHelper(t, d, "build")
	if busy, err := d.Busy(1); !busy || err != nil {
		t.Errorf("Busy(1) = %v, %v while another process holds the slot; want true", busy, err)
	}
	if _, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "other", Max: 1, Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a second build slot of max_builds 1 while another process holds one")
	}
	kill(t, h)
	release, _, _, err = d.AcquireBuild(nil, SlotRequest{Key: "other", Max: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("after the holder's SIGKILL: %v", err)
	}

	// A waiter killed in the queue holds no one back.
	h = startHelper(t, d, "wait")
	waitFor(t, d, 1, 1)
	kill(t, h)
	if _, w, err := d.Stats(); w != 0 || err != nil {
		t.Errorf("Stats() = %d waiting, %v after the waiter's SIGKILL; want 0", w, err)
	}
	release()
	if names := holderFiles(t, d); len(names) != 0 {
		t.Errorf("files left after every holder ended: %v", names)
	}
}

// waitFor waits until d has running builds and waiting ones.
func waitFor(t *testing.T, d *LockDir, running, waiting int) {
	t.Helper()
	var r, w int
	var err error
	for range 1000 {
		r, w, err = d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if r == running && w == waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Stats() = %d running, %d waiting; want %d, %d", r, w, running, waiting)
}

func TestLockDirNeverMoreThanMax(t *testing.T) {
	const max, keyMax, n = 3, 2, 30
	d := openTestDir(t)
	var running, peak atomic.Int32
	perKey := map[string]*atomic.Int32{"a": {}, "b": {}, "c": {}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		key := []string{"a", "b", "c"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: key, Max: max, KeyMax: keyMax, Timeout: time.Minute})
			if err != nil {
				errs <- err
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			if k := perKey[key].Add(1); k > keyMax {
				t.Errorf("key %s: %d builds at once; want at most %d", key, k, keyMax)
			}
			time.Sleep(5 * time.Millisecond)
			perKey[key].Add(-1)
			running.Add(-1)
			release()
			release() // a second call does nothing
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p > max {
		t.Errorf("%d builds at once; want at most %d", p, max)
	}
	if r, w, err := d.Stats(); r != 0 || w != 0 || err != nil {
		t.Errorf("Stats() = %d running, %d waiting, %v after all released; want 0, 0", r, w, err)
	}
}

// queueDir is queue for a LockDir: the waiter is in the queue before it
// returns.
func queueDir(t *testing.T, d *LockDir, key, name string, max int, served chan<- string, hold <-chan struct{}) {
	t.Helper()
	r0, w0, _ := d.Stats()
	go func() {
		release, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: key, Max: max, Timeout: time.Minute})
		if err != nil {
			served <- "error: " + err.Error()
			return
		}
		served <- name
		<-hold
		release()
	}()
	for range 5000 {
		r, w, _ := d.Stats()
		if r+w > r0+w0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s did not get in the queue", name)
}

func TestLockDirFairOrder(t *testing.T) {
	tests := []struct {
		name  string
		queue []string // key and number
		want  string
	}{
		// A enqueues five, then B one: B's is served second, not sixth.
		{"FIFO within a key, round robin across keys", []string{"A1", "A2", "A3", "A4", "A5", "B1"}, "A1 B1 A2 A3 A4 A5"},
		{"three keys", []string{"A1", "A2", "A3", "B1", "B2", "C1"}, "A1 B1 C1 A2 B2 A3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openTestDir(t)
			served := make(chan string, 10)
			hold := make(chan struct{})
			for _, n := range tt.queue {
				queueDir(t, d, n[:1], n, 1, served, hold)
			}
			if got := strings.Join(servedOrder(t, served, hold, len(tt.queue)), " "); got != tt.want {
				t.Errorf("served %s; want %s", got, tt.want)
			}
		})
	}
}

func TestLockDirTimeout(t *testing.T) {
	d := openTestDir(t)
	release, _, depth, err := d.AcquireBuild(nil, SlotRequest{Key: "a", Max: 1})
	if err != nil || depth != 1 {
		t.Fatalf("AcquireBuild = depth %d, %v; want 1, nil", depth, err)
	}
	_, wait, depth, err := d.AcquireBuild(nil, SlotRequest{Key: "b", Max: 1, Timeout: 200 * time.Millisecond})
	if want := "admission: no build slot within 200ms (max_builds 1, 1 waiting)"; err == nil || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
	if wait < 200*time.Millisecond || depth != 1 {
		t.Errorf("waited %v with %d in the queue; want at least the timeout, 1", wait, depth)
	}
	if _, w, _ := d.Stats(); w != 0 {
		t.Errorf("%d waiting after the timeout; want 0", w)
	}
	release()
	r2, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "b", Max: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	r2()
}

func TestLockDirKeyLimit(t *testing.T) {
	d := openTestDir(t)
	r1, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "a", KeyMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r1()
	_, _, _, err = d.AcquireBuild(nil, SlotRequest{Key: "a", KeyMax: 1, Timeout: 100 * time.Millisecond})
	if want := "admission: no build slot within 100ms (key a max_builds 1, 1 waiting)"; err == nil || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
	// Another key is not held back by a's limit.
	r2, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "b", KeyMax: 1, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

func TestLockDirStop(t *testing.T) {
	d := openTestDir(t)
	release, _, _, _ := d.AcquireBuild(nil, SlotRequest{Key: "a", Max: 1})
	defer release()
	stop := make(chan struct{})
	close(stop)
	if _, _, _, err := d.AcquireBuild(stop, SlotRequest{Key: "a", Max: 1}); err == nil {
		t.Error("AcquireBuild with stop closed got a slot")
	}
	if _, w, _ := d.Stats(); w != 0 {
		t.Errorf("%d waiting after stop; want 0", w)
	}
}

func TestLockDirBusy(t *testing.T) {
	d := openTestDir(t)
	for _, max := range []int{0, 1} {
		if busy, err := d.Busy(max); busy || err != nil {
			t.Fatalf("Busy(%d) = %v, %v with nothing running", max, busy, err)
		}
	}
	release, _, _, _ := d.AcquireBuild(nil, SlotRequest{Key: "a", Max: 1})
	defer release()
	for max, want := range map[int]bool{0: false, 1: true, 2: false} {
		if busy, err := d.Busy(max); busy != want || err != nil {
			t.Errorf("Busy(%d) = %v, %v with one running; want %v", max, busy, err, want)
		}
	}
}

// TestLockDirLostMemory: when the fair order's file is gone (removed by
// hand), new waiters still queue behind the ones already waiting.
func TestLockDirLostMemory(t *testing.T) {
	d := openTestDir(t)
	release, _, _, _ := d.AcquireBuild(nil, SlotRequest{Key: "a", Max: 1})
	served := make(chan string, 4)
	hold := make(chan struct{})
	queueDir(t, d, "b", "b1", 1, served, hold)
	if err := os.Remove(filepath.Join(d.Path, fairFile)); err != nil {
		t.Fatal(err)
	}
	queueDir(t, d, "c", "c1", 1, served, hold)
	release()
	if got := strings.Join(servedOrder(t, served, hold, 2), " "); got != "b1 c1" {
		t.Errorf("served %s; want b1 c1", got)
	}
	data, err := os.ReadFile(filepath.Join(d.Path, fairFile))
	if err != nil || !strings.HasPrefix(string(data), "seq ") {
		t.Errorf("%s: %q, %v; want it written again", fairFile, data, err)
	}
	if n, err := strconv.Atoi(strings.Fields(string(data))[1]); err != nil || n < 4 {
		t.Errorf("seq %d, %v; want at least 4", n, err)
	}
}

// TestLockDirFIFO: a FIFO planted in the lock directory (by a process of
// the account's, such as a build that Nix's sandbox does not contain),
// under a holder's name, as "fair" or as "fair.tmp", with or without a
// writer that never writes, does not make a session wait on it for ever
// while it holds the directory's lock, which would stop every other
// session at that lock: a holder's name that is not a regular file is
// nobody's, and the directory's own files must be regular files.
func TestLockDirFIFO(t *testing.T) {
	session := func(d *LockDir) error {
		release, err := d.AcquireSession("ci", 1)
		if err == nil {
			release()
		}
		return err
	}
	stats := func(d *LockDir) error {
		_, _, err := d.Stats()
		return err
	}
	build := func(d *LockDir) error {
		release, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "ci", Max: 1})
		if err == nil {
			release()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		// writer holds the FIFO open for writing, writing nothing.
		writer bool
		// call is what must return; ok, whether it must succeed.
		call func(d *LockDir) error
		ok   bool
	}{
		{kindSession + "." + keyName("ci") + ".1-1-00000000", false, session, true},
		{kindBuild + "." + keyName("ci") + ".1-1-00000000", false, stats, true},
		{fairFile, false, stats, false},
		{fairFile, true, stats, false},
		{fairTemp, false, build, false},
	} {
		d := openTestDir(t)
		fifo := filepath.Join(d.Path, tc.name)
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		if tc.writer {
			w, err := os.OpenFile(fifo, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
		}
		done := make(chan error, 1)
		go func() { done <- tc.call(d) }()
		select {
		case err := <-done:
			if (err == nil) != tc.ok {
				t.Errorf("a FIFO named %s (writer %v): err = %v; want success %v", tc.name, tc.writer, err, tc.ok)
			}
		case <-time.After(20 * time.Second):
			// The call is left waiting; opening the FIFO for both
			// ends lets it go when the test ends.
			t.Errorf("a FIFO named %s (writer %v): still waiting after 20 s", tc.name, tc.writer)
			if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
				defer f.Close()
			}
		}
	}
}
