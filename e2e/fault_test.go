package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// noneLeft waits, bounded, until the build account runs nothing.
func noneLeft(t testing.TB, b *builder) {
	t.Helper()
	var left []int
	for i := 0; i < 150; i++ {
		if left = accountProcesses(b.account.uid); len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	var cmds []string
	for _, p := range left {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		cmds = append(cmds, strings.ReplaceAll(string(data), "\x00", " "))
	}
	t.Fatalf("processes of the build account are left behind: %q", cmds)
}

// verifyStore runs nix-store --verify on the builder store as its owner.
func verifyStore(t testing.TB, b *builder) {
	t.Helper()
	r := run(t, []string{"NIX_CONFIG=substituters ="}, nil, "setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--clear-groups", "--",
		"env", "-i", "PATH=/usr/bin:/bin", "HOME=/", "nix-store", "--verify", "--store", b.store)
	if r.code != 0 {
		t.Fatalf("nix-store --verify: %s", r)
	}
}

func TestFaultClientKilledMidBuild(t *testing.T) {
	b := newBuilder(t, modeServe)
	g0, f0 := b.metric(t, "go_goroutines"), b.openFDs(t)
	drv := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 60)
	cmd, _ := b.startNix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
	waitBuilding(t, b)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	waitCmd(t, cmd, 30*time.Second)
	noneLeft(t, b) // nix-store and the builder it started
	b.settles(t, g0, f0)
	verifyStore(t, b)
	b.mustStillServe(t)
}

func TestFaultClientKilledMidCopy(t *testing.T) {
	b := newBuilder(t, modeServe)
	g0, f0 := b.metric(t, "go_goroutines"), b.openFDs(t)
	p := b.addBigPath(t, "fault-copy", 256<<20)
	cmd, _ := b.startNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
	waitLog(t, b, "allowed", map[string]string{"command": "nix-store --serve --write"})
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	waitCmd(t, cmd, 30*time.Second)
	noneLeft(t, b)
	b.settles(t, g0, f0)
	verifyStore(t, b)
	b.mustStillServe(t)
}

// TestFaultNixCrashes: a Nix command that dies of a signal is reported
// to the client as that signal.
func TestFaultNixCrashes(t *testing.T) {
	b := newBuilder(t, modeServe)
	c := b.mustDial(t, "build")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	rec := waitLog(t, b, "allowed", map[string]string{"command": "nix-store --serve --write"})
	syscall.Kill(int(rec["pid"].(float64)), syscall.SIGSEGV)
	err = s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "SEGV" {
		t.Fatalf("client saw %v; want exit signal SEGV", err)
	}
	waitLog(t, b, "session ended", map[string]string{"signal": "SIGSEGV"})
	b.mustStillServe(t)
}

// TestFaultSIGTERMDuringBuild: the running build finishes, new
// connections are refused, and nixgate exits cleanly.
func TestFaultSIGTERMDuringBuild(t *testing.T) {
	b := newBuilder(t, modeServe)
	nonce := fmt.Sprint(time.Now().UnixNano())
	drv := writeSlowDerivation(t, b.root, nonce, 3)
	cmd, out := b.startNix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
	waitBuilding(t, b)
	b.signalServe(t, syscall.SIGTERM)
	waitLog(t, b, "shutting down", nil)
	if r := b.nix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute")); r.code == 0 {
		t.Error("a new connection was served during the drain")
	}
	if err := waitCmd(t, cmd, 2*time.Minute); err != nil {
		t.Fatalf("the build did not survive SIGTERM: %v\n%s", err, out)
	}
	if p := strings.TrimSpace(lastLine(out.String())); !strings.Contains(readStore(t, b.clientStoreDir, p), "built remotely "+nonce) {
		t.Errorf("build output %s", p)
	}
	if code := b.waitServeExit(t, 30*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestFaultDiskFull: the builder's store fills up; Nix's own error
// reaches the client and nixgate carries on.
func TestFaultDiskFull(t *testing.T) {
	b := newBuilder(t, modeServe)
	small := filepath.Join(b.root, "stores", "small")
	os.MkdirAll(small, 0o755)
	mustRun(t, nil, "mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", small)
	t.Cleanup(func() { run(t, nil, nil, "umount", "-l", small) })
	b.account.chown(t, small)
	cfg := readFile(t, b.config)
	writeFile(t, b.config, strings.Replace(cfg, fmt.Sprintf("store = %q", b.store), fmt.Sprintf("store = %q", "local?root="+small), 1), 0o644)
	b.waitReload(t)

	// With the default min_free (64 MiB) the builder says at connect that
	// it is short of space, so Nix can go elsewhere.
	p := b.addBigPath(t, "too-big", 64<<20)
	var r result
	for i := 0; i < 20; i++ {
		if r = b.nix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p); strings.Contains(r.stderr, "builder unhealthy") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "nixgate: builder unhealthy: store") || !strings.Contains(r.stderr, "below min_free") {
		t.Fatalf("copy into a store below min_free: %s", r)
	}
	// Without min_free the copy runs and the disk fills: Nix's own error,
	// nothing left running, and the builder carries on.
	writeFile(t, b.config, readFile(t, b.config)+"\n[admission]\nmin_free = 0\n", 0o644)
	b.waitReload(t)
	for i := 0; i < 20; i++ {
		if r = b.nix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p); !strings.Contains(r.stderr, "builder unhealthy") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "No space left on device") {
		t.Fatalf("copy into a full store: %s", r)
	}
	noneLeft(t, b)
	b.mustStillServe(t)
}

// TestFaultConnectionLostExec: in exec mode the client's connection is
// lost (its ssh killed) while Nix builds: sshd ends, and nixgate stops
// the Nix it started (SIGTERM, then SIGKILL), as serve does when a
// channel closes, rather than letting the build run on for nobody.
func TestFaultConnectionLostExec(t *testing.T) {
	b := newBuilder(t, modeExec)
	file := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 120)
	drv := strings.TrimSpace(b.mustNix(t, "nix-instantiate", file).stdout)
	b.mustNix(t, "nix", "copy", "--derivation", "--to", "ssh-ng://"+b.Host("build"), drv)
	c := b.dialWorker(t, "build", 1<<8|34)
	c.send(wop(9).strs(drv + "!out").u64(0).b)
	waitBuilding(t, b)
	syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	noneLeft(t, b)
	if findRecord(t, b, logWait, func(r map[string]any) bool { return r["msg"] == "client gone; stopping the command" }) == nil {
		t.Errorf("no log record of the client gone:\n%s", readFile(t, b.log))
	}
}
