package admission

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/policy"
)

// freeSpace returns the bytes free to unprivileged users on dir's file
// system.
func freeSpace(t *testing.T, dir string) uint64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

func TestCheckWritable(t *testing.T) {
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	// A store Nix has not created yet stands for its parent.
	if h := CheckQuick(Target{Dir: store, Write: true}); !h.OK || h.Free == 0 {
		t.Fatalf("CheckQuick(store not yet created) = %+v; want healthy", h)
	}
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if h := Check(Target{Dir: store, Write: true}); !h.OK || h.Reason != "" {
		t.Fatalf("Check(writable) = %+v; want healthy", h)
	}
	if err := os.Chmod(store, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(store, 0o755) })
	// Another account's view, by the mode bits: root's own access(2)
	// would let it write anyway.
	other := &syscall.Credential{Uid: 65534, Gid: 65534}
	if os.Geteuid() != 0 {
		other = nil
	}
	h := Check(Target{Dir: store, Write: true, Cred: other})
	if h.OK || !strings.Contains(h.Reason, "store "+store+" is not writable") {
		t.Errorf("Check(mode 0555) = %+v; want unhealthy, not writable", h)
	}
	if !strings.HasPrefix(h.Message(), "builder unhealthy: store ") {
		t.Errorf("Message() = %q", h.Message())
	}
	// The owner of a 0755 store may write it; others may not, unless
	// the directory is group-writable and they are in the group.
	os.Chmod(store, 0o775)
	var st unix.Stat_t
	unix.Stat(store, &st)
	if st.Uid == 65534 || st.Gid == 65534 {
		t.Skip("the temporary directory belongs to nobody")
	}
	for _, tt := range []struct {
		cred *syscall.Credential
		ok   bool
	}{
		{&syscall.Credential{Uid: st.Uid, Gid: 65534}, true},
		{&syscall.Credential{Uid: 65534, Gid: 65534}, false},
		{&syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{st.Gid}}, true},
		{&syscall.Credential{Uid: 0, Gid: 0}, true},
	} {
		if h := Check(Target{Dir: store, Write: true, Cred: tt.cred}); h.OK != tt.ok {
			t.Errorf("Check(mode 0775, %+v) = %+v; want OK %v", tt.cred, h, tt.ok)
		}
	}
	// The daemon's store is the daemon's to write.
	if h := CheckQuick(Target{Dir: store, Cred: other}); !h.OK {
		t.Errorf("CheckQuick(no write check) = %+v; want healthy", h)
	}
}

func TestCheckMinFree(t *testing.T) {
	dir := t.TempDir()
	free := freeSpace(t, dir)
	if h := Check(Target{Dir: dir, Write: true, MinFree: free / 2}); !h.OK {
		t.Errorf("Check(min_free half the free space) = %+v; want healthy", h)
	}
	h := Check(Target{Dir: dir, Write: true, MinFree: free + 1<<40})
	if h.OK || !strings.Contains(h.Reason, "free, below min_free") {
		t.Errorf("Check(min_free above the free space) = %+v; want unhealthy, below min_free", h)
	}
	if h := Check(Target{Dir: filepath.Join(dir, "no", "such"), MinFree: free + 1<<40}); h.OK {
		t.Errorf("Check(missing dir, min_free above) = %+v; want unhealthy", h)
	}
}

func TestCheckDaemon(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "socket")
	if h := Check(Target{Socket: sock}); h.OK || h.Reason != "no Nix daemon socket "+sock {
		t.Errorf("Check(no socket) = %+v", h)
	}
	// A socket nobody listens on any more.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if h := CheckQuick(Target{Socket: sock}); !h.OK {
		t.Errorf("CheckQuick(a socket file) = %+v; want healthy (it does not connect)", h)
	}
	if h := Check(Target{Socket: sock}); h.OK || !strings.Contains(h.Reason, "does not answer") || !strings.Contains(h.Reason, "connection refused") {
		t.Errorf("Check(dead socket) = %+v; want does not answer: connection refused", h)
	}
	os.Remove(sock)
	// A fake daemon that greets as Nix's does.
	fakeDaemon(t, sock)
	if h := Check(Target{Socket: sock}); !h.OK {
		t.Errorf("Check(greeting daemon) = %+v; want healthy", h)
	}
}

// fakeDaemon listens on sock and greets as Nix's daemon does, until the
// test ends or the returned stop is called (which leaves the socket file
// behind, as a daemon that died does); greeted counts its greetings.
func fakeDaemon(t *testing.T, sock string) (greeted *atomic.Int32, stop func()) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	t.Cleanup(func() { l.Close() })
	greeted = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			greeted.Add(1)
			var b [24]byte
			c.Read(b[:8])
			c.Write([]byte{0x6f, 0x69, 0x78, 0x64, 0, 0, 0, 0, 34, 1, 0, 0, 0, 0, 0, 0})
			for n := 0; n < 24; {
				m, err := c.Read(b[n:])
				if err != nil {
					break
				}
				n += m
			}
			c.Write([]byte{0x73, 0x74, 0x6c, 0x61, 0, 0, 0, 0})
			c.Close()
		}
	}()
	return greeted, func() { l.Close() }
}

// TestDaemonHealthKept: exec mode's sessions share the verdict of the
// last greeting of the daemon through the lock directory: a healthy one
// is used for GreetInterval without greeting again; once it is older, the
// daemon is greeted, and a daemon that died (its socket file left behind,
// which CheckQuick alone takes for healthy) is found; the unhealthy
// verdict is kept for RecheckInterval, then the daemon is greeted again.
func TestDaemonHealthKept(t *testing.T) {
	d := openTestDir(t)
	sock := filepath.Join(t.TempDir(), "socket")
	greeted, stop := fakeDaemon(t, sock)
	target := Target{Socket: sock}
	if h := d.DaemonHealth(target); !h.OK || greeted.Load() != 1 {
		t.Fatalf("first session: %+v after %d greetings; want healthy after 1", h, greeted.Load())
	}
	if h := d.DaemonHealth(target); !h.OK || greeted.Load() != 1 {
		t.Fatalf("second session: %+v after %d greetings; want healthy, the kept verdict used", h, greeted.Load())
	}
	// Another socket's verdict is not this one's.
	other := filepath.Join(t.TempDir(), "other")
	greetedOther, _ := fakeDaemon(t, other)
	if h := d.DaemonHealth(Target{Socket: other}); !h.OK || greetedOther.Load() != 1 {
		t.Fatalf("another socket: %+v after %d greetings; want healthy after 1", h, greetedOther.Load())
	}
	d.DaemonHealth(target) // greets sock again: the kept verdict was other's
	if n := greeted.Load(); n != 2 {
		t.Fatalf("%d greetings of sock after other's verdict was kept; want 2", n)
	}

	stop()
	age := func(by time.Duration) {
		t.Helper()
		kept, ok := d.keptHealth(sock)
		if !ok {
			t.Fatal("no verdict kept")
		}
		kept.At = kept.At.Add(-by)
		if err := d.keepHealth(sock, kept); err != nil {
			t.Fatal(err)
		}
	}
	if h := d.DaemonHealth(target); !h.OK {
		t.Fatalf("the daemon died within GreetInterval: %+v; want the kept healthy verdict", h)
	}
	age(GreetInterval)
	h := d.DaemonHealth(target)
	if h.OK || !strings.Contains(h.Reason, "connection refused") {
		t.Fatalf("the daemon died, the verdict GreetInterval old: %+v; want unhealthy, connection refused", h)
	}
	// The daemon is back, but the unhealthy verdict is kept for a while.
	os.Remove(sock)
	greeted, _ = fakeDaemon(t, sock)
	if h := d.DaemonHealth(target); h.OK || greeted.Load() != 0 {
		t.Fatalf("within RecheckInterval of an unhealthy verdict: %+v after %d greetings; want the kept verdict", h, greeted.Load())
	}
	age(RecheckInterval)
	if h := d.DaemonHealth(target); !h.OK || greeted.Load() != 1 {
		t.Fatalf("RecheckInterval after an unhealthy verdict: %+v after %d greetings; want healthy after 1", h, greeted.Load())
	}

	// A kept verdict that is not a regular file, or not whole, is none.
	for _, bad := range []string{"at 12\nsocket " + sock + "\n", "at x\nsocket " + sock + "\nok\n", "socket " + sock + "\nok\n"} {
		os.Remove(filepath.Join(d.Path, healthFile))
		if err := os.WriteFile(filepath.Join(d.Path, healthFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := d.keptHealth(sock); ok {
			t.Errorf("kept verdict %q read as whole", bad)
		}
	}
	os.Remove(filepath.Join(d.Path, healthFile))
	if err := unix.Mkfifo(filepath.Join(d.Path, healthFile), 0o600); err != nil {
		t.Fatal(err)
	}
	before := greeted.Load()
	if h := d.DaemonHealth(target); !h.OK || greeted.Load() != before+1 {
		t.Errorf("a FIFO as the kept verdict: %+v after %d more greetings; want healthy, greeted", h, greeted.Load()-before)
	}
}

func TestTargetFor(t *testing.T) {
	for _, tt := range []struct {
		store, mode string
		env         map[string]string
		want        Target
		ok          bool
	}{
		{"local?root=/srv/nix", "", nil, Target{Dir: "/srv/nix/nix/store", Write: true}, true},
		{"/srv/nix", "", nil, Target{Dir: "/srv/nix/nix/store", Write: true}, true},
		{"local", "", nil, Target{Dir: "/nix/store", Write: true}, true},
		{"", "", nil, Target{Dir: "/nix/store", Socket: DefaultDaemonSocket}, true},
		{"daemon", "", map[string]string{"NIX_DAEMON_SOCKET_PATH": "/run/n.sock"}, Target{Dir: "/nix/store", Socket: "/run/n.sock"}, true},
		{"unix:///run/d.sock", "", nil, Target{Dir: "/nix/store", Socket: "/run/d.sock"}, true},
		{"ssh://elsewhere", "", nil, Target{}, false},
		{"", "userns", nil, Target{Dir: "/home/b/.nix/store", Write: true}, true},
	} {
		cfg := &policy.Config{Nix: policy.NixConfig{Store: tt.store, Env: tt.env}, Sandbox: policy.SandboxConfig{Mode: policy.SandboxMode(tt.mode), StoreDir: "~/.nix"}}
		got, ok := TargetFor(cfg, "/home/b", nil)
		if ok != tt.ok || got.Dir != tt.want.Dir || got.Write != tt.want.Write || got.Socket != tt.want.Socket {
			t.Errorf("TargetFor(store %q, mode %q) = %+v, %v; want %+v, %v", tt.store, tt.mode, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 64 << 20: "64.0 MiB", 3 << 29: "1.5 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q; want %q", n, got, want)
		}
	}
}

// TestKeptHealthFiles: a verdict half-written by a process that died
// (its file left, nobody holding it) is swept by the next writer, and a
// kept reason with control characters is read as one line of text.
func TestKeptHealthFiles(t *testing.T) {
	d := openTestDir(t)
	left := filepath.Join(d.Path, healthTemp+"12345-1-dead")
	if err := os.WriteFile(left, []byte("at 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.keepHealth("/sock", Health{Reason: "bad\r\x1b[2Jthing", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("a dead writer's file is still there: %v", err)
	}
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), healthTemp) {
			t.Errorf("%s left after a verdict was kept", e.Name())
		}
	}
	if err := os.WriteFile(filepath.Join(d.Path, healthFile), []byte(fmt.Sprintf("at %d\nsocket /sock\nreason bad\x1b[2J\x07thing\n", time.Now().UnixNano())), 0o600); err != nil {
		t.Fatal(err)
	}
	h, ok := d.keptHealth("/sock")
	if !ok || h.OK || h.Reason != "bad [2J thing" {
		t.Errorf("kept reason with control characters: %+v, %v; want %q", h, ok, "bad [2J thing")
	}
}
