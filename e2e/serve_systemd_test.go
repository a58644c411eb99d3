package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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
	if _, err := execLookPath("systemd-socket-activate"); err != nil {
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

// TestServeEmbeddedDefault runs `nixgate serve` as the README says, in a
// directory without configuration: it refuses to start without a key and
// says how to add one; with one, a real Nix client gets through.
func TestServeEmbeddedDefault(t *testing.T) {
	requireTools(t)
	if _, err := os.Stat("/etc/nixgate/nixgate.toml"); err == nil {
		t.Skip("/etc/nixgate/nixgate.toml exists, so nixgate serve would not use the embedded default")
	}
	dir, err := os.MkdirTemp("", "nixgate-default-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nixgateBin, "serve", "--listen", listen)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	keys := filepath.Join(dir, ".state/serve/authorized_keys")
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "no key may log in: add one line per client key to "+keys) {
		t.Fatalf("nixgate serve without a key: %v\n%s", err, out)
	}

	k := newClientKey(t, dir, "me")
	writeFile(t, keys, "role=\"build\" "+k.publicKey+" me@test\n", 0o644)
	srv := exec.Command(nixgateBin, "serve", "--listen", listen)
	srv.Dir = dir
	stderrPath := filepath.Join(dir, "serve.stderr")
	stderrFile, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderrFile.Close()
	srv.Stderr = stderrFile
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	defer func() { srv.Process.Kill(); <-exited }()
	waitPort(t, listen, exited)

	client := filepath.Join(dir, "client")
	writeFile(t, filepath.Join(client, "nix/nix.conf"), "store = local?root="+filepath.Join(dir, "client-store")+"\nsubstituters =\nexperimental-features = nix-command\n", 0o644)
	env := []string{
		"NIX_CONF_DIR=" + filepath.Join(client, "nix"),
		fmt.Sprintf("NIX_SSHOPTS=-p %d -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=%s", port, k.path, filepath.Join(dir, ".state/serve/known_hosts")),
		"XDG_CACHE_HOME=" + filepath.Join(client, "cache"),
	}
	r := run(t, env, nil, "nix", "store", "ping", "--store", "ssh://nobody@127.0.0.1")
	if r.code != 0 {
		t.Fatalf("nix store ping against the embedded default: %s\nserver: %s", r, readFile(t, stderrPath))
	}
	if stderr := readFile(t, stderrPath); !strings.Contains(stderr, "nixgate serve: ready on "+listen) {
		t.Errorf("no connection hint on stderr: %s", stderr)
	}
}
