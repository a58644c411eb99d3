package admission

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSlotsNeverMoreThanMax(t *testing.T) {
	const max, keyMax = 3, 2
	var s Slots
	var running, peak atomic.Int32
	perKey := map[string]*atomic.Int32{"a": {}, "b": {}, "c": {}}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		key := []string{"a", "b", "c"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, _, err := s.Acquire(nil, SlotRequest{Key: key, Max: max, KeyMax: keyMax, Timeout: time.Minute})
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
			time.Sleep(100 * time.Microsecond)
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
	if r, w := s.Stats(); r != 0 || w != 0 {
		t.Errorf("Stats() = %d running, %d waiting after all released; want 0, 0", r, w)
	}
}

// queue enqueues a waiter for key in order (each is in the queue before
// the next is started) and sends its name on served when it gets a
// slot; it releases when told.
func queue(t *testing.T, s *Slots, key, name string, max int, served chan<- string, hold <-chan struct{}) {
	t.Helper()
	r0, w0 := s.Stats()
	before := r0 + w0
	go func() {
		release, _, err := s.Acquire(nil, SlotRequest{Key: key, Max: max, Timeout: time.Minute})
		if err != nil {
			served <- "error: " + err.Error()
			return
		}
		served <- name
		<-hold
		release()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, w := s.Stats()
		if r+w > before || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func servedOrder(t *testing.T, served <-chan string, next chan<- struct{}, n int) []string {
	t.Helper()
	var order []string
	for range n {
		select {
		case name := <-served:
			order = append(order, name)
			next <- struct{}{}
		case <-time.After(5 * time.Second):
			t.Fatalf("served %v, then nothing", order)
		}
	}
	return order
}

func TestSlotsFIFOWithinKeyRoundRobinAcrossKeys(t *testing.T) {
	var s Slots
	served := make(chan string, 10)
	hold := make(chan struct{})
	// A enqueues five, then B one: B's is served second, not sixth.
	for i := range 5 {
		queue(t, &s, "A", "A"+string(rune('1'+i)), 1, served, hold)
	}
	queue(t, &s, "B", "B1", 1, served, hold)
	got := strings.Join(servedOrder(t, served, hold, 6), " ")
	if want := "A1 B1 A2 A3 A4 A5"; got != want {
		t.Errorf("served %s; want %s", got, want)
	}
}

func TestSlotsRoundRobinThreeKeys(t *testing.T) {
	var s Slots
	served := make(chan string, 10)
	hold := make(chan struct{})
	for _, n := range []string{"A1", "A2", "A3", "B1", "B2", "C1"} {
		queue(t, &s, n[:1], n, 1, served, hold)
	}
	got := strings.Join(servedOrder(t, served, hold, 6), " ")
	if want := "A1 B1 C1 A2 B2 A3"; got != want {
		t.Errorf("served %s; want %s", got, want)
	}
}

func TestSlotsTimeout(t *testing.T) {
	var s Slots
	release, _, err := s.Acquire(nil, SlotRequest{Key: "a", Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, wait, err := s.Acquire(nil, SlotRequest{Key: "b", Max: 1, Timeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("Acquire got a second slot of max_builds 1")
	}
	if want := "admission: no build slot within 50ms (max_builds 1, 1 waiting)"; err.Error() != want {
		t.Errorf("err = %q; want %q", err, want)
	}
	if wait < 50*time.Millisecond {
		t.Errorf("waited %v; want at least the timeout", wait)
	}
	if _, w := s.Stats(); w != 0 {
		t.Errorf("%d waiting after the timeout; want 0", w)
	}
	release()
	r2, _, err := s.Acquire(nil, SlotRequest{Key: "b", Max: 1, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	r2()
}

func TestSlotsKeyLimit(t *testing.T) {
	var s Slots
	r1, _, err := s.Acquire(nil, SlotRequest{Key: "a", KeyMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r1()
	_, _, err = s.Acquire(nil, SlotRequest{Key: "a", KeyMax: 1, Timeout: 20 * time.Millisecond})
	if want := "admission: no build slot within 20ms (key a max_builds 1, 1 waiting)"; err == nil || err.Error() != want {
		t.Errorf("err = %v; want %q", err, want)
	}
	// Another key is not held back by a's limit.
	r2, _, err := s.Acquire(nil, SlotRequest{Key: "b", KeyMax: 1, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

func TestSlotsStop(t *testing.T) {
	var s Slots
	release, _, _ := s.Acquire(nil, SlotRequest{Key: "a", Max: 1})
	defer release()
	stop := make(chan struct{})
	close(stop)
	if _, _, err := s.Acquire(stop, SlotRequest{Key: "a", Max: 1}); err == nil {
		t.Error("Acquire with stop closed got a slot")
	}
	if _, w := s.Stats(); w != 0 {
		t.Errorf("%d waiting after stop; want 0", w)
	}
}

func TestSlotsBusy(t *testing.T) {
	var s Slots
	if s.Busy(1) || s.Busy(0) {
		t.Fatal("Busy with nothing running")
	}
	release, _, _ := s.Acquire(nil, SlotRequest{Key: "a", Max: 1})
	if !s.Busy(1) || s.Busy(2) || s.Busy(0) {
		t.Errorf("Busy(1), Busy(2), Busy(0) = %v, %v, %v with one running; want true, false, false", s.Busy(1), s.Busy(2), s.Busy(0))
	}
	release()
}

func TestSlotsSetMax(t *testing.T) {
	var s Slots
	release, _, _ := s.Acquire(nil, SlotRequest{Key: "a", Max: 1})
	defer release()
	got := make(chan error, 1)
	go func() {
		r, _, err := s.Acquire(nil, SlotRequest{Key: "b", Max: 1, Timeout: 5 * time.Second})
		if err == nil {
			r()
		}
		got <- err
	}()
	for {
		if _, w := s.Stats(); w == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.SetMax(2) // a reload raising max_builds lets the waiting build in
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting build did not get the slot SetMax(2) added")
	}
}
