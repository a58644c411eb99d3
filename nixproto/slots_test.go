package nixproto

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// slotHook counts AcquireBuild's calls and releases; it refuses when err
// is set.
type slotHook struct {
	acquired, released atomic.Int32
	err                error
}

func (h *slotHook) acquire(stop <-chan struct{}) (func(), error) {
	h.acquired.Add(1)
	if h.err != nil {
		return nil, h.err
	}
	return func() { h.released.Add(1) }, nil
}

// TestServeBuildSlot: a serve BuildDerivation asks for a build slot
// before it reaches Nix and gives it back when the session ends; a
// build refused a slot ends the session with the reason, and Nix never
// sees the build.
func TestServeBuildSlot(t *testing.T) {
	v := uint64(2<<8 | 5)
	drv := (&enc{}).u64(8).str("/nix/store/00000000000000000000000000000000-x.drv").
		u64(1).str("out", "/nix/store/11111111111111111111111111111111-x", "", "").strs().str("x86_64-linux", "/bin/sh").strs().u64(0).
		u64(0, 7200, 0, 0, 0).b
	client := slices.Concat(serveHello(v), drv)
	h := &slotHook{}
	r := filterSession(t, Options{Protocol: policy.ProtocolServe, Policy: buildKey, AcquireBuild: h.acquire}, client, serveServerHello(v))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if a, rel := h.acquired.Load(), h.released.Load(); a != 1 || rel != 1 {
		t.Errorf("acquired %d, released %d; want 1, 1", a, rel)
	}

	h = &slotHook{err: errors.New("no build slot within 10m0s (max_builds 1, 3 waiting)")}
	r = filterSession(t, Options{Protocol: policy.ProtocolServe, Policy: buildKey, AcquireBuild: h.acquire}, client, serveServerHello(v))
	if !errors.Is(r.err, ErrRefused) {
		t.Errorf("err = %v; want ErrRefused", r.err)
	}
	if want := "nixgate: no build slot within 10m0s (max_builds 1, 3 waiting)\n"; string(r.stderr) != want {
		t.Errorf("stderr = %q; want %q", r.stderr, want)
	}
	if len(r.toNix) > len(serveHello(v)) {
		t.Errorf("Nix got %d bytes past the hello of a build refused a slot", len(r.toNix)-len(serveHello(v)))
	}
	if r.audit.RefusedCount != 1 {
		t.Errorf("audit RefusedCount = %d; want 1", r.audit.RefusedCount)
	}
}

// TestWorkerBuildSlot: a worker build holds a slot until the session
// ends; one refused a slot is answered with the reason and the
// session goes on; an opaque BuildPaths (nothing to build) asks for none.
func TestWorkerBuildSlot(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	valid := (&enc{}).u64(9).strs("/nix/store/11111111111111111111111111111111-x").u64(0).b
	isValid := (&enc{}).u64(1).str("/nix/store/11111111111111111111111111111111-x").b
	h := &slotHook{}
	r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey, AcquireBuild: h.acquire}, slices.Concat(workerHello(v), build, valid, isValid), workerServerWhole(v))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if a, rel := h.acquired.Load(), h.released.Load(); a != 1 || rel != 1 {
		t.Errorf("acquired %d, released %d; want 1, 1", a, rel)
	}

	h = &slotHook{err: errors.New("no build slot within 1s (max_builds 1, 1 waiting)")}
	r = filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey, AcquireBuild: h.acquire}, slices.Concat(workerHello(v), build, isValid), workerServerWhole(v))
	if r.err != nil {
		t.Fatal(r.err)
	}
	msgs := workerErrorMessages(r.toClient, v)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "nixgate: no build slot within 1s") {
		t.Errorf("client got errors %q; want the slot refusal", msgs)
	}
	if !slices.Equal(r.toNix, slices.Concat(workerHello(v), isValid)) {
		t.Errorf("Nix got the refused build, or not the op after it")
	}
}

// TestBuildSlotHeldUntilNixExits: a build's slot is held until Nix has
// exited (Close), not given back at the client's next operation or at
// the end of the client's stream: a client may send both while Nix is
// still building (it pipelines the next operation, or closes its end
// right after the build), and Nix works on a session's operations one
// after the other, so only its exit says the build is over. A second
// build of the session runs in the slot it holds.
func TestBuildSlotHeldUntilNixExits(t *testing.T) {
	wv := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	isValid := (&enc{}).u64(1).str("/nix/store/11111111111111111111111111111111-x").b
	sv := uint64(2<<8 | 5)
	drv := (&enc{}).u64(8).str("/nix/store/00000000000000000000000000000000-x.drv").
		u64(1).str("out", "/nix/store/11111111111111111111111111111111-x", "", "").strs().str("x86_64-linux", "/bin/sh").strs().u64(0).
		u64(0, 7200, 0, 0, 0).b
	query := (&enc{}).u64(1, 0, 0).strs("/nix/store/11111111111111111111111111111111-x").b // QueryValidPaths
	for _, tc := range []struct {
		name           string
		protocol       policy.Protocol
		client, server []byte
	}{
		{"worker, the next op pipelined", policy.ProtocolWorker, slices.Concat(workerHello(wv), build, isValid), workerServerWhole(wv)},
		{"worker, the stream ends after the build", policy.ProtocolWorker, slices.Concat(workerHello(wv), build), workerServerWhole(wv)},
		{"worker, two builds", policy.ProtocolWorker, slices.Concat(workerHello(wv), build, isValid, build), workerServerWhole(wv)},
		{"serve, the next command pipelined", policy.ProtocolServe, slices.Concat(serveHello(sv), drv, query), serveServerHello(sv)},
		{"serve, two builds", policy.ProtocolServe, slices.Concat(serveHello(sv), drv, drv), serveServerHello(sv)},
	} {
		h := &slotHook{}
		s := attach(t, New(Options{Protocol: tc.protocol, Policy: buildKey, AcquireBuild: h.acquire}), bytes.NewReader(tc.client), tc.server)
		s.nixGot(t)
		if _, err := s.f.Result(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		// The client's stream has ended; Nix, which has not exited,
		// may still be building.
		if a, rel := h.acquired.Load(), h.released.Load(); a != 1 || rel != 0 {
			t.Errorf("%s: before Nix exited: acquired %d, released %d; want 1, 0", tc.name, a, rel)
		}
		s.nixExited()
		if a, rel := h.acquired.Load(), h.released.Load(); a != 1 || rel != 1 {
			t.Errorf("%s: after Nix exited: acquired %d, released %d; want 1, 1", tc.name, a, rel)
		}
	}
}

// waitingHook is an AcquireBuild that grants nothing until grant is
// closed, and refuses when stop closes first (as admission does).
type waitingHook struct {
	waiting chan struct{} // closed when the build waits
	grant   chan struct{}
	stopped atomic.Bool
}

func newWaitingHook() *waitingHook {
	return &waitingHook{waiting: make(chan struct{}), grant: make(chan struct{})}
}

func (h *waitingHook) acquire(stop <-chan struct{}) (func(), error) {
	close(h.waiting)
	select {
	case <-h.grant:
		return func() {}, nil
	case <-stop:
		h.stopped.Store(true)
		return nil, errors.New("the session ended while waiting for a build slot")
	case <-time.After(20 * time.Second):
		return nil, errors.New("test: neither granted nor stopped within 20 s")
	}
}

// TestSlotWaitEndsWithTheClient: a client whose stream ends while its
// build waits for a slot (a Nix that died and left its ssh running) gives
// up its place then, not at the queue timeout: the wait is stopped, the
// build refused with the reason and never reaches Nix.
func TestSlotWaitEndsWithTheClient(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	h := newWaitingHook()
	r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey, AcquireBuild: h.acquire}, slices.Concat(workerHello(v), build), workerServerWhole(v))
	if !h.stopped.Load() {
		t.Fatal("the slot wait was not stopped when the client's stream ended")
	}
	msgs := workerErrorMessages(r.toClient, v)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "the client closed its end while its build waited for a slot") {
		t.Errorf("client got errors %q; want the reason", msgs)
	}
	if !slices.Equal(r.toNix, workerHello(v)) {
		t.Errorf("Nix got %d bytes past the hello of a build whose client left", len(r.toNix)-len(workerHello(v)))
	}
}

// TestSlotWaitReadsAhead: what a client sends while its build waits for a
// slot is read (so that the end of its stream is seen) and reaches Nix
// after the build, in order, once the slot is granted.
func TestSlotWaitReadsAhead(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	isValid := (&enc{}).u64(1).str("/nix/store/11111111111111111111111111111111-x").b
	h := newWaitingHook()
	cr, cw := io.Pipe()
	s := attach(t, New(Options{Protocol: policy.ProtocolWorker, Policy: buildKey, AcquireBuild: h.acquire}), cr, workerServerWhole(v))
	wrote := make(chan error, 1)
	go func() {
		if _, err := cw.Write(slices.Concat(workerHello(v), build)); err != nil {
			wrote <- err
			return
		}
		select {
		case <-h.waiting:
		case <-time.After(20 * time.Second):
			wrote <- errors.New("the build did not wait for a slot within 20 s")
			return
		}
		// An io.Pipe write returns once it has been read: only the
		// read-ahead reads while the build waits.
		_, err := cw.Write(isValid)
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("what the client sent during the wait was not read within 20 s")
	}
	close(h.grant)
	cw.Close()
	toNix := s.nixGot(t)
	s.nixExited()
	if h.stopped.Load() {
		t.Error("the wait was stopped though the client's stream had not ended")
	}
	if want := slices.Concat(workerHello(v), build, isValid); !slices.Equal(toNix, want) {
		t.Errorf("Nix got %x; want the hello, the build and the op sent during the wait, in order", toNix)
	}
}

// TestSlotWaitTwiceWhileReadingAhead: a worker client pipelines two
// builds; the first is refused a slot after a wait while the second is
// already buffered, so the second wait begins while the first's
// read-ahead is still blocked reading the client. That read-ahead is
// taken up again, not joined by a second reader: what the client sends
// later reaches Nix after the second build, in order (and -race sees no
// two readers of the stream).
func TestSlotWaitTwiceWhileReadingAhead(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	isValid := (&enc{}).u64(1).str("/nix/store/11111111111111111111111111111111-x").b
	later := (&enc{}).u64(1).str("/nix/store/22222222222222222222222222222222-y").b
	var calls atomic.Int32
	acquire := func(stop <-chan struct{}) (func(), error) {
		if calls.Add(1) == 1 {
			select {
			case <-stop:
				return nil, errors.New("test: the first wait was stopped")
			case <-time.After(50 * time.Millisecond):
				return nil, errors.New("no build slot within 50ms (max_builds 1, 1 waiting)")
			}
		}
		return func() {}, nil
	}
	cr, cw := io.Pipe()
	s := attach(t, New(Options{Protocol: policy.ProtocolWorker, Policy: buildKey, AcquireBuild: acquire}), cr, workerServerWhole(v))
	wrote := make(chan error, 1)
	go func() {
		if _, err := cw.Write(slices.Concat(workerHello(v), build, build, isValid)); err != nil {
			wrote <- err
			return
		}
		for i := 0; i < 20000 && calls.Load() < 2; i++ {
			time.Sleep(time.Millisecond)
		}
		_, err := cw.Write(later)
		cw.Close()
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client's writes were not read within 20 s")
	}
	toNix := s.nixGot(t)
	s.nixExited()
	if want := slices.Concat(workerHello(v), build, isValid, later); !slices.Equal(toNix, want) {
		t.Errorf("Nix got %x; want the hello, the second build, then the client's later ops in order", toNix)
	}
	if msgs := workerErrorMessages(s.toClient.Bytes(), v); len(msgs) != 1 || !strings.Contains(msgs[0], "no build slot within 50ms") {
		t.Errorf("client got errors %q; want the first build's refusal", msgs)
	}
}
