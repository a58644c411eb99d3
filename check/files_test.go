package check

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestConfigWritableByAccount: nothing checked that the build account
// cannot change nixgate's configuration or keys file, which a build
// running as the account could then rewrite.
func TestConfigWritableByAccount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another uid")
	}
	a := &account{name: "builder", uid: 4242, gid: 4242}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	mk := func(rel string, mode os.FileMode, uid int) string {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chown(p, uid, uid)
		return p
	}
	mkdir := func(rel string, mode os.FileMode, uid int) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(p, 0o755)
		os.Chmod(p, mode)
		os.Chown(p, uid, uid)
	}
	mkdir("sticky", os.ModeSticky|0o777, 0)
	mkdir("open", 0o777, 0)
	mkdir("mine", 0o555, 4242)
	tests := []struct {
		path, via string
	}{
		{mk("etc/ok.toml", 0o644, 0), ""},
		{mk("etc/world.toml", 0o666, 0), "etc/world.toml"},
		{mk("etc/owned.toml", 0o444, 4242), "etc/owned.toml"},
		{mk("open/n.toml", 0o644, 0), "open"},
		{mk("sticky/n.toml", 0o644, 0), ""},
		{mk("sticky/own.toml", 0o444, 4242), "sticky/own.toml"},
		{mk("mine/n.toml", 0o644, 0), "mine"},
		{filepath.Join(dir, "etc", "missing"), ""},
		{filepath.Join(dir, "open", "missing"), "open"},
	}
	for _, tt := range tests {
		want := ""
		if tt.via != "" {
			want = filepath.Join(dir, tt.via)
		}
		if got := a.canChange(tt.path); got != want {
			t.Errorf("canChange(%s) = %q; want %q", strings.TrimPrefix(tt.path, dir), got, want)
		}
	}

	cfg := &policy.Config{Source: filepath.Join(dir, "open", "n.toml"), AuthorizedKeys: filepath.Join(dir, "etc", "ok.toml")}
	for mode, want := range map[policy.SandboxMode]Status{policy.SandboxDirect: Fail, policy.SandboxProot: Fail, policy.SandboxUserNS: Warn, policy.SandboxNixUserChroot: Warn} {
		cfg.Sandbox.Mode = mode
		rs := checkFiles(cfg, a)
		if len(rs) != 2 || rs[0].Status != want || !strings.Contains(rs[0].Message, "configuration "+cfg.Source+" can be changed by builder through "+filepath.Join(dir, "open")) || !strings.Contains(rs[0].Fix, "chmod go-w") || rs[1].Status != OK {
			t.Errorf("%s: checkFiles = %+v; want %s for the configuration, ok for the keys file", mode, rs, want)
		}
	}

	// Exec mode's log: the account can always change a file it writes;
	// the system log is a socket that may be missing.
	sock := filepath.Join(dir, "log.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	noSyslog := []string{filepath.Join(dir, "no-log")}
	withSyslog := append(noSyslog, sock)
	for _, tt := range []struct {
		file    string
		sockets []string
		status  Status
		message string
	}{
		{filepath.Join(dir, "etc", "owned.toml"), withSyslog, Warn, "forge"},
		{filepath.Join(dir, "etc", "owned.toml"), noSyslog, Warn, "no system log to hold them too"},
		{filepath.Join(dir, "etc", "ok.toml"), withSyslog, Warn, "go to the system log instead"},
		{filepath.Join(dir, "etc", "ok.toml"), noSyslog, Warn, "records are dropped"},
		{"", withSyslog, OK, "system log (" + sock + ")"},
		{"", noSyslog, Warn, "records are dropped"},
	} {
		cfg.Log.File = tt.file
		if rs := checkExecLog(cfg, a, tt.sockets); len(rs) != 1 || rs[0].Status != tt.status || !strings.Contains(rs[0].Message, tt.message) {
			t.Errorf("checkExecLog(file %q, sockets %q) = %+v; want %s with %q", tt.file, tt.sockets, rs, tt.status, tt.message)
		}
	}
}
