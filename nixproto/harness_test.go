package nixproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// enc builds a client's (or Nix's) byte stream.
type enc struct{ b []byte }

func (e *enc) u64(vs ...uint64) *enc {
	for _, v := range vs {
		e.b = binary.LittleEndian.AppendUint64(e.b, v)
	}
	return e
}

func (e *enc) str(ss ...string) *enc {
	for _, s := range ss {
		e.b = appendString(e.b, s)
	}
	return e
}

func (e *enc) strs(ss ...string) *enc {
	e.b = appendStrings(e.b, ss)
	return e
}

// nar appends a NAR of one directory holding a file with contents, an
// executable and a symlink.
func (e *enc) nar(contents string) *enc {
	e.str("nix-archive-1", "(", "type", "directory",
		"entry", "(", "name", "bin", "node", "(", "type", "regular", "executable", "", "contents", contents, ")", ")",
		"entry", "(", "name", "file", "node", "(", "type", "regular", "contents", contents, ")", ")",
		"entry", "(", "name", "link", "node", "(", "type", "symlink", "target", "file", ")", ")",
		")")
	return e
}

// framed appends data as frames of at most size bytes and the end marker.
func (e *enc) framed(data []byte, size int) *enc {
	for len(data) > 0 {
		n := min(size, len(data))
		e.u64(uint64(n))
		e.b = append(e.b, data[:n]...)
		data = data[n:]
	}
	return e.u64(0)
}

// workerHello is a client's hello at version v, with features at 1.38.
func workerHello(v uint64, features ...string) []byte {
	e := (&enc{}).u64(WorkerMagicClient, v)
	if minor(v) >= 38 {
		e.strs(features...)
	}
	return e.u64(0, 0).b // no CPU affinity, no reserveSpace
}

// workerServerHello is Nix's hello up to its feature set.
func workerServerHello(v uint64, features ...string) []byte {
	e := (&enc{}).u64(WorkerMagicServer, v)
	if minor(v) >= 38 {
		e.strs(features...)
	}
	return e.b
}

// workerServerTail is the rest of Nix's hello after its feature set:
// its version (1.33), whether it trusts the client (1.35), and the end
// of its messages (LAST), after which Nix reads operations.
func workerServerTail(v, trust uint64) []byte {
	e := &enc{}
	if minor(v) >= 33 {
		e.str("2.99.0")
	}
	if minor(v) >= 35 {
		e.u64(trust)
	}
	return e.u64(stderrLast).b
}

// workerServerWhole is Nix's whole hello at version v, trusting the
// client.
func workerServerWhole(v uint64, features ...string) []byte {
	return slices.Concat(workerServerHello(v, features...), workerServerTail(v, trustTrusted))
}

func serveHello(v uint64) []byte       { return (&enc{}).u64(ServeMagicClient, v).b }
func serveServerHello(v uint64) []byte { return (&enc{}).u64(ServeMagicServer, v).b }

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// run is one filtered session: the client sends client, Nix answers its
// hello with server and reads what it is sent until the filter ends it.
type run struct {
	toNix, toClient, stderr []byte
	audit                   Audit
	err                     error
	// failedClosed is set when the filter ended the session on Nix's
	// side (failClosed): Nix then got a prefix of what was allowed.
	failedClosed bool
}

func filterSession(t testing.TB, opt Options, client, server []byte) run {
	t.Helper()
	return filterSessionAnswering(t, opt, client, server)
}

// answer is what the test's Nix writes once it has read after bytes:
// Nix answers an operation only once it has read it.
type answer struct {
	after int
	delay time.Duration // how long Nix takes, after reading it, to answer
	b     []byte
}

// filterSessionAnswering is filterSession with a Nix that answers its
// hello with server, and then each of answers in turn.
func filterSessionAnswering(t testing.TB, opt Options, client, server []byte, answers ...answer) run {
	t.Helper()
	var stderr syncBuffer
	opt.Stderr = &stderr
	s := attach(t, New(opt), bytes.NewReader(client), server, answers...)
	toNix := s.nixGot(t)
	s.nixExited()
	a, err := s.f.Result()
	return run{toNix: toNix, toClient: s.toClient.Bytes(), stderr: stderr.Bytes(), audit: a, err: err, failedClosed: s.f.hasFailed()}
}

// attached is a filter at work between a client's stream and a Nix of
// the test's own, which answers with a fixed reply and reads all it is
// sent.
type attached struct {
	f        *Filter
	nixIn    *os.File
	toClient *syncBuffer
	got      chan []byte
}

// attach starts f between client and a Nix that answers server, then
// each of answers once it has read as much as the answer waits for.
func attach(t testing.TB, f *Filter, client io.Reader, server []byte, answers ...answer) *attached {
	t.Helper()
	s := &attached{f: f, toClient: &syncBuffer{}, got: make(chan []byte, 1)}
	nixIn, nixOut, err := f.Attach(client, s.toClient)
	if err != nil {
		t.Fatal(err)
	}
	s.nixIn = nixIn
	go nixOut.Write(server)
	go func() {
		var b []byte
		buf := make([]byte, 32<<10)
		for {
			for len(answers) > 0 && len(b) >= answers[0].after {
				time.Sleep(answers[0].delay)
				nixOut.Write(answers[0].b)
				answers = answers[1:]
			}
			n, err := nixIn.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				break
			}
		}
		s.got <- b
	}()
	return s
}

// attachAnswering starts f between client and a Nix that answers its
// hello with server and then runs nix on what it reads, which it writes
// to Nix's stdout: a Nix of the test's own that answers as it reads.
func attachAnswering(t testing.TB, f *Filter, client io.Reader, server []byte, nix func(in io.Reader, out io.Writer)) *attached {
	t.Helper()
	s := &attached{f: f, toClient: &syncBuffer{}, got: make(chan []byte, 1)}
	nixIn, nixOut, err := f.Attach(client, s.toClient)
	if err != nil {
		t.Fatal(err)
	}
	s.nixIn = nixIn
	nixOut.Write(server)
	pr, pw := io.Pipe()
	go func() {
		b, _ := io.ReadAll(io.TeeReader(nixIn, pw))
		pw.Close()
		s.got <- b
	}()
	go func() {
		nix(pr, nixOut)
		io.Copy(io.Discard, pr)
	}()
	return s
}

// nixGot waits, up to 20 s, until the filter has ended the session (the
// client's stream is over) and returns all Nix was sent. Nix has not
// exited yet (nixExited).
func (s *attached) nixGot(t testing.TB) []byte {
	t.Helper()
	var toNix []byte
	select {
	case toNix = <-s.got:
	case <-time.After(20 * time.Second):
		t.Fatal("the filter did not end the session within 20 s")
	}
	<-s.f.Done()
	return toNix
}

// nixExited tells the filter that Nix has exited (Close).
func (s *attached) nixExited() {
	s.f.Close()
	s.nixIn.Close()
}

var (
	fullTrust   = policy.OpPolicy{Key: "all", Role: policy.RoleBuild, FullTrust: true}
	buildKey    = policy.OpPolicy{Key: "ci", Role: policy.RoleBuild, ClientSettings: policy.DefaultClientSettings}
	readOnlyKey = policy.OpPolicy{Key: "cache", Role: policy.RoleSubstitute, ClientSettings: policy.DefaultClientSettings}
)

// parseVersion reads "1.34" as 1<<8|34.
func parseVersion(t testing.TB, s string) uint64 {
	t.Helper()
	major, minorPart, ok := strings.Cut(s, ".")
	a, err1 := strconv.ParseUint(major, 10, 8)
	b, err2 := strconv.ParseUint(minorPart, 10, 8)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("bad version %q", s)
	}
	return a<<8 | b
}

// workerErrors returns the messages of the worker-protocol errors in b,
// Nix's replies with nixgate's errors among them, found by their form.
func workerErrorMessages(b []byte, version uint64) []string {
	var msgs []string
	marker := appendU64(nil, stderrError)
	for i := 0; i+8 <= len(b); i += 8 {
		if !bytes.Equal(b[i:i+8], marker) {
			continue
		}
		rest := b[i+8:]
		if minor(version) >= 26 {
			// "Error", level, "Error", message
			if len(rest) < 16+8+16 {
				continue
			}
			rest = rest[16+8+16:]
		}
		if len(rest) < 8 {
			continue
		}
		n := binary.LittleEndian.Uint64(rest)
		if uint64(len(rest)-8) < n {
			continue
		}
		msgs = append(msgs, string(rest[8:8+n]))
	}
	return msgs
}

func versionName(v uint64) string { return fmt.Sprintf("%d.%d", v>>8, v&0xff) }
