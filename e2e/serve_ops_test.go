package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeReload(t *testing.T) {
	b := newBuilder(t, modeServe)
	good, err := os.ReadFile(b.config)
	if err != nil {
		t.Fatal(err)
	}
	// A broken file: reported, and the old configuration keeps serving.
	writeFile(t, b.config, string(good)+"\n[[keys]]\nname = \"broken\"\nrole = \"admin\"\n", 0o644)
	b.signalServe(t, syscall.SIGHUP)
	rec := waitLog(t, b, "reload failed, keeping the old configuration", nil)
	if !strings.Contains(fmt.Sprint(rec["reason"]), `unknown role "admin"`) || !strings.Contains(fmt.Sprint(rec["reason"]), b.config+":") {
		t.Errorf("reload failure record: %v", rec)
	}
	b.mustStillServe(t)
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))

	// A good file without the substitute key: that key is refused now.
	i := strings.Index(string(good), "\n[[keys]]\nname = \"substitute\"")
	j := strings.Index(string(good), "\n[[keys]]\nname = \"lan\"")
	if i < 0 || j < i {
		t.Fatalf("unexpected config layout:\n%s", good)
	}
	without := string(good[:i]) + string(good[j:])
	writeFile(t, b.config, without, 0o644)
	b.signalServe(t, syscall.SIGHUP)
	b.waitReload(t)
	r := b.nix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))
	if r.code == 0 {
		t.Fatalf("substitute key still works after it was removed: %s", r)
	}
	b.mustStillServe(t)
}

func TestServeDrainOnSIGTERM(t *testing.T) {
	b := newBuilder(t, modeServe)
	p := b.addBigPath(t, "drain", 256<<20)
	cmd, out := b.startNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
	waitLog(t, b, "allowed", map[string]string{"command": "nix-store --serve --write"})
	b.signalServe(t, syscall.SIGTERM)
	rec := waitLog(t, b, "shutting down", nil)
	if fmt.Sprint(rec["running"]) == "0" {
		t.Fatalf("SIGTERM came after the copy had finished; nothing was drained: %v", rec)
	}
	// New connections are refused while the copy runs on.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), time.Second); err == nil {
		c.Close()
		if !inStore(b.storeDir, p) {
			t.Error("a new connection was accepted during the drain")
		}
	}
	if err := waitCmd(t, cmd, 2*time.Minute); err != nil {
		t.Fatalf("nix copy during SIGTERM failed: %v\n%s", err, out)
	}
	if !inStore(b.storeDir, p) {
		t.Fatal("the copy finished but the path is not in the builder store")
	}
	if code := b.waitServeExit(t, 30*time.Second); code != 0 {
		t.Errorf("nixgate serve exited %d after the drain", code)
	}
	waitLog(t, b, "stopped", nil)
}

func TestServeClientKilledMidCopy(t *testing.T) {
	b := newBuilder(t, modeServe)
	p := b.addBigPath(t, "killed", 256<<20)
	cmd, _ := b.startNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
	rec := waitLog(t, b, "allowed", map[string]string{"command": "nix-store --serve --write"})
	pid := int(rec["pid"].(float64))
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	waitCmd(t, cmd, 30*time.Second)

	// The Nix command's whole process group goes away.
	gone := false
	for i := 0; i < 1000 && !gone; i++ {
		if err := syscall.Kill(-pid, 0); errors.Is(err, syscall.ESRCH) {
			gone = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !gone {
		t.Fatalf("process group %d of the killed client's nix-store is still there", pid)
	}
	waitLog(t, b, "session ended", map[string]string{"command": "nix-store --serve --write"})

	// The builder store is still consistent, checked as its owner.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	verify := exec.CommandContext(ctx, "setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--clear-groups", "--",
		"nix-store", "--verify", "--store", b.store)
	verify.Env = []string{"PATH=/usr/bin:/bin", "HOME=/", "NIX_CONFIG=substituters ="}
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("nix-store --verify after the kill: %v\n%s", err, out)
	}
	b.mustStillServe(t)
}

func TestServeStartRefusals(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	tests := []struct{ name, config, want string }{
		{"broken config", "user = \"nobody\"\n[[keys]]\nname = \"k\"\nrole = \"admin\"\n", "policy: " + filepath.Join(dir, "broken config.toml") + ":4: keys[0].role: unknown role"},
		{"no key may log in", "user = \"nobody\"\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"" + dir + "\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "no key may log in"},
		{"root as build user", "user = \"root\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "root is refused"},
		{"authorized_keys mistyped", "user = \"nobody\"\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"" + dir + "\"\nauthorized_keys = \"" + filepath.Join(dir, "authorised_keys") + "\"\n",
			"the authorized_keys file " + filepath.Join(dir, "authorised_keys") + " that " + filepath.Join(dir, "authorized_keys mistyped.toml") + " names does not exist: fix the path there (a typo?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".toml")
			writeFile(t, path, tt.config, 0o644)
			r := run(t, nil, nil, nixgateBin, "serve", "--config", path)
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != 1 || r.stdout != "" || len(lines) != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("nixgate serve with %s: %s; want exit 1 and one line with %q", tt.name, r, tt.want)
			}
		})
	}
}
