package e2e

// Harness: a builder's nixgate serve, started (as root or as the
// account), signalled and waited for, and what it shows of itself: its
// Prometheus metrics, goroutines, descriptors and health.

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// startServe starts `nixgate serve` as root on 127.0.0.1 with the
// builder's configuration; it is stopped, by PID, when the test ends. It
// returns the host key nixgate generated.
func (b *builder) startServe(t testing.TB) ssh.PublicKey {
	t.Helper()
	b.startServeWith(t, nil, nil)
	waitPort(t, fmt.Sprintf("127.0.0.1:%d", b.port), b.serveDone)
	return b.hostKey(t)
}

// startServeWith starts nixgate serve behind the wrapper argv (such as
// systemd-socket-activate), with env added, and does not wait for it.
func (b *builder) startServeWith(t testing.TB, wrapper []string, env []string) {
	t.Helper()
	b.serveLog = filepath.Join(b.root, "serve.stderr")
	logf, err := os.OpenFile(b.serveLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bin := nixgateBin
	if b.bin != "" {
		bin = b.bin
	}
	argv := append(append([]string{}, wrapper...), bin, "serve", "--config", b.config)
	if b.sandbox != "" {
		// A builder without root: nixgate serve runs as the account.
		argv = append([]string{"setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--",
			"env", "-i", "HOME=" + b.account.home, "USER=" + b.account.name, "PATH=/usr/bin:/bin"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.serve = cmd
	b.serveDone = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(b.serveDone) }()
	done := b.serveDone
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if data, err := os.ReadFile(b.serveLog); err == nil && strings.Contains(string(data), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in nixgate serve:\n%s", data)
		}
		if t.Failed() {
			if data, err := os.ReadFile(b.serveLog); err == nil {
				t.Logf("nixgate serve stderr:\n%s", data)
			}
		}
	})
}

// hostKey returns the host key nixgate serve generated.
func (b *builder) hostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.root, "serve-state", "ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// signalServe sends sig to nixgate serve.
func (b *builder) signalServe(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := b.serve.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitServeExit waits, up to a bound, for nixgate serve to exit, and
// returns its exit code.
func (b *builder) waitServeExit(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-b.serveDone:
		return b.serve.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("nixgate serve did not exit within %v", within)
		return -1
	}
}

// metric reads one value from nixgate serve's Prometheus listener.
func (b *builder) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", b.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitMetric waits, bounded, until metric reaches want.
func (b *builder) waitMetric(t testing.TB, metric string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for b.metric(t, metric) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s stays %v; want %v", metric, b.metric(t, metric), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// openFDs counts nixgate serve's open file descriptors.
func (b *builder) openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.serve.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// settles waits, bounded, for nixgate's goroutines and descriptors to
// come back near where they were.
func (b *builder) settles(t testing.TB, goroutines float64, fds int) {
	t.Helper()
	var g float64
	var f int
	for i := 0; i < 100; i++ {
		g, f = b.metric(t, "go_goroutines"), b.openFDs(t)
		if g <= goroutines+10 && f <= fds+5 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("nixgate did not come back down: %v goroutines (was %v), %d descriptors (was %d)", g, goroutines, f, fds)
}

// waitHealthy waits, up to a bound well above serve's health interval,
// for b's nixgate_healthy gauge to become want (1 or 0).
func (b *builder) waitHealthy(t testing.TB, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for b.metric(t, "nixgate_healthy") != want {
		if time.Now().After(deadline) {
			t.Fatalf("nixgate_healthy of %s stays %v; want %v:\n%s", b.root, b.metric(t, "nixgate_healthy"), want, readFile(t, b.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReload waits, up to logWait, for serve to reload its configuration
// file as the test last wrote it: a "reloaded" record logged at or after
// the file's modification time, so that a test's second reload does not
// find the record of its first. It fails the test when none came.
func (b *builder) waitReload(t testing.TB) map[string]any {
	t.Helper()
	fi, err := os.Stat(b.config)
	if err != nil {
		t.Fatal(err)
	}
	written := fi.ModTime()
	return waitRecord(t, b, fmt.Sprintf("reload of %s written at %s", b.config, written.Format(time.RFC3339Nano)), func(r map[string]any) bool {
		if r["msg"] != "reloaded" {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
		return err == nil && !at.Before(written)
	})
}
