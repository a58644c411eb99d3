package check

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

func TestAccessFromModeBits(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	owner, group := os.Getuid(), os.Getgid()
	if owner == 0 {
		// root may write anything: give the file to an ordinary owner
		// and group, so that the owner's bits are the ones tested.
		owner, group = 4242, 4343
		if err := os.Chown(p, owner, group); err != nil {
			t.Fatal(err)
		}
	}
	other := owner + 1000
	tests := []struct {
		name string
		a    account
		want uint32
		ok   bool
	}{
		{"owner may write", account{uid: owner, gid: group + 1}, 2, true},
		{"owner may not execute", account{uid: owner, gid: group + 1}, 1, false},
		{"others may not write", account{uid: other, gid: group + 1}, 2, false},
		{"group may read", account{uid: other, gid: group}, 4, true},
		{"group may not write", account{uid: other, gid: group}, 2, false},
		{"supplementary group may read", account{uid: other, gid: group + 1, groups: []int{group}}, 4, true},
		{"others may not read", account{uid: other, gid: group + 1}, 4, false},
		{"root may write anything", account{uid: 0}, 2, true},
	}
	for _, tt := range tests {
		got, err := tt.a.access(p, tt.want)
		if err != nil || got != tt.ok {
			t.Errorf("%s: access = %v, %v; want %v", tt.name, got, err, tt.ok)
		}
	}
}

func TestFailed(t *testing.T) {
	if Failed([]Result{{Status: OK}, {Status: Warn}}) {
		t.Error("warnings counted as failure")
	}
	if !Failed([]Result{{Status: OK}, {Status: Fail}}) {
		t.Error("a failure was not counted")
	}
}

func TestCheckDrain(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = t.TempDir()
	if rs := checkDrain(cfg); len(rs) != 0 {
		t.Errorf("checkDrain(not draining) = %+v; want nothing", rs)
	}
	if err := admission.SetDrain(cfg.Serve.StateDir, "disk swap"); err != nil {
		t.Fatal(err)
	}
	rs := checkDrain(cfg)
	if len(rs) != 1 || rs[0].Status != Warn || rs[0].Fix != "nixgate drain --off" || !strings.Contains(rs[0].Message, `"nixgate: builder draining: disk swap"`) {
		t.Errorf("checkDrain(draining) = %+v; want one warning with the fix nixgate drain --off", rs)
	}
}

func TestCheckDrainReadable(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = filepath.Join(t.TempDir(), "state")
	a := &account{name: "nixremote", uid: 4242, gid: 4242}
	if rs := checkDrainReadable(cfg, a); len(rs) != 0 {
		t.Errorf("no state_dir: %+v; want nothing", rs)
	}
	os.Mkdir(cfg.Serve.StateDir, 0o700)
	if rs := checkDrainReadable(cfg, a); len(rs) != 1 || rs[0].Status != Fail {
		t.Errorf("state_dir 0700 of another account: %+v; want a failure", rs)
	}
	os.Chmod(cfg.Serve.StateDir, 0o755)
	admission.SetDrain(cfg.Serve.StateDir, "")
	if rs := checkDrainReadable(cfg, a); len(rs) != 0 {
		t.Errorf("readable drain file: %+v; want nothing", rs)
	}
	os.Chmod(admission.DrainPath(cfg.Serve.StateDir), 0o600)
	if rs := checkDrainReadable(cfg, a); len(rs) != 1 || rs[0].Fix != "chmod 644 "+admission.DrainPath(cfg.Serve.StateDir) {
		t.Errorf("drain file 0600: %+v; want a failure with chmod 644", rs)
	}
}

func TestCheckHealth(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	os.MkdirAll(store, 0o755)
	cfg := &policy.Config{Nix: policy.NixConfig{Store: "local?root=" + root}}
	owner := &account{name: "me", uid: os.Getuid(), gid: os.Getgid()}
	if rs := checkHealth(cfg, owner, Serve); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, "writable by me") {
		t.Errorf("checkHealth(writable) = %+v; want ok", rs)
	}
	other := &account{name: "other", uid: 4242, gid: 4242}
	rs := checkHealth(cfg, other, Serve)
	if len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Message, `"nixgate: builder unhealthy: store `+store+` is not writable`) || rs[0].Fix != "chown other "+store {
		t.Errorf("checkHealth(not writable by the account) = %+v; want a failure with the line and chown", rs)
	}
	cfg.Admission.MinFree = 1 << 62
	if rs := checkHealth(cfg, owner, Serve); len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Fix, "min_free") {
		t.Errorf("checkHealth(below min_free) = %+v; want a failure", rs)
	}
	// A store that does not exist yet: serve makes it, owned by the
	// account, so its writability is not judged by the directory it
	// would be made in; exec mode makes none, so Nix, as the account,
	// must be able to.
	cfg.Admission.MinFree = 0
	missing := filepath.Join(t.TempDir(), "not-yet")
	os.Chmod(filepath.Dir(missing), 0o755)
	cfg.Nix.Store = "local?root=" + missing
	if rs := checkHealth(cfg, other, Serve); len(rs) != 1 || rs[0].Status != OK || strings.Contains(rs[0].Message, "writable") {
		t.Errorf("checkHealth(serve, store missing) = %+v; want ok, writability not judged", rs)
	}
	if os.Getuid() == 0 {
		if rs := checkHealth(cfg, other, Exec); len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Message, "not writable") {
			t.Errorf("checkHealth(exec, store missing in a directory the account cannot write) = %+v; want a failure", rs)
		}
	}
	cfg.Nix.Store = "ssh://elsewhere"
	if rs := checkHealth(cfg, owner, Serve); len(rs) != 0 {
		t.Errorf("checkHealth(a store it cannot check) = %+v; want nothing", rs)
	}
}

// TestCheckUsageWritable: exec mode's state_dir is root's, with the
// account's usage.db in it (execStateDir): missing, it is a warning whose
// fix lays it out; a usage.db the account can write is ok; one it cannot
// make or write is a warning with the fix for that file alone.
func TestCheckUsageWritable(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = filepath.Join(t.TempDir(), "state")
	a := &account{name: "nixremote", uid: 4242, gid: 4242}
	layout := "install -d -m 755 " + cfg.Serve.StateDir + " && install -d -o nixremote -m 700 " + cfg.Serve.StateDir + "/run " + cfg.Serve.StateDir + "/build-logs && touch " + cfg.Serve.StateDir + "/usage.db && chown nixremote " + cfg.Serve.StateDir + "/usage.db && chmod 600 " + cfg.Serve.StateDir + "/usage.db"
	if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != Warn || !strings.Contains(rs[0].Message, "does not exist") || rs[0].Fix != layout {
		t.Errorf("no state_dir: %+v; want a warning fixed by %q", rs, layout)
	}
	os.Mkdir(cfg.Serve.StateDir, 0o755)
	db := filepath.Join(cfg.Serve.StateDir, "usage.db")
	if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != Warn || rs[0].Fix != "touch "+db+" && chown nixremote "+db+" && chmod 600 "+db {
		t.Errorf("state_dir of another account, no usage.db: %+v; want a warning with install of usage.db", rs)
	}
	os.WriteFile(db, nil, 0o600)
	if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != Warn || rs[0].Fix != "chown nixremote "+db+" && chmod 600 "+db {
		t.Errorf("usage.db of another account: %+v; want a warning with chown", rs)
	}
	if os.Getuid() == 0 {
		os.Chown(db, a.uid, a.gid)
		if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, "counted in "+db) {
			t.Errorf("usage.db of the account: %+v; want ok", rs)
		}
		os.Remove(db)
		os.Chown(cfg.Serve.StateDir, a.uid, a.gid)
		if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, "makes on first use") {
			t.Errorf("state_dir of the account: %+v; want ok", rs)
		}
	}
}

// TestCheckHome: the home is checked in every sandbox mode, with exec
// mode's own check; a problem fails where exec mode refuses sessions for
// it, and is a warning where the sandbox mounts the home read-only (it
// is never reported OK unchecked).
func TestCheckHome(t *testing.T) {
	home := t.TempDir() // writable by this process, as root or not
	a := &account{name: "me", home: home, uid: os.Geteuid(), gid: os.Getegid()}
	cfg := &policy.Config{}
	for mode, want := range map[policy.SandboxMode]Status{policy.SandboxDirect: Fail, policy.SandboxProot: Fail, policy.SandboxUserNS: Warn, policy.SandboxNixUserChroot: Warn} {
		cfg.Sandbox.Mode = mode
		rs := checkHome(cfg, a)
		if len(rs) == 0 || rs[0].Status != want || !strings.HasPrefix(rs[0].Message, home+" is writable by me") || rs[0].Fix != "chmod -R a-w ~me" {
			t.Errorf("%s: checkHome(writable home) = %+v; want %s for %s", mode, rs, want, home)
		}
	}
	if os.Geteuid() != 0 {
		other := &account{name: "other", home: home, uid: os.Geteuid() + 1, gid: os.Getegid()}
		if rs := checkHome(cfg, other); len(rs) != 1 || rs[0].Status != Warn || !strings.Contains(rs[0].Message, "not checked: run nixgate check as root or as other") {
			t.Errorf("checkHome(another account, not as root) = %+v; want a warning that it is not checked", rs)
		}
	}
}

// TestLookupAccount: the build user is looked up as serve looks it up,
// which refuses uid 0 as exec mode does (sandbox.RefuseRoot).
func TestLookupAccount(t *testing.T) {
	if _, err := lookupAccount("root"); !errors.Is(err, sandbox.ErrRoot) || !strings.Contains(err.Error(), "uid 0") {
		t.Errorf("lookupAccount(root) = %v; want the refusal of uid 0", err)
	}
	if _, err := lookupAccount("no-such-user-nixgate"); err == nil {
		t.Error("lookupAccount(an unknown user) succeeded")
	}
}

func TestCheckHostKeys(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = t.TempDir()
	if rs := checkHostKeys(cfg); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, "generates one") {
		t.Errorf("checkHostKeys(none yet) = %+v; want ok", rs)
	}
	if _, _, err := keys.LoadHostKeys(nil, cfg.Serve.StateDir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(cfg.Serve.StateDir, keys.GeneratedHostKeyName)
	if rs := checkHostKeys(cfg); len(rs) != 1 || rs[0].Status != OK || rs[0].Message != p+" is private (0600)" {
		t.Errorf("checkHostKeys(0600) = %+v; want ok", rs)
	}
	os.Chmod(p, 0o644)
	if rs := checkHostKeys(cfg); len(rs) != 1 || rs[0].Status != Fail || rs[0].Fix != "chmod 600 "+p {
		t.Errorf("checkHostKeys(0644) = %+v; want a failure fixed with chmod 600", rs)
	}
	os.Chmod(p, 0o600)
	os.WriteFile(p, []byte("not a key"), 0o600)
	if rs := checkHostKeys(cfg); len(rs) != 1 || rs[0].Status != Fail {
		t.Errorf("checkHostKeys(not a key) = %+v; want a failure, as serve refuses it", rs)
	}
}

// TestAsAccountBounded: a program check runs as the build account (its
// nix-store, which may come from the account's own profile) cannot keep
// check waiting by leaving a process behind that holds its output open.
func TestAsAccountBounded(t *testing.T) {
	me := &account{name: "me", uid: os.Geteuid(), gid: os.Getegid()}
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := asAccount(me, nil, "/bin/sh", "-c", `sleep 60 & echo $! > "$0"; echo nix-store 2.8`, pidFile)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Errorf("asAccount(a program that leaves a process holding its output) still waiting after 20 s")
	}
}

// TestCheckStoreDir: in the sandbox modes a store_dir that does not
// exist fails, with exec and serve mode's own line and mkdir -p as the
// fix (run as the account); one that exists is ok.
func TestCheckStoreDir(t *testing.T) {
	home := t.TempDir()
	cfg, err := policy.Parse("/etc/n.toml", []byte("user = \"me\"\n[sandbox]\nmode = \"userns\"\nstore_dir = \"~/.nxi\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, ".nxi")
	me := &account{name: "me", home: home, uid: os.Geteuid(), gid: os.Getegid()}
	rs := checkStore(cfg, me)
	want := "/etc/n.toml:4: sandbox.store_dir \"~/.nxi\" is " + dir + ", which does not exist"
	if len(rs) != 1 || rs[0].Status != Fail || !strings.HasPrefix(rs[0].Message, want) || rs[0].Fix != "mkdir -p "+dir {
		t.Errorf("checkStore(store_dir missing) = %+v; want a failure %q… fixed by mkdir -p %s", rs, want, dir)
	}
	other := &account{name: "other", home: home, uid: os.Geteuid() + 1, gid: os.Getegid()}
	if rs := checkStore(cfg, other); len(rs) != 1 || rs[0].Fix != "runuser -u other -- mkdir -p "+dir {
		t.Errorf("checkStore(store_dir missing, run as another account) = %+v; want mkdir -p run as other", rs)
	}
	os.Mkdir(dir, 0o755)
	if rs := checkStore(cfg, me); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, dir) {
		t.Errorf("checkStore(store_dir there) = %+v; want ok", rs)
	}
}

// TestSSHDCertSettings: exec mode's certificate check trusts
// SSH_USER_AUTH only where sshd sets it itself and nobody else may.
func TestSSHDCertSettings(t *testing.T) {
	for _, tc := range []struct {
		settings string
		status   Status
		says     string
	}{
		{"exposeauthinfo yes\npermituserenvironment no\nacceptenv LANG\nacceptenv LC_*\n", OK, "can trust it"},
		{"exposeauthinfo no\npermituserenvironment no\n", Fail, "ExposeAuthInfo is not yes"},
		{"permituserenvironment no\n", Fail, "ExposeAuthInfo is not yes"},
		{"exposeauthinfo yes\nacceptenv LANG SSH_*\n", Fail, `AcceptEnv "SSH_*" lets a client send SSH_USER_AUTH`},
		{"exposeauthinfo yes\nacceptenv *\n", Fail, `AcceptEnv "*"`},
		{"exposeauthinfo yes\npermituserenvironment yes\n", Fail, "PermitUserEnvironment is \"yes\""},
		{"exposeauthinfo yes\npermituserenvironment SSH_USER*\n", Fail, "PermitUserEnvironment"},
		{"exposeauthinfo yes\npermituserenvironment LANG\n", OK, "can trust it"},
	} {
		rs := sshdCertSettings(tc.settings, "/etc/ssh/sshd_config")
		found := false
		for _, r := range rs {
			found = found || r.Status == tc.status && strings.Contains(r.Message, tc.says)
		}
		if !found {
			t.Errorf("%q: %+v; want %s saying %q", tc.settings, rs, tc.status, tc.says)
		}
	}
}
