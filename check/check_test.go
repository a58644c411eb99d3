package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

func TestAccessFromModeBits(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, nil, 0o640)
	uid, gid := os.Getuid(), os.Getgid()
	tests := []struct {
		name string
		a    account
		want uint32
		ok   bool
	}{
		{"owner may write", account{uid: uid + 1000, gid: 1}, 2, false},
		{"group may read", account{uid: 4242, gid: gid}, 4, true},
		{"group may not write", account{uid: 4242, gid: gid}, 2, false},
		{"supplementary group may read", account{uid: 4242, gid: 1, groups: []int{gid}}, 4, true},
		{"others may not read", account{uid: 4242, gid: 4242}, 4, false},
	}
	if uid == 0 {
		// As root the file is root's: the owner case is root's own.
		tests = append(tests, struct {
			name string
			a    account
			want uint32
			ok   bool
		}{"root may write anything", account{uid: 0}, 2, true})
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
	if rs := checkHealth(cfg, owner); len(rs) != 1 || rs[0].Status != OK || !strings.Contains(rs[0].Message, "writable by me") {
		t.Errorf("checkHealth(writable) = %+v; want ok", rs)
	}
	other := &account{name: "other", uid: 4242, gid: 4242}
	rs := checkHealth(cfg, other)
	if len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Message, `"nixgate: builder unhealthy: store `+store+` is not writable`) || rs[0].Fix != "chown other "+store {
		t.Errorf("checkHealth(not writable by the account) = %+v; want a failure with the line and chown", rs)
	}
	cfg.Admission.MinFree = 1 << 62
	if rs := checkHealth(cfg, owner); len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Fix, "min_free") {
		t.Errorf("checkHealth(below min_free) = %+v; want a failure", rs)
	}
	cfg.Nix.Store = "ssh://elsewhere"
	if rs := checkHealth(cfg, owner); len(rs) != 0 {
		t.Errorf("checkHealth(a store it cannot check) = %+v; want nothing", rs)
	}
}

func TestCheckUsageWritable(t *testing.T) {
	cfg := &policy.Config{}
	cfg.Serve.StateDir = filepath.Join(t.TempDir(), "state")
	a := &account{name: "nixremote", uid: 4242, gid: 4242}
	if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Status != Warn {
		t.Errorf("no state_dir: %+v; want a warning", rs)
	}
	os.Mkdir(cfg.Serve.StateDir, 0o755)
	if rs := checkUsageWritable(cfg, a); len(rs) != 1 || rs[0].Fix != "chown nixremote "+cfg.Serve.StateDir {
		t.Errorf("state_dir of another account: %+v; want a warning with chown", rs)
	}
	os.Chown(cfg.Serve.StateDir, a.uid, a.gid)
	if os.Getuid() == 0 {
		if rs := checkUsageWritable(cfg, a); len(rs) != 0 {
			t.Errorf("state_dir of the account: %+v; want nothing", rs)
		}
	}
}
