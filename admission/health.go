package admission

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/policy"
)

// DefaultDaemonSocket is the Nix daemon's socket when [nix] env sets no
// NIX_DAEMON_SOCKET_PATH.
const DefaultDaemonSocket = "/nix/var/nix/daemon-socket/socket"

// daemonTimeout bounds the talk with the Nix daemon in Check.
const daemonTimeout = 2 * time.Second

// Target is what a health check looks at: the store Nix uses on this
// builder. The zero Target checks nothing and is always healthy.
type Target struct {
	// Dir is the store directory (DIR/nix/store for local?root=DIR,
	// /nix/store for the daemon's store). Its file system must have
	// MinFree bytes free. A directory that does not exist yet (Nix
	// creates a local store on first use) stands for its nearest
	// existing parent. Empty means no directory is checked.
	Dir string
	// Write says that Dir must be writable by the account Nix runs as:
	// a local store. False for the daemon's store, which the daemon
	// writes.
	Write bool
	// Socket is the Nix daemon's socket, which must answer; empty for a
	// local store.
	Socket string
	// MinFree is the free space, in bytes, Dir's file system must have.
	// Zero means no check.
	MinFree uint64
	// Cred is the account Nix runs as, for the write check: nil means
	// this process's own.
	Cred *syscall.Credential
}

// TargetFor returns the store Nix runs against under cfg, for the
// account whose home is home ("~/" in store_dir) and whose credential is
// cred (nil: this process's own). In the sandbox modes it is store_dir's
// store; in direct mode a local store (local, local?root=DIR, or a path)
// or the daemon's (daemon, auto, unix://PATH, or none named). Other
// stores (ssh://, s3://, …) are not checked: ok is false.
func TargetFor(cfg *policy.Config, home string, cred *syscall.Credential) (t Target, ok bool) {
	t = Target{MinFree: cfg.Admission.MinFree, Cred: cred}
	if cfg.Sandbox.Mode != "" && cfg.Sandbox.Mode != policy.SandboxDirect {
		dir := cfg.Sandbox.StoreDir
		if rest, ok := strings.CutPrefix(dir, "~/"); ok {
			dir = filepath.Join(home, rest)
		}
		t.Dir, t.Write = filepath.Join(dir, "store"), true
		return t, true
	}
	store := cfg.Nix.Store
	scheme, rest, hasScheme := strings.Cut(store, "://")
	switch {
	case store == "" || store == "daemon" || store == "auto":
		t.Dir, t.Socket = "/nix/store", DefaultDaemonSocket
		if p := cfg.Nix.Env["NIX_DAEMON_SOCKET_PATH"]; p != "" {
			t.Socket = p
		}
		return t, true
	case hasScheme && scheme == "unix":
		p, _, _ := strings.Cut(rest, "?")
		t.Dir, t.Socket = "/nix/store", p
		return t, true
	case hasScheme:
		return Target{}, false
	}
	name, query, _ := strings.Cut(store, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return Target{}, false
	}
	root := q.Get("root")
	switch {
	case strings.HasPrefix(name, "/"):
		root = name
	case name != "local":
		return Target{}, false
	}
	t.Dir, t.Write = filepath.Join(root, "/nix/store"), true
	return t, true
}

// Health is the verdict of a health check. The zero Health is not
// healthy and has no reason: a builder whose health is unknown is
// refused.
type Health struct {
	// OK reports whether Nix on the builder works.
	OK bool
	// Reason says why not, in one line; empty when OK.
	Reason string
	// Free is the space, in bytes, free to the account on the store's
	// file system; zero when unknown.
	Free uint64
	// At is when the check ran.
	At time.Time
}

// Message returns the line a refused client sees, without the
// "nixgate: " prefix.
func (h Health) Message() string {
	if h.Reason == "" {
		return "builder unhealthy"
	}
	return "builder unhealthy: " + h.Reason
}

// Check checks t fully: the store directory's file system, its free
// space, whether the account can write it, and that the daemon answers
// the worker protocol's greeting (within 2 seconds). It is for a
// background check, not for a session's path.
func Check(t Target) Health {
	h := CheckQuick(t)
	if !h.OK || t.Socket == "" {
		return h
	}
	if err := greetDaemon(t.Socket, daemonTimeout); err != nil {
		return Health{Reason: "the Nix daemon does not answer at " + t.Socket + ": " + err.Error(), Free: h.Free, At: h.At}
	}
	return h
}

// CheckQuick is Check without talking to the daemon: it only sees that
// its socket exists. It is a few system calls (stat, statfs), cheap
// enough for a session's path in exec mode, where no process lives long
// enough to keep a cached verdict.
func CheckQuick(t Target) Health {
	h := Health{At: time.Now()}
	if t.Dir != "" {
		dir := existingDir(t.Dir)
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			h.Reason = fmt.Sprintf("cannot inspect the store %s: %v", t.Dir, err)
			return h
		}
		h.Free = st.Bavail * uint64(st.Bsize)
		if t.MinFree > 0 && h.Free < t.MinFree {
			h.Reason = fmt.Sprintf("store %s has %s free, below min_free %s", t.Dir, Size(h.Free), Size(t.MinFree))
			return h
		}
		if t.Write {
			if readOnly(&st) {
				h.Reason = fmt.Sprintf("store %s is on a read-only file system", t.Dir)
				return h
			}
			if err := writable(dir, t.Cred); err != nil {
				h.Reason = fmt.Sprintf("store %s is not writable: %v", t.Dir, err)
				return h
			}
		}
	}
	if t.Socket != "" {
		fi, err := os.Stat(t.Socket)
		if err != nil {
			h.Reason = "no Nix daemon socket " + t.Socket
			return h
		}
		if fi.Mode().Type() != os.ModeSocket {
			h.Reason = t.Socket + " is not a socket"
			return h
		}
	}
	h.OK = true
	return h
}

// existingDir returns dir, or its nearest parent that exists.
func existingDir(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil || errors.Is(err, syscall.EACCES) {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			return dir
		}
		dir = up
	}
}

// writable reports why cred (nil: this process) cannot create entries
// in dir, or nil when it can. For another account it reads the mode
// bits, as the kernel does without ACLs.
func writable(dir string, cred *syscall.Credential) error {
	if cred == nil {
		if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
			return err
		}
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if cred.Uid == 0 {
		return nil
	}
	mode := uint32(st.Mode)
	var bits uint32
	switch {
	case st.Uid == cred.Uid:
		bits = mode >> 6
	case st.Gid == cred.Gid || inGroups(st.Gid, cred.Groups):
		bits = mode >> 3
	default:
		bits = mode
	}
	if bits&3 != 3 {
		return fmt.Errorf("mode %04o, owner %d, group %d: uid %d may not write it", mode&0o7777, st.Uid, st.Gid, cred.Uid)
	}
	return nil
}

func inGroups(gid uint32, groups []uint32) bool {
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}

// greetDaemon opens a worker-protocol connection on socket and completes
// the handshake as a protocol 1.21 client, then hangs up: the daemon
// takes that as a client that is done, not as an error.
func greetDaemon(socket string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout) // for the dial and the talk together
	c, err := (&net.Dialer{Deadline: deadline}).Dial("unix", socket)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return se
		}
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	const (
		magicClient = 0x6e697863
		magicServer = 0x6478696f
		stderrLast  = 0x616c7473
		version     = 1<<8 | 21
	)
	u64 := func(vs ...uint64) error {
		b := make([]byte, 0, 8*len(vs))
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		_, err := c.Write(b)
		return err
	}
	read := func() (uint64, error) {
		var b [8]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	if err := u64(magicClient); err != nil {
		return err
	}
	if m, err := read(); err != nil {
		return err
	} else if m != magicServer {
		return fmt.Errorf("it does not speak the worker protocol (magic %#x)", m)
	}
	if _, err := read(); err != nil { // the daemon's protocol version
		return err
	}
	// Our version, no CPU affinity, no reserved space.
	if err := u64(version, 0, 0); err != nil {
		return err
	}
	// The daemon ends its greeting with STDERR_LAST; anything else (a
	// message, an error) still shows that it answers.
	if _, err := read(); err != nil {
		return err
	}
	return nil
}

// Size formats n bytes for people: "512 MiB", "1.5 GiB".
func Size(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Healthy is the health of cfg's store for this process's own account,
// whose home is home, in the form session.Request.Health takes: for exec
// mode, which runs as the build account and lives one session. It is
// DaemonHealth with the verdicts kept in the directory dir returns, which
// is called only for a daemon's store (nil, or dir returning nil:
// CheckQuick only). A store TargetFor cannot check is healthy.
func Healthy(cfg *policy.Config, home string, dir func() *LockDir) (ok bool, reason string) {
	t, ok := TargetFor(cfg, home, nil)
	if !ok {
		return true, ""
	}
	var d *LockDir
	if t.Socket != "" && dir != nil {
		d = dir()
	}
	h := d.DaemonHealth(t)
	return h.OK, h.Reason
}
