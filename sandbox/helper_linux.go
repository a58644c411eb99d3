//go:build linux

package sandbox

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/policy"
)

// helperSpec is what the helper is told to do.
type helperSpec struct {
	storeDir string   // bind onto /nix in a new root; empty: no new root
	roHome   string   // remount read-only; empty: leave it
	chdir    string   // working directory; empty: the home, or /
	binDirs  []string // where to resolve argv[0]; nil: PATH
	argv     []string
}

func (s helperSpec) args() []string {
	a := []string{}
	if s.storeDir != "" {
		a = append(a, "--store-dir", s.storeDir)
	}
	if s.roHome != "" {
		a = append(a, "--read-only-home", s.roHome)
	}
	if s.chdir != "" {
		a = append(a, "--chdir", s.chdir)
	}
	for _, d := range s.binDirs {
		a = append(a, "--bin-dir", d)
	}
	return append(append(a, "--"), s.argv...)
}

type listValue []string

func (l *listValue) String() string     { return strings.Join(*l, ":") }
func (l *listValue) Set(s string) error { *l = append(*l, s); return nil }

func parseHelper(args []string) (helperSpec, error) {
	fs := flag.NewFlagSet(HelperCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var s helperSpec
	var dirs listValue
	fs.StringVar(&s.storeDir, "store-dir", "", "")
	fs.StringVar(&s.roHome, "read-only-home", "", "")
	fs.StringVar(&s.chdir, "chdir", "", "")
	fs.Var(&dirs, "bin-dir", "")
	if err := fs.Parse(args); err != nil {
		return s, fmt.Errorf("sandbox: helper: %w", err)
	}
	s.binDirs, s.argv = dirs, fs.Args()
	if len(s.argv) == 0 {
		return s, errors.New("sandbox: helper: no command")
	}
	return s, nil
}

// HelperMain is the helper's main: it sets up the sandbox it was started
// in and execs the command. It returns only on failure, with the message
// already printed to stderr.
func HelperMain(args []string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "nixgate: "+strings.TrimPrefix(err.Error(), "sandbox: "))
		return 126
	}
	s, err := parseHelper(args)
	if err != nil {
		return fail(err)
	}
	// Capabilities belong to threads: mount, drop and exec on this one.
	runtime.LockOSThread()
	if s.storeDir != "" {
		if err := newRoot(s.storeDir); err != nil {
			return fail(err)
		}
	}
	if s.roHome != "" {
		if err := remountReadOnly(s.roHome); err != nil {
			return fail(err)
		}
	}
	if err := dropPrivileges(); err != nil {
		return fail(err)
	}
	home := os.Getenv("HOME")
	env := os.Environ()
	path := s.argv[0]
	if s.binDirs != nil {
		var err error
		if !strings.Contains(path, "/") {
			path, err = Resolve(policy.Program(path), s.binDirs, home)
			if err != nil {
				return fail(err)
			}
		}
		env = replaceEnv(env, "PATH", Path(s.binDirs, Account{Home: home}))
	} else if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return fail(fmt.Errorf("sandbox: %w", err))
		}
		path = p
	}
	dir := s.chdir
	if dir == "" {
		dir = home
	}
	if dir == "" || os.Chdir(dir) != nil {
		os.Chdir("/")
	}
	err = syscall.Exec(path, append([]string{path}, s.argv[1:]...), env)
	return fail(fmt.Errorf("sandbox: exec %s: %w", path, err))
}

// dropPrivileges leaves the thread that will exec Nix no capability in
// any set — bounding (which needs the CAP_SETPCAP kept ambient for this),
// ambient, permitted, effective, inheritable — and sets no_new_privs, so
// that nothing Nix or a build runs can gain privileges by execve. Nix's
// own build sandbox still works: a new user namespace starts with a full
// set of its own.
func dropPrivileges() error {
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			if errors.Is(err, unix.EPERM) {
				// Not in a namespace of our own (proot): nothing to drop
				// with, and no_new_privs below keeps execve from using
				// the bounding set.
				break
			}
			return fmt.Errorf("sandbox: dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("sandbox: dropping ambient capabilities: %w", err)
	}
	var none [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
		return fmt.Errorf("sandbox: dropping capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: setting no_new_privs: %w", err)
	}
	return nil
}

func replaceEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// newRoot builds a new root, as nix-user-chroot does: a tmpfs holding a
// bind of every entry of / but /nix, and storeDir bound as /nix; then it
// pivots into it. /nix need not exist on the machine.
func newRoot(storeDir string) error {
	if fi, err := os.Stat(storeDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("sandbox: store_dir %s is not a directory", storeDir)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return &NamespaceError{Op: "making / private in the mount namespace", Err: err}
	}
	root, err := os.MkdirTemp("", "nixgate-root-")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		os.Remove(root)
		return &NamespaceError{Op: "mounting a tmpfs for the new root", Err: err}
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, e := range entries {
		if e.Name() == "nix" {
			continue
		}
		if err := bindEntry("/"+e.Name(), filepath.Join(root, e.Name())); err != nil {
			return err
		}
	}
	// The recursive bind of /tmp (or wherever root lives) also copied the
	// new root's own mount: take that copy away.
	unix.Unmount(filepath.Join(root, root), unix.MNT_DETACH)
	nix := filepath.Join(root, "nix")
	if err := os.Mkdir(nix, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := unix.Mount(storeDir, nix, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return &NamespaceError{Op: "binding " + storeDir + " onto /nix", Err: err}
	}
	if err := os.Chdir(root); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &NamespaceError{Op: "pivot_root into the new root", Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &NamespaceError{Op: "detaching the old root", Err: err}
	}
	os.Chdir("/")
	// The empty directory the new root was mounted on, seen through the
	// bind of its parent.
	os.Remove(root)
	return nil
}

// bindEntry makes dst a bind of src: a directory, a file, or a copy of a
// symlink.
func bindEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	default:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		f.Close()
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return &NamespaceError{Op: "binding " + src + " into the new root", Err: err}
	}
	return nil
}

// remountReadOnly makes dir a read-only bind of itself, keeping the
// flags the kernel locks for mounts seen from a user namespace.
func remountReadOnly(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return &NamespaceError{Op: "binding the home directory " + dir, Err: err}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for st_, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if st.Flags&st_ != 0 {
			flags |= ms
		}
	}
	if err := unix.Mount("", dir, "", flags, ""); err != nil {
		return &NamespaceError{Op: "remounting the home directory " + dir + " read-only", Err: err}
	}
	return nil
}
