package admission

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LockDir keeps the per-key session limits and the build slots of exec
// mode, where each session is a process of its own, in a directory of
// lock files that all of them share. Each holder (a session, a build
// holding a slot, a build waiting for one) has a file of its own and
// holds flock(2) on it for as long as it lives: the kernel lets go of
// the lock when the process ends, however it ends (SIGKILL included), so
// a file whose lock can be taken belongs to nobody and is removed. The
// decisions are made under a lock on the file "lock", held for
// milliseconds; the fair order of the build slots is the same as Slots'
// (nextKey), and what it needs to remember (the last sequence number,
// when each key was last served) is the small file "fair".
//
// The directory must be on a local file system, owned by the account
// and written by no one else (OpenLockDir checks). A LockDir is safe for
// concurrent use; a nil LockDir is not usable.
type LockDir struct {
	// Path is the directory's path, for messages.
	Path string
	// fd is the directory, opened once: every file is reached from it,
	// so that the path cannot be swapped under a holder.
	fd int
}

// RuntimeDirName is the directory in state_dir that OpenRuntimeDir uses.
const RuntimeDirName = "run"

// Files of a LockDir.
const (
	lockFile = "lock"
	fairFile = "fair"
	fairTemp = "fair.tmp"
)

// The kinds of holder, the first field of a holder's file name.
const (
	kindSession = "s" // s.KEY.ID: a session of KEY (max_sessions)
	kindBuild   = "b" // b.KEY.ID: a build of KEY holding a slot
	kindWaiter  = "w" // w.SEQ.KEYMAX.KEY.ID: a build of KEY waiting
)

// lockWait bounds how long a decision waits for the directory's lock,
// which is held for milliseconds: a holder that is stopped (SIGSTOP)
// while it has it blocks the others at most this long.
const lockWait = 10 * time.Second

// pollEvery is how often a waiting build looks for a free slot while
// waiting builds wait: every 50 ms, 10 ms later for each waiting build,
// at most every second. Each look reads every holder's file, so a long
// queue looks less often; the order does not depend on it, only how
// soon a freed slot is taken.
func pollEvery(waiting int) time.Duration {
	return min(50*time.Millisecond+time.Duration(waiting)*10*time.Millisecond, time.Second)
}

// OpenRuntimeDir opens the directory exec mode keeps its lock files in,
// making it when it is missing: RuntimeDirName ("run") in stateDir when
// it is there or the account may make it there, else "nixgate-UID" in
// /tmp (UID the effective uid). Either must be a directory of the
// account's own that no one else may write, not a symbolic link: in a
// shared /tmp another account may have made the name first, and then
// OpenRuntimeDir fails rather than share it. An empty stateDir goes
// straight to /tmp.
func OpenRuntimeDir(stateDir string) (*LockDir, error) {
	return openRuntimeDir(stateDir, "/tmp")
}

func openRuntimeDir(stateDir, tmp string) (*LockDir, error) {
	if stateDir != "" {
		p := filepath.Join(stateDir, RuntimeDirName)
		err := os.Mkdir(p, 0o700)
		switch {
		case err == nil || errors.Is(err, fs.ErrExist):
			return OpenLockDir(p)
		case errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOTDIR):
			// Not the account's to write, or no state_dir: /tmp.
		default:
			return nil, errorf("%w", err)
		}
	}
	p := filepath.Join(tmp, "nixgate-"+strconv.Itoa(os.Geteuid()))
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, errorf("%w", err)
	}
	return OpenLockDir(p)
}

// OpenLockDir opens path, an existing directory, as a LockDir. It fails
// unless path is a directory (not a symbolic link) owned by the
// effective uid and not writable by group or others.
func OpenLockDir(path string) (*LockDir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return nil, errorf("lock directory %s is a symbolic link", path)
			}
		}
		return nil, errorf("lock directory %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, errorf("lock directory %s: %w", path, err)
	}
	uid := os.Geteuid()
	if int(st.Uid) != uid {
		unix.Close(fd)
		return nil, errorf("lock directory %s belongs to uid %d, not to this account (uid %d)", path, st.Uid, uid)
	}
	if mode := uint32(st.Mode) & 0o777; mode&0o022 != 0 {
		unix.Close(fd)
		return nil, errorf("lock directory %s may be written by others (mode %04o; want 0700)", path, mode)
	}
	return &LockDir{Path: path, fd: fd}, nil
}

// Close closes the directory. Holders still held keep their locks until
// released, but their files are then left behind (to be removed as
// stale).
func (d *LockDir) Close() error {
	return unix.Close(d.fd)
}

// AcquireSession counts a session of key against its max_sessions, max
// (zero means no limit: nothing is counted). It returns the function
// that ends the count (the process's end does too); it fails when key
// already has max sessions.
func (d *LockDir) AcquireSession(key string, max int) (release func(), err error) {
	if max <= 0 {
		return func() {}, nil
	}
	var h *holder
	err = d.locked(func() error {
		live, err := d.scan(kindSession + "." + keyName(key) + ".")
		if err != nil {
			return err
		}
		if len(live) >= max {
			return limitError(fmt.Sprintf("key %q already has %d sessions running (max_sessions)", key, max))
		}
		h, err = d.hold(kindSession + "." + keyName(key) + "." + uniqueID())
		return err
	})
	if err != nil {
		return nil, err
	}
	return h.release, nil
}

// Announce holds a session file of key without counting it against any
// limit, so that nixgate status (ReadView) sees the session, and sweeps
// the files of sessions whose process has ended. It returns the
// function that removes the file (the process's end lets go of it too);
// when the directory cannot take it, nothing is held and the session
// goes on unseen.
func (d *LockDir) Announce(key string) (release func()) {
	var h *holder
	d.locked(func() error {
		if _, err := d.scan(kindSession + "."); err != nil {
			return err
		}
		var err error
		h, err = d.hold(kindSession + "." + keyName(key) + "." + uniqueID())
		return err
	})
	if h == nil {
		return func() {}
	}
	return h.release
}

// Busy reports whether max builds hold a slot (max is [admission]
// max_builds; zero means no limit, and then Busy is false).
func (d *LockDir) Busy(max int) (bool, error) {
	if max <= 0 {
		return false, nil
	}
	var n int
	err := d.locked(func() error {
		live, err := d.scan(kindBuild + ".")
		n = len(live)
		return err
	})
	return n >= max, err
}

// Stats returns the builds holding a slot and the builds waiting.
func (d *LockDir) Stats() (running, waiting int, err error) {
	err = d.locked(func() error {
		st, err := d.state()
		if err != nil {
			return err
		}
		for _, n := range st.running {
			running += n
		}
		waiting = len(st.waiters)
		return nil
	})
	return running, waiting, err
}

// AcquireBuild waits for a build slot for r, as Slots.Acquire does in
// one process, and returns the function that gives it back (call it
// once; later calls do nothing; the process's end gives it back too),
// how long it waited, and how many builds were waiting for a slot when
// it asked (this one included). It fails when no slot is free within
// r.Timeout, when stop is closed first (nil never closes), or when the
// directory cannot be used.
func (d *LockDir) AcquireBuild(stop <-chan struct{}, r SlotRequest) (release func(), wait time.Duration, depth int, err error) {
	start := time.Now()
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultBuildQueueTimeout
	}
	deadline := start.Add(timeout)
	key := keyName(r.Key)
	var w *holder
	var seq uint64
	var slot *holder
	var poll time.Duration
	err = d.locked(func() error {
		st, err := d.state()
		if err != nil {
			return err
		}
		st.seq++
		seq = st.seq
		w, err = d.hold(fmt.Sprintf("%s.%d.%d.%s.%s", kindWaiter, seq, max(r.KeyMax, 0), key, uniqueID()))
		if err != nil {
			return err
		}
		st.waiters = append(st.waiters, waiterEntry{key: key, seq: seq, keyMax: r.KeyMax})
		depth = len(st.waiters)
		poll = pollEvery(depth)
		slot, err = d.take(st, r.Max, w, seq, key)
		if err == nil && slot == nil {
			err = st.save(d) // the sequence number given out
		}
		return err
	})
	if err != nil {
		if w != nil {
			w.release()
		}
		return nil, time.Since(start), depth, err
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	var why error
	for slot == nil {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		timer.Reset(min(poll, left))
		select {
		case <-timer.C:
		case <-stop:
			why = limitError("the session ended while waiting for a build slot")
		}
		if why != nil {
			break
		}
		err = d.locked(func() error {
			st, err := d.state()
			if err != nil {
				return err
			}
			poll = pollEvery(len(st.waiters))
			slot, err = d.take(st, r.Max, w, seq, key)
			return err
		})
		if err != nil {
			w.release()
			return nil, time.Since(start), depth, err
		}
	}
	if slot != nil {
		return slot.release, time.Since(start), depth, nil
	}
	// Out of the queue; the count, for the message, includes this one.
	var waiting int
	d.locked(func() error {
		if st, err := d.state(); err == nil {
			waiting = len(st.waiters)
		}
		w.release()
		return nil
	})
	w.release() // when the lock could not be had
	if why != nil {
		return nil, time.Since(start), depth, why
	}
	return nil, time.Since(start), depth, noSlotError(timeout, r.Key, r.Max, r.KeyMax, waiting)
}

// take gives waiter w (sequence number seq, of key) a slot when the fair
// order grants it one now, with max the builder-wide limit (zero means
// none): it then holds a build file instead of its waiter's, and st is
// saved with the grant; nil when it is not w's turn. The directory's
// lock is held.
func (d *LockDir) take(st *lockState, max int, w *holder, seq uint64, key string) (*holder, error) {
	running := 0
	for _, n := range st.running {
		running += n
	}
	free := -1
	if max > 0 {
		free = max - running
	}
	granted := free != 0 && slices.Contains(fairGrants(free, st.seq, st.queues()), seq)
	if !granted {
		return nil, nil
	}
	slot, err := d.hold(kindBuild + "." + key + "." + uniqueID())
	if err != nil {
		return nil, err
	}
	w.release()
	st.seq++
	st.served[key] = st.seq
	if err := st.save(d); err != nil {
		slot.release()
		return nil, err
	}
	return slot, nil
}

// lockState is what a decision about build slots sees: the live holders
// and waiters, and the fair order's memory.
type lockState struct {
	// seq is the last sequence number given out.
	seq uint64
	// served is when each key (by keyName) was last granted a slot,
	// for the keys with a build running or waiting.
	served map[string]uint64
	// running counts the builds holding a slot, by key.
	running map[string]int
	// waiters are the builds waiting, oldest first.
	waiters []waiterEntry
}

type waiterEntry struct {
	key    string
	seq    uint64
	keyMax int
}

// queues returns the keys with a build running or waiting, as nextKey
// sees them, each key's limit that of its oldest waiter.
func (st *lockState) queues() []keyQueue {
	byKey := map[string]*keyQueue{}
	var keys []string
	q := func(k string) *keyQueue {
		if byKey[k] == nil {
			byKey[k] = &keyQueue{served: st.served[k]}
			keys = append(keys, k)
		}
		return byKey[k]
	}
	for k, n := range st.running {
		q(k).running = n
	}
	for _, w := range st.waiters {
		kq := q(w.key)
		if len(kq.waiters) == 0 {
			kq.max = w.keyMax
		}
		kq.waiters = append(kq.waiters, w.seq)
	}
	slices.Sort(keys)
	qs := make([]keyQueue, 0, len(keys))
	for _, k := range keys {
		qs = append(qs, *byKey[k])
	}
	return qs
}

// state reads the live build holders and waiters (removing the files
// of the dead) and the fair order's memory, forgetting keys with nothing
// running or waiting. The directory's lock is held.
func (d *LockDir) state() (*lockState, error) {
	st := &lockState{served: map[string]uint64{}, running: map[string]int{}}
	names, err := d.scan(kindBuild+".", kindWaiter+".")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		f := strings.Split(name, ".")
		switch {
		case f[0] == kindBuild && len(f) == 3:
			st.running[f[1]]++
		case f[0] == kindWaiter && len(f) == 5:
			seq, err1 := strconv.ParseUint(f[1], 10, 64)
			keyMax, err2 := strconv.Atoi(f[2])
			if err1 != nil || err2 != nil {
				continue
			}
			st.waiters = append(st.waiters, waiterEntry{key: f[3], seq: seq, keyMax: keyMax})
			st.seq = max(st.seq, seq)
		}
	}
	slices.SortFunc(st.waiters, func(a, b waiterEntry) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	data, err := d.readFile(fairFile)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, d.errorf(fairFile, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "seq":
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				st.seq = max(st.seq, n)
			}
		case len(f) == 3 && f[0] == "served":
			if n, err := strconv.ParseUint(f[2], 10, 64); err == nil {
				st.served[f[1]] = n
			}
		}
	}
	for k := range st.served {
		if st.running[k] == 0 && !slices.ContainsFunc(st.waiters, func(w waiterEntry) bool { return w.key == k }) {
			delete(st.served, k)
		}
	}
	return st, nil
}

// save writes the fair order's memory. The directory's lock is held.
func (st *lockState) save(d *LockDir) error {
	var b strings.Builder
	fmt.Fprintf(&b, "seq %d\n", st.seq)
	keys := make([]string, 0, len(st.served))
	for k := range st.served {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "served %s %d\n", k, st.served[k])
	}
	fd, err := d.openRegular(fairTemp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		return d.errorf(fairTemp, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.Path, fairTemp))
	_, werr := f.WriteString(b.String())
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return errorf("%w", err)
	}
	if err := unix.Renameat(d.fd, fairTemp, d.fd, fairFile); err != nil {
		return d.errorf(fairFile, err)
	}
	return nil
}

// locked runs f holding the directory's lock.
func (d *LockDir) locked(f func() error) error {
	fd, err := unix.Openat(d.fd, lockFile, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return d.errorf(lockFile, err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return d.errorf(lockFile, err)
		}
		if time.Now().After(deadline) {
			return errorf("%s: held by another process for over %s", filepath.Join(d.Path, lockFile), lockWait)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return f()
}

// scan returns the names of the live holders' files whose names start
// with one of prefixes, and removes the others' (their process has
// ended). The directory's lock is held: files are made and locked under
// it, so an unlocked one is never a holder's that is about to lock it.
func (d *LockDir) scan(prefixes ...string) ([]string, error) {
	dfd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.errorf(".", err)
	}
	dir := os.NewFile(uintptr(dfd), d.Path)
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, errorf("%w", err)
	}
	var live []string
	for _, name := range names {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		fd, err := d.openRegular(name, unix.O_RDONLY, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // released meanwhile
		}
		if errors.Is(err, errNotRegular) {
			// Not a holder's file (holders make regular files): nobody's.
			unix.Unlinkat(d.fd, name, 0)
			continue
		}
		if err != nil {
			return nil, d.errorf(name, err)
		}
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			// Nobody holds it: its process has ended.
			unix.Unlinkat(d.fd, name, 0)
		case errors.Is(err, unix.EWOULDBLOCK):
			live = append(live, name)
		default:
			unix.Close(fd)
			return nil, d.errorf(name, err)
		}
		unix.Close(fd)
	}
	return live, nil
}

// holder is one held file.
type holder struct {
	d    *LockDir
	name string
	fd   int
	once sync.Once
}

// hold makes the file name and locks it for as long as the process
// lives or until release. The directory's lock is held.
func (d *LockDir) hold(name string) (*holder, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, d.errorf(name, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		unix.Unlinkat(d.fd, name, 0)
		return nil, d.errorf(name, err)
	}
	// For a person looking: which process holds it.
	unix.Write(fd, []byte(strconv.Itoa(os.Getpid())+"\n"))
	return &holder{d: d, name: name, fd: fd}, nil
}

// release removes the file and lets go of its lock; later calls do
// nothing.
func (h *holder) release() {
	h.once.Do(func() {
		unix.Unlinkat(h.d.fd, h.name, 0)
		unix.Close(h.fd)
	})
}

func (d *LockDir) readFile(name string) ([]byte, error) {
	fd, err := d.openRegular(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.Path, name))
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20)) // a few lines
}

// errNotRegular is openRegular's error for a name that is not a regular
// file.
var errNotRegular = errors.New("not a regular file")

// openRegular opens name in the directory with flags, never following a
// symbolic link and never waiting (a FIFO someone made there would
// otherwise keep the open, or the first read, waiting for ever while
// the directory's lock is held), and fails with errNotRegular unless it
// is a regular file.
func (d *LockDir) openRegular(name string, flags int, perm uint32) (int, error) {
	fd, err := unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if err != nil {
		if errors.Is(err, unix.ENXIO) { // a FIFO that nobody reads
			return -1, errNotRegular
		}
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, errNotRegular
	}
	return fd, nil
}

func (d *LockDir) errorf(name string, err error) error {
	return errorf("%s: %w", filepath.Join(d.Path, name), err)
}

// keyName is key as it appears in file names: its bytes in hex, or for
// a long name a hash of it, so that any key name makes a file name.
func keyName(key string) string {
	if len(key) <= 64 {
		return hex.EncodeToString([]byte(key))
	}
	sum := sha256.Sum256([]byte(key))
	return "h" + hex.EncodeToString(sum[:16])
}

var idCount atomic.Uint64

// uniqueID names one holder of this process: its pid, a count, and
// random bytes (a dead process's stale file may carry the same pid).
func uniqueID() string {
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%d-%d-%s", os.Getpid(), idCount.Add(1), hex.EncodeToString(r[:]))
}
