package admission

import (
	"sync"
	"time"
)

// DefaultBuildQueueTimeout is how long a build waits for a slot when
// SlotRequest.Timeout is zero.
const DefaultBuildQueueTimeout = 10 * time.Minute

// Slots shares a builder's build slots among the sessions of one
// process (serve mode): at most a number of builds at once, builder-wide
// and per key. A build beyond the limit waits in a fair queue: first in,
// first out within a key, and round-robin across keys (the key served
// least recently goes first). The zero Slots is ready to use and has no
// waiters; a Slots must not be copied after first use.
type Slots struct {
	// OnChange, when set, is called with the builds running and waiting
	// whenever either changes, with the Slots locked: it must be quick
	// and must not call the Slots. Set it before first use; nil means
	// none.
	OnChange func(running, waiting int)

	mu sync.Mutex
	// max is the builder-wide limit of the latest request; 0 means none.
	max     int
	running int
	perKey  map[string]*keySlots
	seq     uint64
	waiting int
}

// keySlots is one key's running builds and waiters.
type keySlots struct {
	running int
	max     int
	queue   []*waiter
	// served is the sequence number of the key's last grant; 0 if never.
	served uint64
}

type waiter struct {
	key     string
	seq     uint64
	since   time.Time
	ready   chan struct{}
	granted bool
}

// SlotRequest is one build asking for a slot.
type SlotRequest struct {
	// Key is the name of the session's key.
	Key string
	// Max is the builder-wide number of builds at once ([admission]
	// max_builds, from the configuration in force). Zero means no limit.
	Max int
	// KeyMax is the key's own number of builds at once (its max_builds).
	// Zero means no limit.
	KeyMax int
	// Timeout is how long the build may wait. Zero means
	// DefaultBuildQueueTimeout.
	Timeout time.Duration
}

// Acquire waits for a build slot for r and returns the function that
// gives it back (call it exactly once; later calls do nothing) and how
// long it waited. It fails when no slot is free within r.Timeout, or
// when stop is closed first (nil never closes).
func (s *Slots) Acquire(stop <-chan struct{}, r SlotRequest) (release func(), wait time.Duration, err error) {
	start := time.Now()
	s.mu.Lock()
	s.max = r.Max
	k := s.key(r.Key)
	k.max = r.KeyMax
	s.seq++
	w := &waiter{key: r.Key, seq: s.seq, since: start, ready: make(chan struct{})}
	k.queue = append(k.queue, w)
	s.waiting++
	s.dispatch()
	s.changed()
	s.mu.Unlock()

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultBuildQueueTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case <-w.ready:
		return s.releaser(r.Key), time.Since(start), nil
	case <-timer.C:
		why = nil
	case <-stop:
		why = limitError("the session ended while waiting for a build slot")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		if why == nil {
			// Granted as the timer fired: take it.
			return s.releaser(r.Key), time.Since(start), nil
		}
		s.release(r.Key)
		return nil, time.Since(start), why
	}
	waiting := s.waiting
	s.remove(k, w)
	if why != nil {
		return nil, time.Since(start), why
	}
	return nil, time.Since(start), noSlotError(timeout, r.Key, r.Max, r.KeyMax, waiting)
}

// SetMax sets the builder-wide limit (zero means none), as each
// SlotRequest.Max does, and hands out the slots a higher limit frees for
// the builds waiting.
func (s *Slots) SetMax(max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max
	s.dispatch()
	s.changed()
}

// Busy reports whether every builder-wide slot is taken: max builds are
// running (max from the configuration in force; zero means no limit, and
// then Busy is false).
func (s *Slots) Busy(max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max > 0 && s.running >= max
}

// Stats returns the builds running and the builds waiting for a slot.
func (s *Slots) Stats() (running, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running, s.waiting
}

func (s *Slots) key(name string) *keySlots {
	if s.perKey == nil {
		s.perKey = map[string]*keySlots{}
	}
	k := s.perKey[name]
	if k == nil {
		k = &keySlots{}
		s.perKey[name] = k
	}
	return k
}

func (s *Slots) releaser(key string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.release(key)
		})
	}
}

// release gives back a slot of key and hands free slots on; s.mu held.
func (s *Slots) release(key string) {
	s.running--
	k := s.perKey[key]
	k.running--
	s.dispatch()
	s.prune(key)
	s.changed()
}

// remove takes w out of k's queue; s.mu held.
func (s *Slots) remove(k *keySlots, w *waiter) {
	for i, x := range k.queue {
		if x == w {
			k.queue = append(k.queue[:i], k.queue[i+1:]...)
			s.waiting--
			break
		}
	}
	// A waiter at the head that could not run may have held back others
	// of the same key: nothing changes for other keys, but see anyway.
	s.dispatch()
	s.prune(w.key)
	s.changed()
}

func (s *Slots) changed() {
	if s.OnChange != nil {
		s.OnChange(s.running, s.waiting)
	}
}

// prune forgets a key with nothing running or waiting; s.mu held.
func (s *Slots) prune(key string) {
	if k := s.perKey[key]; k != nil && k.running == 0 && len(k.queue) == 0 {
		delete(s.perKey, key)
	}
}

// dispatch grants free slots, in the order nextKey gives: to the head
// waiter of the key served least recently among those under their own
// limit, ties going to the waiter that came first; s.mu held.
func (s *Slots) dispatch() {
	names := make([]string, 0, len(s.perKey))
	qs := make([]keyQueue, 0, len(s.perKey))
	for s.max <= 0 || s.running < s.max {
		names, qs = names[:0], qs[:0]
		for name, k := range s.perKey {
			q := keyQueue{running: k.running, max: k.max, served: k.served}
			if len(k.queue) > 0 {
				q.waiters = []uint64{k.queue[0].seq}
			}
			names = append(names, name)
			qs = append(qs, q)
		}
		i := nextKey(qs)
		if i < 0 {
			return
		}
		best := s.perKey[names[i]]
		w := best.queue[0]
		best.queue = best.queue[1:]
		s.waiting--
		s.seq++
		best.served = s.seq
		best.running++
		s.running++
		w.granted = true
		close(w.ready)
	}
}
