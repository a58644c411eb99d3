// Package buildlog keeps the build logs that pass through nixgate, per
// key and derivation, in a directory (state_dir/build-logs): what the
// client was sent while the builder built, compressed, within a size
// per log, a total size and a retention time ([build_logs]). A session
// hands its log bytes to a Recorder, which never blocks it; the logs
// are written when the session ends.
package buildlog

import (
	"bufio"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// Store is the kept logs: DIR/k-KEY/HASH-NAME.drv.gz, one per key and
// derivation, replaced when that key builds the derivation again.
type Store struct {
	dir string
	cfg policy.BuildLogsConfig
	// now is the clock; nil means time.Now.
	now func() time.Time
}

// New returns the Store in dir with cfg's limits.
func New(dir string, cfg policy.BuildLogsConfig) *Store {
	return &Store{dir: dir, cfg: cfg}
}

// Dir is where the logs are kept.
func (s *Store) Dir() string { return s.dir }

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// ValidDrv reports whether drv is a derivation's store path
// (policy.ValidDrvPath).
func ValidDrv(drv string) bool { return policy.ValidDrvPath(drv) }

// keyDir is the directory of key's logs: its name escaped, so that any
// key name is one plain directory name.
func (s *Store) keyDir(key string) string {
	return filepath.Join(s.dir, "k-"+url.PathEscape(key))
}

func (s *Store) path(key, drv string) string {
	return filepath.Join(s.keyDir(key), filepath.Base(drv)+".gz")
}

// ErrNoLog is returned by Open when no log of the derivation is kept
// for the key.
var ErrNoLog = errors.New("buildlog: no log kept")

// Open returns the log key's builds of drv wrote, uncompressed, and when
// it was kept.
func (s *Store) Open(key, drv string) (io.ReadCloser, time.Time, error) {
	if !ValidDrv(drv) {
		return nil, time.Time{}, policy.Errorf("buildlog", "%q is not a derivation's store path", drv)
	}
	f, err := os.Open(s.path(key, drv))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, ErrNoLog
	}
	if err != nil {
		return nil, time.Time{}, policy.Errorf("buildlog", "%w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, time.Time{}, policy.Errorf("buildlog", "%w", err)
	}
	if s.cfg.Retention > 0 && s.clock().Sub(fi.ModTime()) > s.cfg.Retention {
		f.Close()
		return nil, time.Time{}, ErrNoLog
	}
	z, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, time.Time{}, policy.Errorf("buildlog", "%s: %w", f.Name(), err)
	}
	return &gzipFile{z, f}, fi.ModTime(), nil
}

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzipFile) Close() error {
	g.Reader.Close()
	return g.f.Close()
}

// Keys returns the keys that have a log of drv kept, in name order.
func (s *Store) Keys(drv string) []string {
	if !ValidDrv(drv) {
		return nil
	}
	ents, _ := os.ReadDir(s.dir)
	var keys []string
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), "k-")
		if !ok || !e.IsDir() {
			continue
		}
		key, err := url.PathUnescape(name)
		if err != nil {
			continue
		}
		if _, err := os.Stat(s.path(key, drv)); err == nil {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	return keys
}

// Prune removes the logs older than the retention time, then the oldest
// until all take at most the total size, and a session's leftovers
// (its session file, from a process that died) older than a day.
func (s *Store) Prune() error {
	type logFile struct {
		path string
		size int64
		mod  time.Time
	}
	var files []logFile
	now := s.clock()
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.dir {
				return err
			}
			return nil
		}
		if d.IsDir() {
			if p != s.dir && !strings.HasPrefix(d.Name(), "k-") && d.Name() != sessionDir {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		switch {
		case filepath.Base(filepath.Dir(p)) == sessionDir || strings.HasPrefix(d.Name(), ".new-"):
			if now.Sub(fi.ModTime()) > 24*time.Hour {
				os.Remove(p)
			}
		case strings.HasSuffix(d.Name(), ".drv.gz"):
			if s.cfg.Retention > 0 && now.Sub(fi.ModTime()) > s.cfg.Retention {
				os.Remove(p)
				return nil
			}
			files = append(files, logFile{p, fi.Size(), fi.ModTime()})
		}
		return nil
	})
	if err != nil {
		return policy.Errorf("buildlog", "%w", err)
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	slices.SortFunc(files, func(a, b logFile) int { return a.mod.Compare(b.mod) })
	for i := 0; total > int64(s.cfg.MaxTotal) && s.cfg.MaxTotal > 0 && i < len(files); i++ {
		if os.Remove(files[i].path) == nil {
			total -= files[i].size
		}
	}
	return nil
}

// testHold, when not nil, holds a Recorder's writer back until it is
// closed: a disk too slow for the log, in tests.
var testHold chan struct{}

// sessionDir holds the sessions' files while they run.
const sessionDir = ".sessions"

// maxDrvs bounds the derivations one session keeps logs of; the logs of
// more are not kept.
const maxDrvs = 1024

// queued is how many pieces of log a Recorder holds for its writer;
// past that, pieces are dropped (and the log says so), never waited for.
const queued = 1024

// Recorder collects one session's build logs into a file of its own,
// then, at Close, writes each derivation's log. A nil *Recorder records
// nothing.
type Recorder struct {
	s   *Store
	key string

	mu      sync.Mutex
	total   uint64    // bytes accepted, of all its derivations
	drvs    []*drvLog // in the order first seen
	byName  map[string]*drvLog
	closed  bool
	pieces  chan piece
	written chan struct{}

	file *os.File
	err  error // the session file's, once writing it failed
}

type drvLog struct {
	drv       string
	size      uint64 // bytes accepted
	truncated bool   // more was sent than MaxLogSize, or the session's MaxTotal
	bySession bool   // truncated by the session's MaxTotal
	lost      uint64 // bytes dropped because the writer was behind
	spans     []span // where its bytes are in the session file
}

type span struct{ off, n int64 }

type piece struct {
	d *drvLog
	b []byte
}

// Recorder starts the log recording of a session of key; it fails when
// the directory cannot be used, and the session then goes on with no
// log kept.
func (s *Store) Recorder(key string) (*Recorder, error) {
	dir := filepath.Join(s.dir, sessionDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, policy.Errorf("buildlog", "%w", err)
	}
	var name [8]byte
	rand.Read(name[:])
	f, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(name[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, policy.Errorf("buildlog", "%w", err)
	}
	r := &Recorder{s: s, key: key, byName: map[string]*drvLog{}, pieces: make(chan piece, queued), written: make(chan struct{}), file: f}
	go r.write()
	return r, nil
}

// Add adds p to drv's log, as the client was sent it. It copies p and
// never blocks: what the writer cannot take at once is left out, and
// the log says how much.
func (r *Recorder) Add(drv string, p []byte) {
	if r == nil || len(p) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	d := r.byName[drv]
	if d == nil {
		if len(r.drvs) >= maxDrvs || !ValidDrv(drv) {
			return
		}
		d = &drvLog{drv: drv}
		r.drvs = append(r.drvs, d)
		r.byName[drv] = d
	}
	// One log holds at most MaxLogSize, and one session's file at most
	// MaxTotal: a session building a thousand chatty derivations
	// cannot fill the disk before its logs are pruned.
	room := r.s.cfg.MaxLogSize - min(d.size, r.s.cfg.MaxLogSize)
	bySession := false
	if left := r.s.cfg.MaxTotal - min(r.total, r.s.cfg.MaxTotal); r.s.cfg.MaxTotal > 0 && left < room {
		room, bySession = left, true
	}
	if uint64(len(p)) > room {
		p = p[:room]
		if !d.truncated {
			d.truncated, d.bySession = true, bySession
		}
	}
	if len(p) == 0 {
		return
	}
	select {
	case r.pieces <- piece{d, slices.Clone(p)}:
		d.size += uint64(len(p))
		r.total += uint64(len(p))
	default:
		d.lost += uint64(len(p))
	}
}

// write appends the pieces to the session file, noting where each
// derivation's bytes went; consecutive pieces of one derivation make one
// span.
func (r *Recorder) write() {
	defer close(r.written)
	if testHold != nil {
		<-testHold
	}
	w := bufio.NewWriterSize(r.file, 64<<10)
	var off int64
	for p := range r.pieces {
		if r.err != nil {
			continue
		}
		if _, err := w.Write(p.b); err != nil {
			r.err = err
			continue
		}
		r.mu.Lock()
		if n := len(p.d.spans); n > 0 && p.d.spans[n-1].off+p.d.spans[n-1].n == off {
			p.d.spans[n-1].n += int64(len(p.b))
		} else {
			p.d.spans = append(p.d.spans, span{off, int64(len(p.b))})
		}
		r.mu.Unlock()
		off += int64(len(p.b))
	}
	if err := w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
}

// Close ends the recording and writes each derivation's log, replacing
// the one kept before for the key; it returns the derivations whose
// logs were kept. It then prunes the store.
func (r *Recorder) Close() ([]string, error) {
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil
	}
	r.closed = true
	close(r.pieces)
	r.mu.Unlock()
	<-r.written
	defer func() {
		r.file.Close()
		os.Remove(r.file.Name())
	}()
	if r.err != nil {
		return nil, policy.Errorf("buildlog", "%w", r.err)
	}
	if len(r.drvs) == 0 {
		return nil, nil
	}
	dir := r.s.keyDir(r.key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, policy.Errorf("buildlog", "%w", err)
	}
	var kept []string
	var errs []error
	for _, d := range r.drvs {
		if err := r.keep(dir, d); err != nil {
			errs = append(errs, err)
			continue
		}
		kept = append(kept, d.drv)
	}
	if err := r.s.Prune(); err != nil {
		errs = append(errs, err)
	}
	return kept, errors.Join(errs...)
}

// keep writes d's log into dir, atomically.
func (r *Recorder) keep(dir string, d *drvLog) error {
	tmp, err := os.CreateTemp(dir, ".new-")
	if err != nil {
		return policy.Errorf("buildlog", "%w", err)
	}
	defer os.Remove(tmp.Name())
	z, _ := gzip.NewWriterLevel(tmp, gzip.BestSpeed)
	z.Name = filepath.Base(d.drv) + ".log"
	for _, sp := range d.spans {
		if _, err := io.Copy(z, io.NewSectionReader(r.file, sp.off, sp.n)); err != nil {
			tmp.Close()
			return policy.Errorf("buildlog", "%w", err)
		}
	}
	if d.lost > 0 {
		fmt.Fprintf(z, "\n[nixgate: %d bytes of this log are not kept: the disk was too slow for them]\n", d.lost)
	}
	if d.truncated && d.bySession {
		fmt.Fprintf(z, "\n[nixgate: the rest of this log is not kept: this session's logs reached [build_logs] max_total, %d bytes]\n", r.s.cfg.MaxTotal)
	} else if d.truncated {
		fmt.Fprintf(z, "\n[nixgate: the rest of this log is not kept: [build_logs] max_log_size is %d bytes]\n", r.s.cfg.MaxLogSize)
	}
	if err := z.Close(); err != nil {
		tmp.Close()
		return policy.Errorf("buildlog", "%w", err)
	}
	if err := tmp.Close(); err != nil {
		return policy.Errorf("buildlog", "%w", err)
	}
	if err := os.Rename(tmp.Name(), r.s.path(r.key, d.drv)); err != nil {
		return policy.Errorf("buildlog", "%w", err)
	}
	return nil
}

// DirName is the directory in state_dir that holds the logs.
const DirName = "build-logs"

// ForConfig returns the Store of cfg, state_dir/build-logs; nil when
// [build_logs] keep = false.
func ForConfig(cfg *policy.Config) *Store {
	if cfg.BuildLogs.Off {
		return nil
	}
	return New(filepath.Join(cfg.Serve.StateDir, DirName), cfg.BuildLogs)
}

// Start starts keeping the build logs of a session of key under cfg;
// nil when they are not kept, or cannot be (log says why).
func Start(cfg *policy.Config, key string, log *slog.Logger) *Recorder {
	store := ForConfig(cfg)
	if store == nil {
		return nil
	}
	rec, err := store.Recorder(key)
	if err != nil {
		log.Warn("build logs not kept", "error", err.Error())
		return nil
	}
	return rec
}

// Func returns r's Add for nixproto.Options.BuildLog: nil for a nil r.
func (r *Recorder) Func() func(drv string, p []byte) {
	if r == nil {
		return nil
	}
	return r.Add
}

// End closes r and returns what a session's record says of its logs:
// the derivations whose logs were kept ("build_logs"), and why some
// were not ("build_logs_error"). Nothing for a nil r.
func (r *Recorder) End() []any {
	if r == nil {
		return nil
	}
	kept, err := r.Close()
	var attrs []any
	if len(kept) > 0 {
		attrs = append(attrs, "build_logs", kept)
	}
	if err != nil {
		attrs = append(attrs, "build_logs_error", err.Error())
	}
	return attrs
}

// days writes d in days when it is whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// Show writes the log of drv kept for key under cfg to w, uncompressed.
// The error, when there is no such log, says so in a line for the
// client.
func Show(cfg *policy.Config, key, drv string, w io.Writer) error {
	store := ForConfig(cfg)
	if store == nil {
		return policy.Errorf("buildlog", "this builder keeps no build logs ([build_logs] keep = false)")
	}
	r, _, err := store.Open(key, drv)
	if errors.Is(err, ErrNoLog) {
		return policy.Errorf("buildlog", "no build log of %s is kept for key %q (a log is kept for the key that built the derivation here, for %s)", drv, key, days(cfg.BuildLogs.Retention))
	}
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return policy.Errorf("buildlog", "%s: %w", drv, err)
	}
	return nil
}
