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
	mkdir("open", 0o775, 0)
	os.Chown(filepath.Join(dir, "open"), 0, 4242) // the account's group may write it
	mkdir("world", 0o777, 0)
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
		{mk("world/n.toml", 0o644, 0), "world"},
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

	// Where a build runs as the account, or Nix does, unhidden (direct,
	// proot), a configuration or a drain state it can change fails; the userns and nix-user-chroot modes hide
	// them all from Nix and its builds: ok, saying so.
	cfg := &policy.Config{Source: filepath.Join(dir, "open", "n.toml"), AuthorizedKeys: filepath.Join(dir, "etc", "ok.toml")}
	cfg.Serve.StateDir = filepath.Join(dir, "mine")
	for _, tt := range []struct {
		mode          policy.SandboxMode
		config, drain Status
		fix           string
		says          string
	}{
		{policy.SandboxDirect, Fail, Fail, "chmod go-w", "so a build running as builder could"},
		{policy.SandboxProot, Fail, Fail, "chmod go-w", "so a build running as builder could"},
		{policy.SandboxUserNS, OK, OK, "", "but not by a build: sandbox.mode userns hides nixgate's files"},
		{policy.SandboxNixUserChroot, OK, OK, "", "but not by a build: sandbox.mode nix-user-chroot hides nixgate's files"},
	} {
		cfg.Sandbox.Mode = tt.mode
		rs := checkFiles(cfg, a)
		if len(rs) != 3 {
			t.Errorf("%s: checkFiles = %+v; want the configuration, the keys file and the drain state", tt.mode, rs)
			continue
		}
		if rs[0].Status != tt.config || !strings.Contains(rs[0].Message, "configuration "+cfg.Source+" can be changed by builder through "+filepath.Join(dir, "open")) || !strings.Contains(rs[0].Message, tt.says) || !strings.Contains(rs[0].Fix, tt.fix) || (tt.fix == "") != (rs[0].Fix == "") {
			t.Errorf("%s: configuration: %+v; want %s saying %q, fix %q", tt.mode, rs[0], tt.config, tt.says, tt.fix)
		}
		if rs[1].Status != OK || !strings.Contains(rs[1].Message, "cannot be changed") {
			t.Errorf("%s: keys file: %+v; want ok", tt.mode, rs[1])
		}
		if rs[2].Status != tt.drain || !strings.Contains(rs[2].Message, "drain state "+filepath.Join(dir, "mine", "drain")+" can be changed by builder through "+filepath.Join(dir, "mine")) || !strings.Contains(rs[2].Message, tt.says) {
			t.Errorf("%s: drain state: %+v; want %s saying %q", tt.mode, rs[2], tt.drain, tt.says)
		}
	}
	// Wherever the path came from: relative to the working directory
	// (check --config nixgate.toml in /etc/nixgate), through a symbolic
	// link in a directory of root's; and a directory everyone may write
	// fails in every mode, for anyone could.
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	link := filepath.Join(dir, "etc", "link.toml")
	os.Symlink(filepath.Join(dir, "open", "n.toml"), link)
	for _, tt := range []struct {
		source string
		mode   policy.SandboxMode
		status Status
		says   string
	}{
		{"open/n.toml", policy.SandboxDirect, Fail, "configuration " + filepath.Join(dir, "open", "n.toml") + " can be changed by builder"},
		{link, policy.SandboxDirect, Fail, "configuration " + link + " can be changed by builder through " + filepath.Join(dir, "open")},
		{"world/n.toml", policy.SandboxUserNS, Fail, "can be changed by anyone on this machine (" + filepath.Join(dir, "world") + " is writable by everyone)"},
		{filepath.Join(dir, "world", "n.toml"), policy.SandboxDirect, Fail, "can be changed by anyone"},
	} {
		c := &policy.Config{Source: tt.source, AuthorizedKeys: filepath.Join(dir, "etc", "ok.toml")}
		c.Sandbox.Mode = tt.mode
		if rs := checkFiles(c, a); len(rs) == 0 || rs[0].Status != tt.status || !strings.Contains(rs[0].Message, tt.says) {
			t.Errorf("configuration %s (%s): %+v; want %s saying %q", tt.source, tt.mode, rs, tt.status, tt.says)
		}
	}

	// A state_dir of root's, others searching it, as exec mode's is laid
	// out (README): the drain is root's.
	cfg.Sandbox.Mode, cfg.Serve.StateDir = policy.SandboxDirect, filepath.Join(dir, "etc")
	if rs := checkFiles(cfg, a); len(rs) != 3 || rs[2].Status != OK || rs[2].Message != "the drain state "+filepath.Join(dir, "etc", "drain")+" cannot be changed by builder" {
		t.Errorf("state_dir of root's: %+v; want the drain state ok", rs)
	}

	// A CA's key file and revoked file are the keys' equals: the one
	// the account can change fails, the other is ok.
	ca := &policy.Config{Source: filepath.Join(dir, "etc", "ok.toml"), CAs: []policy.CA{{Name: "ci", PublicKey: filepath.Join(dir, "open", "n.toml"), Revoked: filepath.Join(dir, "etc", "ok.toml")}}}
	ca.Sandbox.Mode = policy.SandboxDirect
	rs := checkFiles(ca, a)
	if len(rs) != 3 || rs[1].Status != Fail || !strings.Contains(rs[1].Message, `CA ci's key file `+filepath.Join(dir, "open", "n.toml")+" can be changed by builder") ||
		!strings.Contains(rs[1].Message, "put a CA of its own there") || rs[2].Status != OK || !strings.Contains(rs[2].Message, `CA ci's revoked file`) {
		t.Errorf("a CA's files: %+v; want its key file failed and its revoked file ok", rs)
	}
	// The sandbox modes hide nixgate's own files, not these.
	ca.Sandbox.Mode = policy.SandboxUserNS
	if rs := checkFiles(ca, a); len(rs) != 3 || rs[1].Status != Fail {
		t.Errorf("a CA's key file in userns mode: %+v; want it failed", rs)
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

// TestSecretKeysUnreadable: Nix running as the account (a store of its
// own) that the machine's nix.conf gives a root-only secret key fails
// every build it signs; check fails it with the fix. With the daemon's
// store the daemon signs, as root: nothing to say.
func TestSecretKeysUnreadable(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	key := filepath.Join(dir, "cache-priv-key.pem")
	os.WriteFile(key, []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("secret-key-files = "+key+"\n"), 0o644)
	t.Setenv("NIX_CONF_DIR", dir)
	a := &account{name: "builder", uid: 4242, gid: 4242, home: dir}
	cfg := &policy.Config{}
	cfg.Nix.Store = "local?root=" + filepath.Join(dir, "store")
	rs := checkSecretKeys(cfg, a)
	if len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Message, "secret key "+key) || !strings.Contains(rs[0].Fix, `NIX_CONFIG = "secret-key-files ="`) {
		t.Errorf("a root-only key for the account's Nix: %+v; want a failure with the fix", rs)
	}
	os.Chmod(key, 0o644)
	if rs := checkSecretKeys(cfg, a); len(rs) != 0 {
		t.Errorf("a key the account can read: %+v; want nothing", rs)
	}
	os.Chmod(key, 0o600)
	cfg.Nix.Store = "daemon"
	if rs := checkSecretKeys(cfg, a); len(rs) != 0 {
		t.Errorf("the daemon's store: %+v; want nothing", rs)
	}
}

// TestDemoFiles: trying nixgate out (make run, the embedded default,
// as a user), the demo's own files are a warning that says where a
// builder's go, not a failure whose fix needs root; what anyone can
// change stays a failure.
func TestDemoFiles(t *testing.T) {
	rs := demoFiles([]Result{
		{"files", Fail, "the keys file /x can be changed by u, so a build running as u could rewrite the keys and their roles", "chown root: /x"},
		{"files", Fail, "the configuration /y " + anyoneCan + " on this machine", "chmod o-w /y"},
		{"files", OK, "fine", ""},
	})
	if rs[0].Status != Warn || !strings.Contains(rs[0].Fix, "make run") || strings.Contains(rs[0].Fix, "chown") {
		t.Errorf("the demo's own keys file: %+v", rs[0])
	}
	if rs[1].Status != Fail || rs[2].Status != OK {
		t.Errorf("what anyone can change, and what is fine: %+v", rs[1:])
	}
}
