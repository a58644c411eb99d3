package e2e

// Harness: newer Nix beside Debian 12's 2.8, from the Debian chroots that
// scripts/nix-chroots.sh makes (trixie's 2.26, sid's 2.34): a root
// nix-daemon of that version on a store of the chroot's own.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nixUnderTest is one Nix version the tests run against.
type nixUnderTest struct {
	name string // "2.8"
	// chroot is the root of its Debian chroot; empty for the host's Nix.
	chroot string
	// protocol is the worker protocol its daemon speaks.
	protocol uint64
}

// hostNix is Debian 12's Nix on the host.
var hostNix = nixUnderTest{name: "2.8", protocol: 1<<8 | 34}

// chrootsDir is where scripts/nix-chroots.sh keeps the chroots.
func chrootsDir() string {
	if d := os.Getenv("NIXGATE_CHROOTS"); d != "" {
		return d
	}
	return "/var/cache/nixgate-test"
}

// nixVersions returns the host's Nix and each chroot's. A chroot that is
// missing fails the test under CI (make test makes them) and is left out
// elsewhere, said in the test's log.
func nixVersions(t testing.TB) []nixUnderTest {
	t.Helper()
	out := []nixUnderTest{hostNix}
	for _, c := range []struct{ suite, name string }{{"trixie", "2.26"}, {"sid", "2.34"}} {
		root := filepath.Join(chrootsDir(), c.suite)
		if _, err := os.Stat(filepath.Join(root, ".nixgate-ready")); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("no chroot of Nix %s at %s (scripts/nix-chroots.sh makes it): %v", c.name, root, err)
			}
			t.Logf("Nix %s left out: no chroot at %s; run scripts/nix-chroots.sh as root", c.name, root)
			continue
		}
		if v := chrootNixVersion(root); v != c.name {
			t.Logf("the %s chroot has Nix %s (Debian %s moved on from %s)", c.suite, v, c.suite, c.name)
			c.name = v
		}
		out = append(out, nixUnderTest{name: c.name, chroot: root, protocol: 1<<8 | 38})
	}
	return out
}

// chrootNixVersion returns the major.minor version of the nix-bin package
// installed in the chroot at root, from its dpkg status; "?" when none.
func chrootNixVersion(root string) string {
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return "?"
	}
	for _, para := range strings.Split(string(status), "\n\n") {
		if !strings.Contains(para, "Package: nix-bin\n") {
			continue
		}
		for _, line := range strings.Split(para, "\n") {
			if v, ok := strings.CutPrefix(line, "Version: "); ok {
				parts := strings.SplitN(v, ".", 3)
				if len(parts) >= 2 {
					return parts[0] + "." + parts[1]
				}
			}
		}
	}
	return "?"
}

// chrootArgv is argv run in root with /proc and /dev mounted (Nix
// builds in a pseudoterminal), in a mount
// namespace of its own (the mount goes when the command ends): env's
// assignments, then the command.
func chrootArgv(root string, envAndArgv ...string) []string {
	return append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" env -i PATH=/usr/bin:/bin "$@"`, root}, envAndArgv...)
}

// startChrootDaemon starts the chroot's nix-daemon as root, on a socket
// and configuration in dir (under the chroot's /tmp), with trusted in
// trusted-users (the build account's uid: the chroot's /etc/passwd does
// not name it, and Nix then matches the number), and stops it, by PID,
// when the test ends.
func startChrootDaemon(t testing.TB, root, dir, trusted string) *nixDaemon {
	t.Helper()
	d := &nixDaemon{socket: filepath.Join(dir, "socket"), confDir: filepath.Join(dir, "conf"), chroot: root}
	d.writeConf(t, trusted)
	// NIX_REMOTE=local: the daemon's own store is the chroot's. Left to
	// "auto", Nix 2.26 in a chroot whose /nix/var/nix does not exist
	// yet (a new one) takes the socket it serves for the store to use,
	// and each connection's process connects to the daemon again,
	// without end.
	argv := chrootArgv(root, "NIX_CONF_DIR="+d.inside(d.confDir), "NIX_DAEMON_SOCKET_PATH="+d.inside(d.socket), "NIX_REMOTE=local", "nix-daemon")
	d.start(t, exec.Command(argv[0], argv[1:]...))
	return d
}

// newDaemonBuilderOf is newDaemonBuilder for the Nix n: a builder of mode
// whose store is n's root daemon. With trusted the build account is in
// the daemon's trusted-users, as the README sets a builder up; without,
// it is not. nixgate's nix-daemon --stdio (the host's) passes the bytes
// on to that daemon unread, so the daemon of n is the Nix that parses
// what nixgate writes.
func newDaemonBuilderOf(t testing.TB, mode string, n nixUnderTest, trusted bool) (*builder, *nixDaemon) {
	t.Helper()
	if n.chroot == "" {
		socket := daemonSocketFor(t)
		b := newBuilderWith(t, mode, builderOptions{daemonSocket: socket})
		user := ""
		if trusted {
			user = b.account.name
		}
		return b, startNixDaemon(t, socket, user)
	}
	// The socket's place must be known before the builder's
	// configuration, and the daemon's trusted-users needs the account:
	// the daemon starts after the builder, on the path it was given.
	dir, err := os.MkdirTemp(filepath.Join(n.chroot, "tmp"), "nixgate-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b := newBuilderWith(t, mode, builderOptions{daemonSocket: filepath.Join(dir, "socket")})
	user := ""
	if trusted {
		user = fmt.Sprint(b.account.uid)
	}
	return b, startChrootDaemon(t, n.chroot, dir, user)
}

// stdioWorker is a raw client of the daemon without nixgate: the host's
// nix-daemon --stdio run as the account (uid, gid), which passes its
// bytes on to the daemon's socket. It shows what the daemon itself does
// with a stream.
func (d *nixDaemon) stdioWorker(t testing.TB, uid, gid int, version uint64) *rawWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	cmd := exec.CommandContext(ctx, "nix-daemon", "--stdio")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "NIX_REMOTE=daemon", "NIX_DAEMON_SOCKET_PATH=" + d.socket, "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return startWorker(t, cmd, cancel, version)
}

// daemonLog returns the daemon's log.
func (d *nixDaemon) daemonLog(t testing.TB) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(d.socket), "daemon.log"))
	return strings.TrimSpace(string(b))
}
