package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

// TestCheckLockDir: check opens exec mode's lock directory as exec mode
// does, for the keys with max_sessions or max_builds, and fails where
// exec mode would refuse their sessions. The account is this process's
// user, so the check runs here (the other path, nixgate run as the
// account, is e2e's TestCheckExecMode).
func TestCheckLockDir(t *testing.T) {
	me := &account{name: "me", uid: os.Geteuid(), gid: os.Getegid()}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(state, "run")
	cfg := &policy.Config{Keys: []policy.Key{{Name: "ci", Role: policy.RoleBuild}, {Name: "sub", Role: policy.RoleSubstitute, MaxBuilds: 2}}}
	cfg.Serve.StateDir = state

	rs := checkLockDir(cfg, me)
	if len(rs) != 1 || rs[0].Status != OK || !strings.HasPrefix(rs[0].Message, "not needed") {
		t.Errorf("checkLockDir(no limits) = %+v; want ok, not needed", rs)
	}
	if _, err := os.Lstat(run); err == nil {
		t.Errorf("%s made though no key needs it", run)
	}

	cfg.Keys[0].MaxSessions = 1
	rs = checkLockDir(cfg, me)
	if len(rs) != 1 || rs[0].Status != OK || !strings.HasPrefix(rs[0].Message, run+": ") || !strings.Contains(rs[0].Message, "keys ci ") {
		t.Errorf("checkLockDir(max_sessions) = %+v; want ok, %s, for key ci only", rs, run)
	}
	if fi, err := os.Lstat(run); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want the directory exec mode makes (0700)", run, fi, err)
	}

	cfg.Keys[0].MaxSessions = 0
	cfg.Admission.MaxBuilds = 1
	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	rs = checkLockDir(cfg, me)
	if len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Message, "may be written by others") || !strings.Contains(rs[0].Message, "refuses every session of keys ci") || rs[0].Fix != "install -d -o me -m 0700 "+run {
		t.Errorf("checkLockDir([admission] max_builds, %s writable by all) = %+v; want a failure fixed with install -d", run, rs)
	}

	if os.Geteuid() != 0 {
		other := &account{name: "other", uid: os.Geteuid() + 1, gid: os.Getegid()}
		if rs := checkLockDir(cfg, other); len(rs) != 1 || rs[0].Status != Warn || !strings.Contains(rs[0].Message, "not checked") {
			t.Errorf("checkLockDir(another account, not as root) = %+v; want a warning that it is not checked", rs)
		}
	}
}

// TestLockDirResult: the lock directory in state_dir is ok; the fallback
// in /tmp, whose name any other account may take first (and so stop
// exec mode's limited sessions), is a warning whose fix makes the one in
// state_dir; none usable fails.
func TestLockDirResult(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = "/var/lib/nixgate"
	fix := "install -d -o nixremote -m 0700 /var/lib/nixgate/run"
	for _, tc := range []struct {
		name    string
		r       admission.RuntimeDirReport
		status  Status
		message string
		fix     string
	}{
		{"state_dir/run", admission.RuntimeDirReport{Path: "/var/lib/nixgate/run"}, OK, "/var/lib/nixgate/run: exec mode keeps", ""},
		{"/tmp", admission.RuntimeDirReport{Path: "/tmp/nixgate-1001"}, Warn, "/tmp/nixgate-1001: exec mode keeps the session and build-slot counts of keys ci in a shared /tmp, where any other account", fix},
		{"none", admission.RuntimeDirReport{Error: "lock directory /tmp/nixgate-1001 belongs to uid 1002"}, Fail, "no lock directory nixremote can use: lock directory /tmp/nixgate-1001 belongs to uid 1002", fix},
	} {
		r := lockDirResult(cfg, "nixremote", "ci", tc.r)
		if r.Status != tc.status || !strings.HasPrefix(r.Message, tc.message) || r.Fix != tc.fix {
			t.Errorf("%s: %+v; want %s, %q…, fix %q", tc.name, r, tc.status, tc.message, tc.fix)
		}
	}
}
