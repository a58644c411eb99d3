package e2e

// The differential fuzzer: sessions of generated and mutated worker
// operations sent through nixgate's filter to a real nix-daemon --stdio
// of each Nix version, with what each Nix actually read as an operation
// as the ground truth.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
)

// diffSessions is how many sessions each Nix gets: a short run in make
// test; NIXGATE_DIFF_SESSIONS sets a long one.
func diffSessions(t testing.TB) int {
	if s := os.Getenv("NIXGATE_DIFF_SESSIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("NIXGATE_DIFF_SESSIONS=%q: want a count", s)
		}
		return n
	}
	return 60
}

// TestDifferentialFilter sends sessions of generated operations, their
// framing and arguments mutated (frames split to single bytes, frames of
// 4 GiB, frames that are operations to Nix, content-address methods and
// flags Nix refuses, truncation, pipelining), through nixgate's filter to
// a real nix-daemon --stdio of Nix 2.8, 2.26 and 2.34, each with a store
// of its own, at the protocol versions that Nix speaks. The ground truth
// is the daemon's own log at debug verbosity ("received daemon op N",
// for every operation it reads): the operations Nix read are the ones the
// filter passed, in order, up to where Nix stopped (it may stop early,
// ending the connection on an error; it may never read more, nor other).
// The counts are logged; a long run's go in docs/SECURITY.md.
func TestDifferentialFilter(t *testing.T) {
	requireTools(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("NIXGATE_DIFF_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (NIXGATE_DIFF_SEED replays it)", seed)
	pols := []policy.OpPolicy{
		{Key: "all", Role: policy.RoleBuild, FullTrust: true},
		{Key: "ci", Role: policy.RoleBuild, ClientSettings: policy.DefaultClientSettings},
		{Key: "cache", Role: policy.RoleSubstitute, ClientSettings: policy.DefaultClientSettings},
	}
	for _, n := range nixVersions(t) {
		t.Run("Nix"+n.name, func(t *testing.T) {
			d := newStdioDaemon(t, n)
			// Flags reach Nix as 0 or 1: AddMultipleToStore's
			// dontCheckSigs of 5, which Nix (reading it as exactly 0 or
			// 1) would refuse before it starts answering, ending the
			// connection before the IsValidPath after it.
			g := &gen{v: n.protocol}
			g.u64(0x6e697863, n.protocol)
			if n.protocol&0xff >= 38 {
				g.u64(0)
			}
			g.u64(0, 0, 44, 0, 5) // no affinity or reserveSpace; repair 0, dontCheckSigs 5
			g.u64(8, 0, 0)        // one frame: no paths; the end
			g.u64(1)
			g.str("/nix/store/00000000000000000000000000000000-x")
			if passed, read, last, err := d.run(t, pols[0], g.b, true); err != nil || !slices.Equal(read, []uint64{44, 1}) || !slices.Equal(passed, read) {
				t.Errorf("a flag of 5: Nix read %v of %v (%v); want both: %s", read, passed, err, last)
			}

			name := fnv.New64a()
			name.Write([]byte(n.name))
			rng := rand.New(rand.NewPCG(seed, name.Sum64())) // a stream of its own per Nix
			versions := []uint64{1<<8 | 34, n.protocol}
			if n.chroot == "" {
				versions = []uint64{1<<8 | 25, 1<<8 | 32, 1<<8 | 34}
			}
			var sessions, complete, ops, nixOps int
			for i := 0; i < diffSessions(t); i++ {
				v := versions[rng.IntN(len(versions))]
				pol := pols[rng.IntN(len(pols))]
				client, cut := genSession(rng, v)
				passed, read, last, err := d.run(t, pol, client, !cut)
				if err != nil {
					t.Fatalf("session %d (%s at %d.%d): %v\nclient %x", i, pol.Key, v>>8, v&0xff, err, client)
				}
				sessions++
				ops += len(passed)
				nixOps += len(read)
				if len(read) > len(passed) || !slices.Equal(read, passed[:len(read)]) {
					t.Fatalf("session %d (%s at %d.%d): Nix read the operations %v; the filter passed %v\nclient %x", i, pol.Key, v>>8, v&0xff, read, passed, client)
				}
				if len(read) == len(passed) {
					complete++
				} else if testing.Verbose() {
					t.Logf("session %d: Nix read %v of %v; its last words: %s", i, read, passed, last)
				}
			}
			t.Logf("Nix %s: %d sessions, %d operations passed, %d read by Nix; %d sessions read whole", n.name, sessions, ops, nixOps, complete)
			// Not vacuous: many sessions must reach their end in Nix (a
			// third: Nix ends a session at the first argument it refuses,
			// and the generator sends such arguments on purpose).
			if complete*3 < sessions || nixOps == 0 {
				t.Errorf("only %d of %d sessions were read whole by Nix (%d ops): the generator no longer makes sessions Nix follows", complete, sessions, nixOps)
			}
		})
	}
}

// stdioDaemon runs nix-daemon --stdio of one Nix on a store of the
// test's own, as root, once per session.
type stdioDaemon struct {
	n           nixUnderTest
	store, conf string // as the Nix sees them
}

func newStdioDaemon(t testing.TB, n nixUnderTest) *stdioDaemon {
	t.Helper()
	base := os.TempDir()
	if n.chroot != "" {
		base = filepath.Join(n.chroot, "tmp")
	}
	dir, err := os.MkdirTemp(base, "nixgate-diff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	writeFile(t, filepath.Join(dir, "conf", "nix.conf"), "build-users-group =\nsandbox = false\nsubstituters =\n", 0o644)
	inside := dir
	if n.chroot != "" {
		inside = "/" + strings.TrimPrefix(dir, n.chroot)
	}
	return &stdioDaemon{n: n, store: "local?root=" + filepath.Join(inside, "store"), conf: filepath.Join(inside, "conf")}
}

// run filters one session of client bytes into a fresh nix-daemon
// --stdio and returns the operations the filter passed and the ones Nix
// read, as op codes, and the last line Nix logged. With hold, the
// client's stream ends only when Nix has read as many operations as the
// filter passed (or has not read more for a while, at most diffHold):
// newer Nix stops reading when its client hangs up. A session cut short
// is not held: Nix waits for the rest of its last operation.
func (d *stdioDaemon) run(t testing.TB, pol policy.OpPolicy, client []byte, hold bool) (passed, read []uint64, last string, err error) {
	t.Helper()
	codes := map[string]uint64{}
	for c := uint64(0); c < 64; c++ {
		codes[policy.OpName(policy.ProtocolWorker, c)] = c
	}
	var mu sync.Mutex
	f := nixproto.New(nixproto.Options{
		Protocol: policy.ProtocolWorker,
		Policy:   pol,
		Observe: func(op string, allowed bool) {
			if allowed {
				mu.Lock()
				passed = append(passed, codes[op])
				mu.Unlock()
			}
		},
	})
	release := make(chan struct{})
	if !hold {
		close(release)
	}
	in := &holdingReader{r: bytes.NewReader(client), release: release}
	nixIn, nixOut, err := f.Attach(in, io.Discard)
	if err != nil {
		return nil, nil, "", err
	}
	env := []string{"NIX_CONF_DIR=" + d.conf, "NIX_REMOTE=", "HOME=/nonexistent"}
	argv := []string{"nix-daemon", "--stdio", "--debug", "--store", d.store}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if d.n.chroot != "" {
		a := chrootArgv(d.n.chroot, append(env, argv...)...)
		cmd = exec.CommandContext(ctx, a[0], a[1:]...)
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(env, "PATH=/usr/bin:/bin")
	}
	stderr := &lockedBuffer{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nixIn, nixOut, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		nixIn.Close()
		if hold {
			close(release)
		}
		f.Close()
		return nil, nil, "", err
	}
	nixIn.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Hold the client's end open until Nix has caught up.
	deadline := time.After(diffHold)
	if !hold {
		deadline = time.After(0)
	}
	seen, still := -1, 0
hold:
	for {
		select {
		case <-exited:
			break hold
		case <-f.Done():
			break hold
		case <-deadline:
			break hold
		case <-time.After(20 * time.Millisecond):
		}
		n := len(receivedOp.FindAllIndex(stderr.Bytes(), -1))
		mu.Lock()
		caughtUp := in.drained() && n >= len(passed)
		mu.Unlock()
		if n == seen {
			still++
		} else {
			seen, still = n, 0
		}
		if caughtUp && still >= 2 {
			break
		}
	}
	if hold {
		close(release)
	}
	<-exited
	<-f.Done()
	f.Close()
	if _, ferr := f.Result(); ferr != nil && strings.Contains(ferr.Error(), "cannot follow") {
		// nixgate failed closed on an answer of real Nix: its reading
		// of Nix's answers is wrong.
		return passed, nil, "", fmt.Errorf("the filter lost Nix's answers: %v", ferr)
	}
	for _, m := range receivedOp.FindAllSubmatch(stderr.Bytes(), -1) {
		c, _ := strconv.ParseUint(string(m[1]), 10, 64)
		read = append(read, c)
	}
	lines := bytes.Split(bytes.TrimSpace(stderr.Bytes()), []byte("\n"))
	mu.Lock()
	defer mu.Unlock()
	return passed, read, string(lines[len(lines)-1]), nil
}

// diffHold bounds how long a session's client waits for Nix to read
// what the filter passed before it ends its stream.
const diffHold = 3 * time.Second

// holdingReader returns its bytes, then ends (io.EOF) only once release
// is closed.
type holdingReader struct {
	r       *bytes.Reader
	release chan struct{}
	mu      sync.Mutex
	waiting bool
}

func (h *holdingReader) Read(p []byte) (int, error) {
	h.mu.Lock()
	n, _ := h.r.Read(p)
	h.waiting = n == 0
	h.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	<-h.release
	return 0, io.EOF
}

// drained reports whether every byte has been read and the filter asks
// for more: it has parsed and decided every operation of the session.
func (h *holdingReader) drained() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waiting
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (l *lockedBuffer) String() string { return string(l.Bytes()) }

var receivedOp = regexp.MustCompile(`received daemon op (\d+)`)

// genSession generates a client's session at version v: the hello, then
// operations, some of them mutated; cut reports a session cut short.
func genSession(rng *rand.Rand, v uint64) (b []byte, cut bool) {
	g := &gen{rng: rng, v: v}
	g.u64(0x6e697863, v)
	if v&0xff >= 38 {
		g.u64(0)
	}
	g.u64(0, 0)
	n := 1 + rng.IntN(8)
	for i := 0; i < n; i++ {
		g.op()
	}
	if rng.IntN(8) == 0 && len(g.b) > 40 {
		return g.b[:40+rng.IntN(len(g.b)-40)], true
	}
	return g.b, false
}

type gen struct {
	rng *rand.Rand
	v   uint64
	b   []byte
}

func (g *gen) u64(vs ...uint64) {
	for _, v := range vs {
		g.b = binary.LittleEndian.AppendUint64(g.b, v)
	}
}

func (g *gen) str(ss ...string) {
	for _, s := range ss {
		g.u64(uint64(len(s)))
		g.b = append(g.b, s...)
		g.b = append(g.b, make([]byte, (8-len(s)%8)%8)...)
	}
}

func (g *gen) strs(ss ...string) {
	g.u64(uint64(len(ss)))
	g.str(ss...)
}

// flag is a flag, now and then not 0 or 1.
func (g *gen) flag() uint64 {
	switch g.rng.IntN(10) {
	case 0:
		return 2 + g.rng.Uint64N(1<<40)
	case 1, 2, 3:
		return 1
	}
	return 0
}

func (g *gen) path() string {
	const b32 = "0123456789abcdfghijklmnpqrsvwxyz"
	h := make([]byte, 32)
	for i := range h {
		h[i] = b32[g.rng.IntN(len(b32))]
	}
	name := []string{"x", "hello-2.12", "a.drv"}[g.rng.IntN(3)]
	if g.rng.IntN(20) == 0 {
		name = []string{".hidden", "bad/name"}[g.rng.IntN(2)] // Nix 2.19 and 2.20 refuse the one, every Nix the other
	}
	p := "/nix/store/" + string(h) + "-" + name
	if g.rng.IntN(12) == 0 {
		// Forms Nix cleans into p (canonPath) and nixgate refuses.
		p = []string{p + "/", p + "//", "/nix/store/./" + string(h) + "-" + name, "//nix/store/" + string(h) + "-" + name, ""}[g.rng.IntN(5)]
	}
	return p
}

// derived is a path of BuildPaths or QueryMissing: a path, or a
// derivation with outputs, now and then in a form not every Nix reads
// alike.
func (g *gen) derived() string {
	p := g.path()
	switch g.rng.IntN(8) {
	case 0:
		return p
	case 1:
		return p + []string{"!*", "!", "!out,", "!out!dev", "!bad name", "/!out"}[g.rng.IntN(6)]
	}
	return p + "!out"
}

// framed appends data as frames: split at random sizes, now and then a
// frame of 4 GiB or one whose length is an operation to Nix.
func (g *gen) framed(data []byte) {
	switch g.rng.IntN(10) {
	case 0:
		g.u64(1<<32 | uint64(len(data)))
		g.b = append(g.b, data...)
		g.u64(0)
		return
	case 1:
		// Frames that Nix, standing at the first header, reads as
		// SyncWithGC and then an IsValidPath.
		g.u64(13, 13, 13)
		g.b = append(g.b, wop(1).str(g.path()).b...)
		g.u64(0)
		return
	}
	for len(data) > 0 {
		k := 1 + g.rng.IntN(len(data))
		if g.rng.IntN(3) == 0 {
			k = min(k, 1+g.rng.IntN(3))
		}
		g.u64(uint64(k))
		g.b = append(g.b, data[:k]...)
		data = data[k:]
	}
	g.u64(0)
}

func (g *gen) nar(contents string) []byte {
	e := &wopEnc{}
	e.str("nix-archive-1", "(", "type", "regular", "contents", contents, ")")
	return e.b
}

// op appends one operation.
func (g *gen) op() {
	r := g.rng
	switch r.IntN(17) {
	case 0:
		g.u64(1)
		g.str(g.path())
	case 1:
		g.u64(26)
		g.str(g.path())
	case 2:
		g.u64(31)
		g.strs(g.path(), g.path())
		if g.v&0xff >= 27 {
			g.u64(g.flag())
		}
	case 3: // AddToStore
		g.u64(7)
		cam := []string{"fixed:r:sha256", "text:sha256", "fixed:sha1", "fixed:bogus", "nar:sha256", "fixed:git:sha1"}[r.IntN(6)]
		g.str("x", cam)
		g.strs()
		g.u64(g.flag())
		g.framed(g.nar("contents"))
	case 4: // AddToStoreNar
		g.u64(39)
		nar := g.nar("x")
		g.str(g.path(), "", "sha256:0000000000000000000000000000000000000000000000000000")
		g.strs()
		g.u64(0, uint64(len(nar)), g.flag())
		g.strs()
		g.str("")
		g.u64(g.flag(), g.flag())
		g.framed(nar)
	case 5: // AddMultipleToStore
		g.u64(44, g.flag(), g.flag())
		inner := &gen{rng: r, v: g.v}
		nar := g.nar("y")
		inner.u64(1)
		inner.str(g.path(), "", "sha256:0000000000000000000000000000000000000000000000000000")
		inner.strs()
		inner.u64(0, uint64(len(nar)), 0)
		inner.strs()
		inner.str("")
		inner.b = append(inner.b, nar...)
		g.framed(inner.b)
	case 6: // AddBuildLog
		g.u64(45)
		g.str(filepath.Base(g.path()))
		g.framed([]byte("log line\n"[:r.IntN(10)]))
	case 7: // SetOptions at debug verbosity, so that Nix keeps logging
		g.u64(19, 0, 0, 0, 7, 1, 0, 0, 7, 0, 0, 0, 0)
		names := []string{"post-build-hook", "max-silent-time", "sandbox", "keep-failed"}
		k := r.IntN(3)
		g.u64(uint64(k))
		for i := 0; i < k; i++ {
			g.str(names[r.IntN(len(names))], "1")
		}
	case 8:
		g.u64(13) // SyncWithGC
	case 9:
		g.u64(11) // AddTempRoot
		g.str(g.path())
	case 10: // BuildPaths of paths that do not exist
		g.u64(9)
		g.strs(g.derived())
		if r.IntN(8) == 0 {
			g.u64(3 + g.rng.Uint64N(1<<32)) // Nix 2.8 builds; later Nix refuses
		} else {
			g.u64(g.rng.Uint64N(3))
		}
	case 11:
		g.u64(43) // QueryRealisation
		g.str("sha256:" + fmt.Sprintf("%064x", r.Uint64()) + "!out")
	case 12:
		g.u64(42) // RegisterDrvOutput
		if g.v&0xff < 31 {
			g.str("bad", g.path())
		} else {
			g.str("{}")
		}
	case 13: // AddTextToStore
		g.u64(8)
		g.str("t", "text")
		g.strs()
	case 14:
		g.u64(40) // QueryMissing
		g.strs(g.derived())
	case 15:
		if r.IntN(2) == 0 {
			g.u64(38) // NarFromPath: Nix answers LAST, then fails on the invalid path
		} else {
			g.u64(10) // EnsurePath
		}
		g.str(g.path())
	default:
		if r.IntN(4) == 0 {
			g.u64(uint64(r.IntN(60))) // any operation number, arguments or not
		} else {
			g.u64(1)
			g.str(g.path())
		}
	}
}
