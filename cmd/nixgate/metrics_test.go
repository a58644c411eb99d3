package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
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
