package usage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/nixgate/nixgate/nixproto"
)

// FileName is the name of the usage store in the state directory.
const FileName = "usage.db"

// Bucket is the time span counters are kept by: a report's start is
// rounded down to it.
const Bucket = time.Hour

// DefaultTimeout is how long Record waits for another process (serve, an
// exec-mode session, nixgate usage) to let go of the store when
// Recorder.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// hoursBucket holds one nested bucket per hour (its start, Unix seconds,
// 8 bytes big-endian), which maps key names to JSON Counters.
var hoursBucket = []byte("hours")

// Path returns the usage store of stateDir.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Counters are what one key used. The zero Counters is no use at all.
type Counters struct {
	// Sessions counts the Nix sessions run (refused ones are not).
	Sessions int64 `json:"sessions"`
	// Builds counts the build operations that asked for something to be
	// built (nixproto.Audit.Builds).
	Builds int64 `json:"builds"`
	// BuildSeconds is the time those operations took, from each one
	// reaching Nix until Nix answered it (nixproto.Audit.BuildTime).
	BuildSeconds float64 `json:"build_seconds"`
	// BytesIn are the bytes the clients sent to Nix; BytesOut the bytes
	// Nix sent back, its stderr (build logs) included.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// PathsImported counts the store paths added to the store.
	PathsImported int64 `json:"paths_imported"`
	// Refusals counts the sessions refused (by policy, a limit or a
	// drain) and the protocol operations refused within sessions.
	Refusals int64 `json:"refusals"`
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Sessions += o.Sessions
	c.Builds += o.Builds
	c.BuildSeconds += o.BuildSeconds
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.PathsImported += o.PathsImported
	c.Refusals += o.Refusals
}

// IsZero reports whether c counts nothing.
func (c Counters) IsZero() bool { return c == Counters{} }

// FromSession returns the counters of one Nix session that ran: its
// filter's audit and the bytes moved (in to Nix, out from Nix's stdout
// and stderr).
func FromSession(a nixproto.Audit, in, out int64) Counters {
	return Counters{
		Sessions:      1,
		Builds:        int64(a.Builds),
		BuildSeconds:  a.BuildTime.Seconds(),
		BytesIn:       in,
		BytesOut:      out,
		PathsImported: int64(a.Imported.Count),
		Refusals:      int64(a.RefusedCount),
	}
}

// Refusal is the counters of one refused session.
var Refusal = Counters{Refusals: 1}

// recordGrace is how much longer than its lock timeout Record waits for
// the store.
const recordGrace = 3 * time.Second

// writeMu makes the writers of one process take turns without polling
// bbolt's file lock.
var writeMu sync.Mutex

// Add adds c to key's counters for the hour of at in the store of
// stateDir, creating the store (mode 0600) but not the directory. It
// waits up to timeout (zero: DefaultTimeout) for another process to let
// go of the store, then fails.
func Add(stateDir, key string, at time.Time, c Counters, timeout time.Duration) error {
	if stateDir == "" {
		return errorf("no state directory")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	writeMu.Lock()
	defer writeMu.Unlock()
	p := Path(stateDir)
	return guarded(p, func() error {
		db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: timeout})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.Update(func(tx *bolt.Tx) error {
			hours, err := tx.CreateBucketIfNotExists(hoursBucket)
			if err != nil {
				return err
			}
			hour, err := hours.CreateBucketIfNotExists(hourKey(at))
			if err != nil {
				return err
			}
			var sum Counters
			if v := hour.Get([]byte(key)); v != nil {
				if err := json.Unmarshal(v, &sum); err != nil {
					return damage(err)
				}
			}
			sum.Add(c)
			v, err := json.Marshal(sum)
			if err != nil {
				return err
			}
			return hour.Put([]byte(key), v)
		})
	})
}

// damagedError is an error that comes of a damaged store.
type damagedError struct{ err error }

func (e damagedError) Error() string { return e.err.Error() }
func (e damagedError) Unwrap() error { return e.err }

func damage(err error) error { return damagedError{err} }

// guarded runs f, which opens the store at p with bbolt, and returns its
// error, prefixed with p. A panic (bbolt's answer to pages it cannot
// read) or a fault reading the store's mapping is recovered: a store the
// build account can write (exec mode) must never break a session, only
// its counting. A damaged store's error says how to start a new one.
func guarded(p string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damage(fmt.Errorf("%v", r))
		}
		if err == nil {
			return
		}
		if errors.As(err, new(damagedError)) || errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
			errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping) ||
			errors.Is(err, berrors.ErrIncompatibleValue) {
			err = errorf("%s is damaged (%v): move it aside, and nixgate starts a new one (the counts in it are lost)", p, err)
			return
		}
		err = errorf("%s: %w", p, err)
	}()
	return f()
}

// Sums returns each key's counters from the hour of since on (a zero
// since: from the beginning), read from the store of stateDir without
// writing to it. A missing store is no usage yet: an empty map and no
// error. It waits up to timeout (zero: DefaultTimeout) for a writer to
// finish.
func Sums(stateDir string, since time.Time, timeout time.Duration) (map[string]Counters, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	sums := map[string]Counters{}
	p := Path(stateDir)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return sums, nil
	}
	err := guarded(p, func() error {
		db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			hours := tx.Bucket(hoursBucket)
			if hours == nil {
				return nil
			}
			start := []byte(nil)
			if !since.IsZero() {
				start = hourKey(since)
			}
			c := hours.Cursor()
			k, _ := c.First()
			if start != nil {
				k, _ = c.Seek(start)
			}
			for ; k != nil; k, _ = c.Next() {
				hour := hours.Bucket(k)
				if hour == nil {
					continue
				}
				err := hour.ForEach(func(name, v []byte) error {
					var n Counters
					if err := json.Unmarshal(v, &n); err != nil {
						return damage(fmt.Errorf("key %q: %w", name, err))
					}
					sum := sums[string(name)]
					sum.Add(n)
					sums[string(name)] = sum
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return sums, nil
}

// hourKey is the bucket name of the hour of t.
func hourKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.Truncate(Bucket).Unix()))
}

// Recorder adds sessions to a store and logs what it cannot. A nil
// *Recorder records nothing.
type Recorder struct {
	// StateDir is the directory of the store; empty records nothing.
	StateDir string
	// Timeout bounds the wait for another process; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Exe, when set, is the nixgate binary whose process reads and
	// writes the store (AddIn): for a store someone else may write.
	Exe string
	// Log gets one warning the first time the store cannot be written
	// (later failures are logged at debug level); nil means
	// slog.Default().
	Log *slog.Logger

	warned atomic.Bool
}

// Record adds c to key's counters now. It never fails: accounting must
// not get in the way of a build. An empty key is not recorded.
func (r *Recorder) Record(key string, c Counters) {
	if r == nil || r.StateDir == "" || key == "" || c.IsZero() {
		return
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// A store damaged on purpose could keep bbolt busy for good: the
	// session does not wait for it (in exec mode the process, and the
	// goroutine with it, ends with the session).
	done := make(chan error, 1)
	go func() { done <- AddIn(r.Exe, r.StateDir, key, time.Now(), c, timeout) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout + 2*recordGrace): // the child's own deadline comes first
		err = errorf("%s: no answer within %v: it may be damaged, or another process holds it; move it aside, and nixgate starts a new one", Path(r.StateDir), timeout+2*recordGrace)
	}
	if err == nil {
		return
	}
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	level := slog.LevelDebug
	if !r.warned.Swap(true) {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "usage not recorded", "file", Path(r.StateDir), "error", err.Error())
}
