package usage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nixgate/nixgate/nixproto"
)

func TestAddAndSums(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 26, 12, 30, 0, 0, time.UTC)
	adds := []struct {
		key string
		at  time.Time
		c   Counters
	}{
		{"ci", now.Add(-3 * time.Hour), Counters{Sessions: 1, Builds: 2, BuildSeconds: 1.5, BytesIn: 10, BytesOut: 20, PathsImported: 3}},
		{"ci", now, Counters{Sessions: 1, BytesIn: 1, BytesOut: 2}},
		{"ci", now.Add(time.Minute), Refusal},
		{"dev", now.Add(-time.Minute), Counters{Sessions: 1, Refusals: 2}},
	}
	for _, a := range adds {
		if err := Add(dir, a.key, a.at, a.c, 0); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v; want 0600", fi.Mode().Perm())
	}
	for _, tt := range []struct {
		name  string
		since time.Time
		want  map[string]Counters
	}{
		{"all", time.Time{}, map[string]Counters{
			"ci":  {Sessions: 2, Builds: 2, BuildSeconds: 1.5, BytesIn: 11, BytesOut: 22, PathsImported: 3, Refusals: 1},
			"dev": {Sessions: 1, Refusals: 2},
		}},
		// Since is rounded down to its hour: 12:59 includes 12:30.
		{"this hour", now.Add(29 * time.Minute), map[string]Counters{
			"ci":  {Sessions: 1, BytesIn: 1, BytesOut: 2, Refusals: 1},
			"dev": {Sessions: 1, Refusals: 2},
		}},
		{"future", now.Add(2 * time.Hour), map[string]Counters{}},
	} {
		got, err := Sums(dir, tt.since, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: Sums = %v; want %v", tt.name, got, tt.want)
		}
		for k, w := range tt.want {
			if got[k] != w {
				t.Errorf("%s: Sums[%q] = %+v; want %+v", tt.name, k, got[k], w)
			}
		}
	}
}

// The store is a file: what was added is there after a restart.
func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	for range 3 {
		if err := Add(dir, "ci", time.Now(), Counters{Sessions: 1, BytesIn: 5}, 0); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Sums(dir, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{Sessions: 3, BytesIn: 15}); got["ci"] != want {
		t.Errorf("after three sessions: %+v; want %+v", got["ci"], want)
	}
}

func TestSumsMissingStore(t *testing.T) {
	got, err := Sums(t.TempDir(), time.Time{}, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("Sums of an empty state_dir = %v, %v; want no usage and no error", got, err)
	}
}

// Many writers at once (goroutines here; exec-mode processes on a
// builder) all get their turn.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- Add(dir, "ci", time.Now(), Counters{Sessions: 1}, 5*time.Second) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got, err := Sums(dir, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got["ci"].Sessions != 20 {
		t.Errorf("sessions %d; want 20", got["ci"].Sessions)
	}
}

// A store another process holds is waited for, within the timeout, and
// then given up on: the session is not counted, and not held up either.
func TestHeldStoreIsBounded(t *testing.T) {
	dir := t.TempDir()
	if err := Add(dir, "ci", time.Now(), Counters{Sessions: 1}, 0); err != nil {
		t.Fatal(err)
	}
	// Another process's writer: bbolt's exclusive flock on its own
	// open file description, which conflicts within a process too.
	db, err := bolt.Open(Path(dir), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	err = Add(dir, "ci", time.Now(), Counters{Sessions: 1}, 200*time.Millisecond)
	if err == nil || !strings.HasPrefix(err.Error(), "usage: ") {
		t.Errorf("Add on a held store: %v; want a usage: timeout error", err)
	}
	if _, err := Sums(dir, time.Time{}, 200*time.Millisecond); err == nil {
		t.Error("Sums on a store held for writing: no error; want a timeout")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("gave up after %v; want about 400ms", d)
	}

	var logBuf bytes.Buffer
	r := &Recorder{StateDir: dir, Timeout: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	r.Record("ci", Refusal)
	r.Record("ci", Refusal)
	if n := strings.Count(logBuf.String(), "usage not recorded"); n != 1 {
		t.Errorf("logged %d warnings; want one:\n%s", n, logBuf.String())
	}
	db.Close()
	r.Record("ci", Refusal)
	got, err := Sums(dir, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{Sessions: 1, Refusals: 1}); got["ci"] != want {
		t.Errorf("%+v; want %+v", got["ci"], want)
	}
}

// A state directory the account cannot write (exec mode, state_dir owned
// by root): the session is not counted, and Record does not fail.
func TestRecorderUnwritableDir(t *testing.T) {
	var logBuf bytes.Buffer
	r := &Recorder{StateDir: "/nonexistent/nixgate-state", Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	r.Record("ci", Counters{Sessions: 1})
	if !strings.Contains(logBuf.String(), "usage not recorded") {
		t.Errorf("log %q; want a warning", logBuf.String())
	}
	var nilRec *Recorder
	nilRec.Record("ci", Refusal)
}

// TestEmptyStoreFile: exec mode's usage.db is made by the operator as an
// empty file the build account owns, in a state_dir of root's (install
// -o ACCOUNT -m 600 /dev/null state_dir/usage.db, README): the first Add
// fills it, in a directory it cannot write.
func TestEmptyStoreFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(Path(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	if err := Add(dir, "ci", time.Now(), Counters{Sessions: 1}, 0); err != nil {
		t.Fatalf("Add to an empty store file: %v", err)
	}
	got, err := Sums(dir, time.Time{}, 0)
	if err != nil || got["ci"].Sessions != 1 {
		t.Errorf("Sums = %v, %v; want one session of ci", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the store left %d entries in its directory; want usage.db alone", len(entries))
	}
}

func TestFromSession(t *testing.T) {
	a := nixproto.Audit{Builds: 2, BuildTime: 1500 * time.Millisecond, RefusedCount: 1, Imported: nixproto.PathSet{Count: 4}}
	got := FromSession(a, 100, 200)
	want := Counters{Sessions: 1, Builds: 2, BuildSeconds: 1.5, BytesIn: 100, BytesOut: 200, PathsImported: 4, Refusals: 1}
	if got != want {
		t.Errorf("FromSession = %+v; want %+v", got, want)
	}
}

// TestConcurrentProcesses has several processes (this test binary again,
// as exec-mode sessions are) add to one store at once: bbolt's file lock
// makes them take turns, and every session is counted.
func TestConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("NIXGATE_USAGE_WRITER_DIR"); dir != "" {
		for range 10 {
			if err := Add(dir, "ci", time.Now(), Counters{Sessions: 1}, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$")
		cmd.Env = append(os.Environ(), "NIXGATE_USAGE_WRITER_DIR="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("writer process: %v", err)
		}
	}
	got, err := Sums(dir, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got["ci"].Sessions != 80 {
		t.Errorf("sessions %d; want 80", got["ci"].Sessions)
	}
}

// damagedStore writes a store of real counts in dir and returns its
// bytes.
func damagedStore(t testing.TB, dir string) []byte {
	t.Helper()
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := range 40 {
		if err := Add(dir, fmt.Sprint("key", i), at.Add(time.Duration(i)*time.Hour), Counters{Sessions: 1, Builds: int64(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDamagedStore: a store whose pages were overwritten (in exec mode
// the build account can write it) gives an error that says it is
// damaged and how to fix it, from Add, Sums and Record alike — never a
// panic — and a store moved aside is started anew.
func TestDamagedStore(t *testing.T) {
	dir := t.TempDir()
	good := damagedStore(t, dir)
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"pages overwritten", func(b []byte) []byte {
			for i := 2 * 4096; i < len(b); i++ {
				b[i] = byte(i*7 + 3)
			}
			return b
		}},
		{"meta pages zeroed", func(b []byte) []byte {
			clear(b[:2*4096])
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:3*4096+100] }},
		{"garbage", func([]byte) []byte { return bytes.Repeat([]byte("nixgate!"), 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(Path(dir), tc.damage(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, serr := Sums(dir, time.Time{}, time.Second)
			aerr := Add(dir, "ci", time.Now(), Refusal, time.Second)
			if serr == nil && aerr == nil {
				t.Fatalf("this damage went unseen: the test no longer damages the store")
			}
			for _, err := range []error{serr, aerr} {
				if err != nil && !strings.Contains(err.Error(), "is damaged") && !strings.Contains(err.Error(), "move it aside") {
					t.Errorf("error %q does not say the store is damaged and how to fix it", err)
				}
			}
			var logged bytes.Buffer
			r := &Recorder{StateDir: dir, Timeout: time.Second, Log: slog.New(slog.NewTextHandler(&logged, nil))}
			r.Record("ci", Refusal)
			if aerr != nil && !strings.Contains(logged.String(), "usage not recorded") {
				t.Errorf("Record logged %q; want one warning that usage was not recorded", logged.String())
			}
			os.Rename(Path(dir), Path(dir)+".damaged")
			if err := Add(dir, "ci", time.Now(), Refusal, time.Second); err != nil {
				t.Errorf("a new store after the damaged one was moved aside: %v", err)
			}
			os.Remove(Path(dir))
		})
	}
}

// FuzzDamagedStore: whatever bytes the store holds at any place, AddIn
// and SumsIn (each in a process of its own, as exec mode and nixgate
// usage run them) return, an error or not, within their time bound.
// (In this process a damaged store can make bbolt loop or allocate
// without end: TestIsolatedStore.)
func FuzzDamagedStore(f *testing.F) {
	exe, err := os.Executable()
	if err != nil {
		f.Fatal(err)
	}
	good := damagedStore(f, f.TempDir())
	f.Add(uint32(0), []byte{0xff})
	f.Add(uint32(4096+16), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint32(3*4096), bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, at uint32, with []byte) {
		b := bytes.Clone(good)
		off := int(at) % len(b)
		copy(b[off:], with)
		dir := t.TempDir()
		if err := os.WriteFile(Path(dir), b, 0o600); err != nil {
			t.Fatal(err)
		}
		const timeout = 500 * time.Millisecond
		start := time.Now()
		_, serr := SumsIn(exe, dir, time.Time{}, timeout)
		aerr := AddIn(exe, dir, "ci", time.Now(), Refusal, timeout)
		if took := time.Since(start); took > 2*(timeout+recordGrace)+5*time.Second {
			t.Fatalf("took %v", took)
		}
		for _, err := range []error{serr, aerr} {
			if err != nil && !strings.HasPrefix(err.Error(), "usage: ") {
				t.Errorf("error %q is not one of usage's", err)
			}
		}
	})
}

// TestMain lets the test binary be the process AddIn and SumsIn run.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		os.Exit(ChildMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// selfChild returns store b with its root bucket's page (by the newer
// meta page: the root page id at 16, the transaction id at 56) made a
// branch page whose one child is itself: bbolt, reading it, recurses
// until Go's stack overflows, which no recover stops.
func selfChild(b []byte) []byte {
	b = bytes.Clone(b)
	root, txid := uint64(0), uint64(0)
	for _, meta := range [][]byte{b[16:4096], b[4096+16 : 2*4096]} {
		if id := binary.LittleEndian.Uint64(meta[56:]); id >= txid {
			root, txid = binary.LittleEndian.Uint64(meta[16:]), id
		}
	}
	p := b[root*4096:]
	binary.LittleEndian.PutUint16(p[8:], 0x01) // a branch page
	binary.LittleEndian.PutUint16(p[10:], 1)   // of one element
	binary.LittleEndian.PutUint32(p[12:], 0)   // no overflow
	binary.LittleEndian.PutUint32(p[16:], 16)  // its key 16 bytes on
	binary.LittleEndian.PutUint32(p[20:], 1)   // one byte long
	binary.LittleEndian.PutUint64(p[24:], root)
	p[32] = 'h'
	return b
}

// TestIsolatedStore: AddIn and SumsIn in a process of their own count as
// Add and Sums do, and a store damaged so that bbolt, reading it,
// overflows its stack (selfChild) costs the caller an error that says the
// store is damaged and how to fix it, not its process.
func TestIsolatedStore(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := damagedStore(t, dir)
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if err := AddIn(exe, dir, "key1", at, Counters{Sessions: 2}, time.Second); err != nil {
		t.Fatal(err)
	}
	sums, err := SumsIn(exe, dir, time.Time{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := sums["key1"]; got.Sessions != 3 || got.Builds != 1 {
		t.Errorf("key1: %+v; want 3 sessions (1 + the 2 added) and 1 build", got)
	}

	if err := os.WriteFile(Path(dir), selfChild(good), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = SumsIn(exe, dir, time.Time{}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Errorf("the damaged store gave %v; want an error that says how to fix it", err)
	}
	t.Logf("%v after %v", err, time.Since(start))
}
