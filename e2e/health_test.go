package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// storeTop returns the directory health checks for b's local store: its
// nix/store once Nix has made it, else the store's root.
func (b *builder) storeTop() string {
	if d := filepath.Join(b.storeDir, "nix", "store"); dirExists(d) {
		return d
	}
	return b.storeDir
}

func dirExists(d string) bool {
	fi, err := os.Stat(d)
	return err == nil && fi.IsDir()
}

// TestHealthFailover has real Nix 2.8 build with two nixgate serve
// builders, A and B, in one machines list, A first: with A's store not
// writable by the build account, and then with A's free space below
// min_free, the build lands on B without a failed build (Nix's build
// hook says it cannot build on A and moves on), A's log records the
// refusal and nixgate check says why; with A healthy again and B
// draining, the build lands on A.
func TestHealthFailover(t *testing.T) {
	a := newBuilder(t, modeServe)
	b := newBuilder(t, modeServe)
	both := filepath.Join(a.root, "client", "ssh_config_both")
	cfg := strings.ReplaceAll(readFile(t, a.sshConfig), "Host builder-", "Host a-builder-") +
		strings.ReplaceAll(readFile(t, b.sshConfig), "Host builder-", "Host b-builder-")
	writeFile(t, both, cfg, 0o644)
	env := append(append([]string{}, a.clientEnv...), "NIX_SSHOPTS=-F "+both)
	machines := "ssh://a-builder-build x86_64-linux - 1 ; ssh://b-builder-build x86_64-linux - 1"
	build := func(name string, on, off *builder) result {
		t.Helper()
		nonce := fmt.Sprint(time.Now().UnixNano())
		r := run(t, env, nil, "nix-build", writeDerivation(t, a.root, nonce), "--no-out-link", "-j0", "--builders", machines)
		out := strings.TrimSpace(r.stdout)
		if r.code != 0 || !strings.HasPrefix(out, "/nix/store/") {
			t.Fatalf("%s: nix-build failed: %s", name, r)
		}
		if !inStore(on.storeDir, out) || inStore(off.storeDir, out) {
			t.Errorf("%s: %s in the working builder's store %v, in the other's %v; want only the working one", name, out, inStore(on.storeDir, out), inStore(off.storeDir, out))
		}
		return r
	}
	a.waitHealthy(t, 1)

	// A's store is not writable by the build account.
	top := a.storeTop()
	if err := os.Chmod(top, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(top, 0o755) })
	a.waitHealthy(t, 0)
	reason := "builder unhealthy: store " + filepath.Join(a.storeDir, "nix", "store") + " is not writable"
	r := build("A's store not writable", b, a)
	if !strings.Contains(r.stderr, "cannot build on 'ssh://a-builder-build'") || strings.Count(r.stderr, "nixgate: "+reason) != 1 {
		t.Errorf("Nix does not say once that it could not build on A because A is unhealthy:\n%s", r.stderr)
	}
	if findRecord(t, a, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["decision"] == "deny" && r["unhealthy"] == true && strings.HasPrefix(fmt.Sprint(r["reason"]), reason)
	}) == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, a.log))
	}
	if findRecord(t, a, logWait, func(r map[string]any) bool {
		return r["msg"] == "unhealthy: new Nix sessions are refused, so that Nix builds elsewhere"
	}) == nil {
		t.Errorf("the change is not logged:\n%s", readFile(t, a.log))
	}
	c := run(t, nil, nil, nixgateBin, "check", "--config", a.config)
	if !strings.Contains(c.stdout, "FAIL  health") || !strings.Contains(c.stdout, "fix: chown "+a.account.name) {
		t.Errorf("nixgate check does not show the ill health:\n%s", c.stdout)
	}
	os.Chmod(top, 0o755)
	a.waitHealthy(t, 1)
	if findRecord(t, a, logWait, func(r map[string]any) bool { return r["msg"] == "healthy again: new Nix sessions are taken" }) == nil {
		t.Errorf("the recovery is not logged:\n%s", readFile(t, a.log))
	}

	// A's free space below min_free (a reload of its configuration).
	good := readFile(t, a.config)
	writeFile(t, a.config, good+"\n[admission]\nmin_free = \"100000T\"\n", 0o644)
	a.waitHealthy(t, 0)
	r = build("A below min_free", b, a)
	if !strings.Contains(r.stderr, "cannot build on 'ssh://a-builder-build'") || !strings.Contains(r.stderr, "free, below min_free 97.7 PiB") {
		t.Errorf("Nix does not say it could not build on A because A is below min_free:\n%s", r.stderr)
	}
	writeFile(t, a.config, good, 0o644)
	a.waitHealthy(t, 1)

	// A healthy again, B draining: A builds.
	b.drain(t, "--reason", "maintenance")
	build("A healthy again, B draining", a, b)
}

// TestHealthExec has exec mode check the store on each session: with the
// store not writable by the build account, nix store ping is refused
// with the line; once writable again, it works.
func TestHealthExec(t *testing.T) {
	b := newBuilder(t, modeExec)
	ping := []string{"nix", "store", "ping", "--store", "ssh://" + b.Host("build")}
	top := b.storeTop()
	if err := os.Chmod(top, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(top, 0o755) })
	reason := "builder unhealthy: store " + filepath.Join(b.storeDir, "nix", "store") + " is not writable"
	r := b.nix(t, ping...)
	if r.code == 0 || strings.Count(r.stderr, "nixgate: "+reason) != 1 {
		t.Errorf("nix store ping on an exec builder with an unwritable store: %s; want a failure with the line once", r)
	}
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["decision"] == "deny" && r["unhealthy"] == true && strings.HasPrefix(fmt.Sprint(r["reason"]), reason)
	}) == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, b.log))
	}
	os.Chmod(top, 0o755)
	b.mustNix(t, ping...)
}

// TestHealthExecDaemon has exec mode, whose store is Nix's root daemon,
// find the daemon gone though its socket file is still there (which a
// look at the file alone takes for healthy): the greeting is refused,
// and nix store ping is refused with the line; the verdict is kept for
// the next sessions, and once the daemon is back (and the kept verdict a
// few seconds old) sessions are taken again.
func TestHealthExecDaemon(t *testing.T) {
	b, d := newDaemonBuilder(t, modeExec)
	socket := d.socket
	ping := []string{"nix", "store", "ping", "--store", "ssh://" + b.Host("build")}
	b.mustNix(t, ping...)
	kept := filepath.Join(b.root, "serve-state", "run", "health")
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("no verdict kept after a healthy session: %v", err)
	}

	d.stop()
	if _, err := os.Stat(socket); err != nil {
		// Nix removed its socket: leave one behind, as a daemon that
		// crashed does.
		l, err := net.Listen("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	// The kept verdict (healthy, seconds old) would be used for 30 s:
	// without it the next session greets the daemon.
	if err := os.Remove(kept); err != nil {
		t.Fatal(err)
	}
	r := b.nix(t, ping...)
	const line = "nixgate: builder unhealthy: "
	if r.code == 0 || strings.Count(r.stderr, line) != 1 || !strings.Contains(r.stderr, "connection refused") {
		t.Fatalf("nix store ping with the daemon gone: %s; want a failure with %q once, naming the refused connection", r, line)
	}
	if findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["unhealthy"] == true && strings.Contains(fmt.Sprint(r["reason"]), "connection refused")
	}) == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, b.log))
	}

	startNixDaemon(t, socket, b.account.name)
	var last result
	for i := 0; i < 30; i++ {
		if last = b.nix(t, ping...); last.code == 0 {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("nix store ping 30 s after the daemon came back: %s", last)
}
