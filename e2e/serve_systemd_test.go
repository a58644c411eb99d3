package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeSystemdProtocols runs nixgate serve the way systemd does:
// socket activation (systemd-socket-activate hands it the listening
// socket; listen in the config is then ignored) and the notify protocol
// (READY, RELOADING, STOPPING on NOTIFY_SOCKET).
func TestServeSystemdProtocols(t *testing.T) {
	b := newBuilder(t, modeServe)
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatal("systemd-socket-activate is missing (package systemd)")
	}
	// Stop the server newBuilder started; start one by socket activation
	// on the same port, with the config pointing elsewhere.
	b.serve.Process.Kill()
	<-b.serveDone
	unused := freePort(t)
	cfg := readFile(t, b.config)
	writeFile(t, b.config, strings.Replace(cfg, fmt.Sprintf("127.0.0.1:%d", b.port), fmt.Sprintf("127.0.0.1:%d", unused), 1), 0o644)

	sock := filepath.Join(b.root, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	messages := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := notify.ReadFromUnix(buf)
			if err != nil {
				close(messages)
				return
			}
			messages <- string(buf[:n])
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-messages:
			if !strings.Contains(m, want) {
				t.Fatalf("notify message %q; want %q", m, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %q on NOTIFY_SOCKET", want)
		}
	}

	b.startServeWith(t, []string{"systemd-socket-activate", "-l", fmt.Sprintf("127.0.0.1:%d", b.port), "-E", "NOTIFY_SOCKET=" + sock}, nil)
	waitPort(t, fmt.Sprintf("127.0.0.1:%d", b.port), b.serveDone)
	// The first connection starts nixgate with the socket.
	b.mustStillServe(t)
	expect("READY=1")
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", unused), time.Second); err == nil {
		c.Close()
		t.Error("nixgate listened on the config's address although systemd passed a socket")
	}
	waitLog(t, b, "listening", map[string]string{"addr": fmt.Sprintf("127.0.0.1:%d", b.port)})

	b.signalServe(t, syscall.SIGHUP)
	expect("RELOADING=1")
	expect("READY=1")
	b.mustStillServe(t)

	b.signalServe(t, syscall.SIGTERM)
	expect("STOPPING=1")
	if code := b.waitServeExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

func TestServeMetrics(t *testing.T) {
	b := newBuilder(t, modeServe)
	b.mustStillServe(t)
	b.sshWith(t, "build", nil, "id", nil)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", b.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`nixgate_sessions_total{decision="allowed"} 1`,
		`nixgate_sessions_total{decision="refused"} 1`,
		`nixgate_auth_total{result="accepted"} 2`,
		`nixgate_sessions_running 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
