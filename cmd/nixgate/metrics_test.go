package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestMetricsUnixSocket: a unix: metrics address is a socket only its
// owner may use (mode 0600), made anew over a stale socket of an earlier
// start, never over another file.
func TestMetricsUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "metrics.sock")
	for range 2 { // the second time over the first's stale socket
		l, err := metricsListener("unix:" + path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("%s: %v, %v; want a socket of mode 0600", path, fi.Mode(), err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	if _, err := metricsListener("unix:" + file); err == nil {
		t.Error("a metrics socket over a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("the file was replaced")
	}
}

// TestConnectHint: serve's "ready … try:" line for a real configuration
// names the -i a pasted command needs (the person's key, which serve
// cannot know, as KEY, and where it must be one of), and, when the
// known_hosts it names is in a state_dir others cannot read, how a
// client gets its lines.
func TestConnectHint(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := &policy.Config{User: "nixremote", Source: "/etc/nixgate/nixgate.toml"}
	cfg.Serve.StateDir = dir
	hint := connectHint(cfg, []net.Listener{l}, "")
	for _, want := range []string{"-i KEY -o IdentitiesOnly=yes", "KEY the private half of a key in /etc/nixgate/nixgate.toml",
		"-o UserKnownHostsFile=" + filepath.Join(dir, "known_hosts"), "root's to read here", "nixgate client-config"} {
		if !strings.Contains(hint, want) {
			t.Errorf("the hint lacks %q:\n%s", want, hint)
		}
	}
	// The embedded default's own key is named, and a readable state_dir
	// needs no word.
	os.Chmod(dir, 0o755)
	hint = connectHint(cfg, []net.Listener{l}, "/root/.local/share/nixgate/client_ed25519")
	if !strings.Contains(hint, "-i /root/.local/share/nixgate/client_ed25519") || strings.Contains(hint, "KEY") || strings.Contains(hint, "root's to read") {
		t.Errorf("the embedded default's hint:\n%s", hint)
	}
}

// TestConfigFix: check's fix for a configuration that does not load
// names the file and line at fault (the keys file's, when the error is
// there), and for a file check may not read, how to read it.
func TestConfigFix(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("policy: /etc/nixgate/authorized_keys:3: bad key"), "edit /etc/nixgate/authorized_keys, line 3"},
		{errors.New("policy: /etc/nixgate/nixgate.toml:14: keys[0].role: unknown role"), "edit /etc/nixgate/nixgate.toml, line 14"},
		{fmt.Errorf("policy: %w", fs.ErrPermission), "run nixgate check as root"},
		{errors.New("policy: no user"), "edit /etc/nixgate/nixgate.toml"},
	} {
		if got := configFix(tc.err, "/etc/nixgate/nixgate.toml"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("configFix(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}
