package buildlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

const (
	drvA = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-a.drv"
	drvB = "/nix/store/zyxwvsrqpnmlkjihgfdcba9876543210-b.drv"
)

func cfg() policy.BuildLogsConfig {
	return policy.BuildLogsConfig{MaxLogSize: 1 << 20, MaxTotal: 1 << 30, Retention: time.Hour}
}

func read(t *testing.T, s *Store, key, drv string) (string, error) {
	t.Helper()
	r, _, err := s.Open(key, drv)
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func TestRecorderKeepsEachDerivation(t *testing.T) {
	s := New(t.TempDir(), cfg())
	r, err := s.Recorder("ci/../x")
	if err != nil {
		t.Fatal(err)
	}
	r.Add(drvA, []byte("a1\n"))
	r.Add(drvB, []byte("b1\n"))
	r.Add(drvA, []byte("a2\n"))
	r.Add("/nix/store/not-a-derivation", []byte("x\n"))
	r.Add("/nix/store/../etc/0123456789abcdfghijklmnpqrsvwxyz-a.drv", []byte("x\n"))
	kept, err := r.Close()
	if err != nil || strings.Join(kept, " ") != drvA+" "+drvB {
		t.Fatalf("Close = %v, %v", kept, err)
	}
	if got, err := read(t, s, "ci/../x", drvA); got != "a1\na2\n" || err != nil {
		t.Errorf("log of a: %q, %v", got, err)
	}
	if got, err := read(t, s, "ci/../x", drvB); got != "b1\n" || err != nil {
		t.Errorf("log of b: %q, %v", got, err)
	}
	// The key's name is one directory, whatever it holds.
	ents, _ := os.ReadDir(s.Dir())
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".sessions k-ci%2F..%2Fx" {
		t.Errorf("the store holds %q", names)
	}
	if _, _, err := s.Open("other", drvA); !errors.Is(err, ErrNoLog) {
		t.Errorf("another key's log: %v; want ErrNoLog", err)
	}
	if keys := s.Keys(drvA); strings.Join(keys, ",") != "ci/../x" {
		t.Errorf("Keys = %q", keys)
	}
	if left, _ := os.ReadDir(filepath.Join(s.Dir(), sessionDir)); len(left) != 0 {
		t.Errorf("the session's file is left: %v", left)
	}

	// Built again by the key: the new log replaces the old.
	r, _ = s.Recorder("ci/../x")
	r.Add(drvA, []byte("again\n"))
	r.Close()
	if got, _ := read(t, s, "ci/../x", drvA); got != "again\n" {
		t.Errorf("log of a built again: %q", got)
	}
}

func TestRecorderCaps(t *testing.T) {
	c := cfg()
	c.MaxLogSize = 10
	s := New(t.TempDir(), c)
	r, _ := s.Recorder("ci")
	r.Add(drvA, []byte("0123456"))
	r.Add(drvA, []byte("789abcdef"))
	r.Add(drvA, []byte("more"))
	r.Close()
	got, _ := read(t, s, "ci", drvA)
	if !strings.HasPrefix(got, "0123456789\n[nixgate: the rest of this log is not kept: [build_logs] max_log_size is 10 bytes]") {
		t.Errorf("a log past max_log_size: %q", got)
	}

	// One session keeps at most max_total, whatever its derivations
	// (the logs compress to far less, so pruning leaves both).
	c = cfg()
	c.MaxTotal = 1000
	s = New(t.TempDir(), c)
	r, _ = s.Recorder("ci")
	r.Add(drvA, bytes.Repeat([]byte{'a'}, 600))
	r.Add(drvB, bytes.Repeat([]byte{'b'}, 600))
	r.Close()
	if got, _ := read(t, s, "ci", drvB); !strings.HasPrefix(got, strings.Repeat("b", 400)+"\n[nixgate: the rest of this log is not kept: this session's logs reached [build_logs] max_total, 1000 bytes]") {
		t.Errorf("the second log of a session past max_total: %q", got)
	}

	// Past the total, the oldest logs go; past the retention, all.
	c = cfg()
	c.MaxTotal = 1
	now := time.Now()
	s = New(t.TempDir(), c)
	s.now = func() time.Time { return now }
	for i, drv := range []string{drvA, drvB} {
		r, _ := s.Recorder("ci")
		r.Add(drv, bytes.Repeat([]byte{'x'}, 100))
		r.Close()
		os.Chtimes(s.path("ci", drv), now.Add(time.Duration(i)*time.Minute), now.Add(time.Duration(i)*time.Minute))
	}
	if _, _, err := s.Open("ci", drvA); !errors.Is(err, ErrNoLog) {
		t.Errorf("the older log past max_total: %v; want it removed", err)
	}
	c.MaxTotal = 1 << 30
	s = New(t.TempDir(), c)
	r, _ = s.Recorder("ci")
	r.Add(drvA, []byte("old\n"))
	r.Close()
	s.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, _, err := s.Open("ci", drvA); !errors.Is(err, ErrNoLog) {
		t.Errorf("a log past its retention: %v; want none", err)
	}
	s.Prune()
	if _, err := os.Stat(s.path("ci", drvA)); err == nil {
		t.Error("Prune kept a log past its retention")
	}
}

// TestAddNeverBlocks: a writer that is behind costs the session nothing;
// the log says what it lacks.
func TestAddNeverBlocks(t *testing.T) {
	s := New(t.TempDir(), cfg())
	testHold = make(chan struct{})
	defer func() { testHold = nil }()
	r, _ := s.Recorder("ci")
	start := time.Now()
	for i := 0; i < 3*queued; i++ {
		r.Add(drvA, []byte("line\n"))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Add with the writer held back took %v", d)
	}
	close(testHold)
	r.Close()
	got, _ := read(t, s, "ci", drvA)
	want := strings.Repeat("line\n", queued) + fmt.Sprintf("\n[nixgate: %d bytes of this log are not kept: the disk was too slow for them]\n", 2*queued*len("line\n"))
	if got != want {
		t.Errorf("the log of a session whose writer was behind: %d bytes, ending %q; want the %d lines queued and a note", len(got), got[max(0, len(got)-120):], queued)
	}
}

func FuzzValidDrv(f *testing.F) {
	for _, s := range []string{drvA, drvB, "/nix/store/../x.drv", "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-.drv", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, drv string) {
		if !ValidDrv(drv) {
			return
		}
		s := New(t.TempDir(), cfg())
		p := s.path("k", drv)
		if filepath.Dir(p) != s.keyDir("k") || !strings.HasSuffix(p, ".drv.gz") {
			t.Fatalf("%q is kept at %q, outside its key's directory", drv, p)
		}
	})
}
