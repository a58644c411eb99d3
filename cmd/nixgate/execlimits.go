package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

// execLimits enforces across exec mode's processes, one per session,
// what serve mode enforces in its one process: a key's max_sessions,
// and the build slots ([admission] max_builds, the key's max_builds,
// build_queue_timeout, refuse_when_busy). They are kept in admission's
// lock directory (admission.OpenRuntimeDir), opened only for a key that
// has such a limit (admission.NeedsLockDir, which nixgate check asks
// too); when it cannot be used, such a key's sessions are refused rather
// than let through unlimited.
type execLimits struct {
	log *slog.Logger
	dir *admission.LockDir

	mu sync.Mutex
	// depth is the largest build queue a build of this session joined
	// (itself included); 0 when none asked for a slot.
	depth int
}

// errNoLockDir is the client's line when the lock directory cannot be
// used; the log has the detail.
var errNoLockDir = errors.New("the builder cannot count sessions and builds (no usable lock directory; see its log)")

// open opens the lock directory in stateDir (or /tmp), once.
func (l *execLimits) open(stateDir string) error {
	if l.dir != nil {
		return nil
	}
	d, err := admission.OpenRuntimeDir(stateDir)
	if err != nil {
		l.log.Error("max_sessions and max_builds cannot be enforced", "error", err.Error())
		return errNoLockDir
	}
	l.dir = d
	return nil
}

// healthDir returns the function admission.Healthy calls for the lock
// directory that keeps the daemon's health verdicts: the lock directory,
// opened if need be, or nil when it cannot be (then every session checks
// only that the daemon's socket exists; the log says why).
func (l *execLimits) healthDir(stateDir string) func() *admission.LockDir {
	return func() *admission.LockDir {
		if l.dir == nil {
			d, err := admission.OpenRuntimeDir(stateDir)
			if err != nil {
				l.log.Warn("the Nix daemon's health is not checked beyond its socket (no usable lock directory)", "error", err.Error())
				return nil
			}
			l.dir = d
		}
		return l.dir
	}
}

// session counts this session against key's max_sessions until the
// process ends. A key without one is only announced, for nixgate
// status, when the lock directory state_dir/run can be used.
func (l *execLimits) session(key *policy.Key, stateDir string) error {
	if key.MaxSessions <= 0 {
		if l.dir == nil {
			if d, err := admission.OpenLockDir(filepath.Join(stateDir, admission.RuntimeDirName)); err == nil {
				l.dir = d
			}
		}
		if l.dir != nil {
			l.dir.Announce(key.Name)
		}
		return nil
	}
	if l.dir == nil {
		return errNoLockDir
	}
	_, err := l.dir.AcquireSession(key.Name, key.MaxSessions)
	return l.clientError(err)
}

// busy returns session.Request.Busy for [admission] refuse_when_busy
// under cfg; nil when it is off, or when the key does not build.
func (l *execLimits) busy(cfg *policy.Config, key *policy.Key) func() (bool, string) {
	a := cfg.Admission
	if !a.RefuseWhenBusy || a.MaxBuilds <= 0 || key == nil || key.Role != policy.RoleBuild {
		return nil
	}
	return func() (bool, string) {
		if l.dir == nil {
			return true, "builder busy: " + errNoLockDir.Error()
		}
		busy, err := l.dir.Busy(a.MaxBuilds)
		if err != nil {
			return true, "builder busy: " + policy.Line(l.clientError(err))
		}
		if !busy {
			return false, ""
		}
		return true, fmt.Sprintf("builder busy: all %d build slots are taken (max_builds)", a.MaxBuilds)
	}
}

// acquireBuild returns the nixproto.Options.AcquireBuild of a session
// of key under cfg; nil when no build limit applies.
func (l *execLimits) acquireBuild(cfg *policy.Config, key *policy.Key) func(stop <-chan struct{}) (func(), error) {
	if key == nil || key.Role != policy.RoleBuild || cfg.Admission.MaxBuilds <= 0 && key.MaxBuilds <= 0 {
		return nil
	}
	r := admission.SlotRequest{Key: key.Name, Max: cfg.Admission.MaxBuilds, KeyMax: key.MaxBuilds, Timeout: cfg.Admission.BuildQueueTimeout}
	return func(stop <-chan struct{}) (func(), error) {
		if l.dir == nil {
			return nil, errNoLockDir
		}
		release, _, depth, err := l.dir.AcquireBuild(stop, r)
		l.mu.Lock()
		l.depth = max(l.depth, depth)
		l.mu.Unlock()
		if err != nil {
			return nil, l.clientError(err)
		}
		return release, nil
	}
}

// clientError returns err from the lock directory for the client, who
// sees its line (policy.Line) after "nixgate: ": a limit's refusal as it
// is, anything else as errNoLockDir with the detail in the log.
func (l *execLimits) clientError(err error) error {
	var limit *admission.LimitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &limit):
		return err
	}
	l.log.Error("max_sessions and max_builds cannot be enforced", "runtime_dir", l.dir.Path, "error", err.Error())
	return errNoLockDir
}

// logAttrs returns what the session's record says of the build queue:
// the largest queue its builds joined, as serve mode's
// nixgate_build_queue_depth counts it (the wait is the filter's
// slot_wait).
func (l *execLimits) logAttrs() []any {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.depth == 0 {
		return nil
	}
	return []any{"build_queue_depth", l.depth}
}
