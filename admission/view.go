package admission

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// View is the build slots and sessions as nixgate status shows them.
type View struct {
	// MaxBuilds is the builder-wide limit; 0 means none.
	MaxBuilds int `json:"max_builds"`
	// Running is the builds holding a slot, by key; nil when none.
	Running map[string]int `json:"builds_running"`
	// Queue is the builds waiting for a slot, in the order the slots
	// would go to them were they freed one at a time (the fair order,
	// each key's own limit left aside).
	Queue []Queued `json:"queue"`
}

// Queued is one build waiting for a slot.
type Queued struct {
	Key   string    `json:"key"`
	Since time.Time `json:"since"`
}

// inFairOrder returns the waiters of qs, by sequence number, in the
// order fairGrants hands them out with no limit of any kind.
func inFairOrder(seq uint64, qs []keyQueue) []uint64 {
	sim := make([]keyQueue, len(qs))
	for i, q := range qs {
		sim[i] = keyQueue{running: q.running, served: q.served, waiters: q.waiters}
	}
	return fairGrants(-1, seq, sim)
}

// View returns the slots now, with max the builder-wide limit in force.
func (s *Slots) View(max int) View {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := View{MaxBuilds: max}
	var qs []keyQueue
	since := map[uint64]Queued{}
	for name, k := range s.perKey {
		if k.running > 0 {
			if v.Running == nil {
				v.Running = map[string]int{}
			}
			v.Running[name] = k.running
		}
		q := keyQueue{running: k.running, served: k.served}
		for _, w := range k.queue {
			q.waiters = append(q.waiters, w.seq)
			since[w.seq] = Queued{Key: name, Since: w.since}
		}
		qs = append(qs, q)
	}
	for _, seq := range inFairOrder(s.seq, qs) {
		v.Queue = append(v.Queue, since[seq])
	}
	return v
}

// Holder is one live holder of a lock directory, for nixgate status.
type Holder struct {
	Key   string    `json:"key"`
	Pid   int       `json:"pid,omitempty"`
	Since time.Time `json:"since"`
}

// ReadView reads the lock directory at path as nixgate status shows it
// (by anyone who may read it, root included; nothing is decided or
// changed): the builds running by key and waiting in the fair order, and
// the sessions, each with its key, process and start. Files whose
// process has ended are left out. Keys with names too long to be kept
// in a file name are shown by that name's hash.
func ReadView(path string) (View, []Holder, error) {
	var v View
	ents, err := os.ReadDir(path)
	if err != nil {
		return v, nil, errorf("%w", err)
	}
	var sessions []Holder
	st := &lockState{served: map[string]uint64{}, running: map[string]int{}}
	since := map[uint64]time.Time{}
	for _, e := range ents {
		f := strings.Split(e.Name(), ".")
		if len(f) < 3 || !e.Type().IsRegular() {
			continue
		}
		h, ok := liveHolder(filepath.Join(path, e.Name()))
		if !ok {
			continue
		}
		switch {
		case f[0] == kindSession && len(f) == 3:
			h.Key = keyFromName(f[1])
			sessions = append(sessions, h)
		case f[0] == kindBuild && len(f) == 3:
			st.running[f[1]]++
		case f[0] == kindWaiter && len(f) == 5:
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				continue
			}
			st.waiters = append(st.waiters, waiterEntry{key: f[3], seq: seq})
			since[seq] = h.Since
			st.seq = max(st.seq, seq)
		}
	}
	if data, err := os.ReadFile(filepath.Join(path, fairFile)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "served" {
				if n, err := strconv.ParseUint(f[2], 10, 64); err == nil {
					st.served[f[1]] = n
				}
			}
		}
	}
	slices.SortFunc(st.waiters, func(a, b waiterEntry) int { return int(a.seq) - int(b.seq) })
	for k, n := range st.running {
		if v.Running == nil {
			v.Running = map[string]int{}
		}
		v.Running[keyFromName(k)] = n
	}
	keyOf := map[uint64]string{}
	for _, w := range st.waiters {
		keyOf[w.seq] = w.key
	}
	for _, seq := range inFairOrder(st.seq, st.queues()) {
		v.Queue = append(v.Queue, Queued{Key: keyFromName(keyOf[seq]), Since: since[seq]})
	}
	slices.SortFunc(sessions, func(a, b Holder) int { return a.Since.Compare(b.Since) })
	return v, sessions, nil
}

// liveHolder reports whether the holder file at p belongs to a live
// process (it holds the file's lock), with that process and when the
// file was made.
func liveHolder(p string) (Holder, bool) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return Holder{}, false
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		if err == nil {
			unix.Flock(fd, unix.LOCK_UN)
		}
		return Holder{}, false
	}
	var h Holder
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		h.Since = time.Unix(st.Mtim.Unix())
	}
	var b [32]byte
	if n, _ := unix.Read(fd, b[:]); n > 0 {
		h.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b[:n])))
	}
	return h, true
}

// keyFromName is keyName undone: the key's name, or for a long one its
// hash as kept.
func keyFromName(n string) string {
	if b, err := hex.DecodeString(n); err == nil {
		return string(b)
	}
	return n
}

// KeptHealth returns the verdict on Nix's daemon that exec mode's
// sessions keep in the lock directory at path, as they last saw it; ok
// is false when none is kept.
func KeptHealth(path string) (h Health, ok bool) {
	b, err := os.ReadFile(filepath.Join(path, healthFile))
	if err != nil {
		return Health{}, false
	}
	var socket string
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "socket "); found {
			socket = v
		}
	}
	return parseKeptHealth(b, socket)
}
