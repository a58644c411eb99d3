package admission

import (
	"fmt"
	"time"
)

// keyQueue is one key's part in the fair order of the build slots, as
// both Slots (in one process) and LockDir (across processes) keep it.
type keyQueue struct {
	// running is the key's builds holding a slot.
	running int
	// max is the key's own limit (its max_builds); 0 means none.
	max int
	// served is the sequence number of the key's last grant; 0 if it
	// has had none since it was last idle (nothing running or waiting).
	served uint64
	// waiters are the sequence numbers of the key's waiting builds,
	// oldest first. nextKey looks only at the first.
	waiters []uint64
}

// nextKey returns the index in qs of the key whose oldest waiter gets
// the next free slot: of the keys with a waiter and under their own
// limit, the one served least recently, ties going to the waiter that
// came first. It returns -1 when no key may have a slot.
func nextKey(qs []keyQueue) int {
	best := -1
	for i, q := range qs {
		if len(q.waiters) == 0 || (q.max > 0 && q.running >= q.max) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := qs[best]
		if q.served < b.served || q.served == b.served && q.waiters[0] < b.waiters[0] {
			best = i
		}
	}
	return best
}

// fairGrants returns the waiters, by sequence number, that get a slot
// now, in the order nextKey hands them out: free is how many
// builder-wide slots are free (negative means no limit), seq the last
// sequence number given out (each grant takes the next one, as the
// key's served). qs is not changed.
func fairGrants(free int, seq uint64, qs []keyQueue) []uint64 {
	sim := make([]keyQueue, len(qs))
	copy(sim, qs)
	var granted []uint64
	for free != 0 {
		i := nextKey(sim)
		if i < 0 {
			break
		}
		q := &sim[i]
		granted = append(granted, q.waiters[0])
		q.waiters = q.waiters[1:]
		q.running++
		seq++
		q.served = seq
		if free > 0 {
			free--
		}
	}
	return granted
}

// noSlotError is the refusal of a build that got no slot within
// timeout: max and keyMax are the limits (0 for none), waiting the
// builds waiting then, this one included.
func noSlotError(timeout time.Duration, key string, max, keyMax, waiting int) error {
	limits := fmt.Sprintf("max_builds %d", max)
	switch {
	case keyMax > 0 && max > 0:
		limits += fmt.Sprintf(", key %s max_builds %d", key, keyMax)
	case keyMax > 0:
		limits = fmt.Sprintf("key %s max_builds %d", key, keyMax)
	}
	return limitError(fmt.Sprintf("no build slot within %s (%s, %d waiting)", timeout, limits, waiting))
}

// A LimitError refuses a request by a limit: a key's max_sessions, no
// build slot within the queue timeout, or the session ending while it
// waited. Its text is the line the client sees; admission returns it
// inside its policy.Error ("admission: " and the line). Any other error
// of a LockDir is about the directory itself.
type LimitError struct{ msg string }

// limitError returns a *LimitError saying msg, as one of admission's
// errors.
func limitError(msg string) error { return errorf("%w", &LimitError{msg}) }

func (e *LimitError) Error() string { return e.msg }
