package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

func TestExecLimitsWhatApplies(t *testing.T) {
	build := &policy.Key{Name: "ci", Role: policy.RoleBuild}
	tests := []struct {
		name                    string
		maxBuilds               int
		busy                    bool
		key                     *policy.Key
		lockDir, hook, acquires bool
	}{
		{"no key", 4, true, nil, false, false, false},
		{"no limit", 0, false, build, false, false, false},
		{"max_sessions", 0, false, &policy.Key{Name: "ci", Role: policy.RoleSubstitute, MaxSessions: 1}, true, false, false},
		{"max_builds", 4, false, build, true, false, true},
		{"max_builds, refuse_when_busy", 4, true, build, true, true, true},
		{"refuse_when_busy without max_builds", 0, true, build, false, false, false},
		{"key max_builds", 0, true, &policy.Key{Name: "ci", Role: policy.RoleBuild, MaxBuilds: 1}, true, false, true},
		{"a substitute key does not build", 4, true, &policy.Key{Name: "ci", Role: policy.RoleSubstitute, MaxBuilds: 1}, false, false, false},
	}
	for _, tt := range tests {
		cfg := &policy.Config{Admission: policy.AdmissionConfig{MaxBuilds: tt.maxBuilds, RefuseWhenBusy: tt.busy}}
		l := &execLimits{log: slog.New(slog.DiscardHandler)}
		if got := admission.NeedsLockDir(cfg, tt.key); got != tt.lockDir {
			t.Errorf("%s: admission.NeedsLockDir = %v; want %v", tt.name, got, tt.lockDir)
		}
		if got := l.busy(cfg, tt.key) != nil; got != tt.hook {
			t.Errorf("%s: busy hook set = %v; want %v", tt.name, got, tt.hook)
		}
		if got := l.acquireBuild(cfg, tt.key) != nil; got != tt.acquires {
			t.Errorf("%s: acquireBuild set = %v; want %v", tt.name, got, tt.acquires)
		}
	}
}

// TestExecLimitsFailClosed: without a usable lock directory, a session
// with limits is refused, never let through unlimited.
func TestExecLimitsFailClosed(t *testing.T) {
	cfg := &policy.Config{Admission: policy.AdmissionConfig{MaxBuilds: 1, RefuseWhenBusy: true, BuildQueueTimeout: time.Second}}
	key := &policy.Key{Name: "ci", Role: policy.RoleBuild, MaxSessions: 1}
	l := &execLimits{log: slog.New(slog.DiscardHandler)}
	if err := l.session(key, t.TempDir()); !errors.Is(err, errNoLockDir) {
		t.Errorf("session without a lock directory: %v; want %v", err, errNoLockDir)
	}
	if busy, msg := l.busy(cfg, key)(); !busy || msg != "builder busy: "+errNoLockDir.Error() {
		t.Errorf("busy without a lock directory = %v, %q; want true and the reason", busy, msg)
	}
	if _, err := l.acquireBuild(cfg, key)(nil); !errors.Is(err, errNoLockDir) {
		t.Errorf("acquireBuild without a lock directory: %v; want %v", err, errNoLockDir)
	}

	// A directory that stops working (removed under it): refused with
	// the same line, the detail in the log.
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := admission.OpenLockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l.dir = d
	if err := l.session(key, ""); err != nil {
		t.Fatal(err)
	}
	if err := l.session(key, ""); err == nil || policy.Line(err) != `key "ci" already has 1 sessions running (max_sessions)` {
		t.Errorf("a second session: %v; want the max_sessions line", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquireBuild(cfg, key)(nil); !errors.Is(err, errNoLockDir) {
		t.Errorf("acquireBuild in a removed directory: %v; want %v", err, errNoLockDir)
	}
}
