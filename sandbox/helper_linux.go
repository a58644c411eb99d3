//go:build linux

package sandbox

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
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
	hideHome string   // replace with an empty read-only directory; empty: leave it
	hide     []string // further files and directories to hide (state, config, keys)
	isolate  bool     // private /tmp, /dev/shm and /run/user/UID; the rest read-only
	chdir    string   // working directory; empty: the home, or /
	binDirs  []string // where to resolve argv[0]; nil: PATH
	argv     []string
}

func (s helperSpec) args() []string {
	a := []string{}
	if s.storeDir != "" {
		a = append(a, "--store-dir", s.storeDir)
	}
	if s.hideHome != "" {
		a = append(a, "--hide-home", s.hideHome)
	}
	for _, p := range s.hide {
		a = append(a, "--hide", p)
	}
	if s.isolate {
		a = append(a, "--isolate")
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
	var dirs, hide listValue
	fs.StringVar(&s.storeDir, "store-dir", "", "")
	fs.StringVar(&s.hideHome, "hide-home", "", "")
	fs.Var(&hide, "hide", "")
	fs.BoolVar(&s.isolate, "isolate", false, "")
	fs.StringVar(&s.chdir, "chdir", "", "")
	fs.Var(&dirs, "bin-dir", "")
	if err := fs.Parse(args); err != nil {
		return s, errorf("helper: %w", err)
	}
	s.binDirs, s.hide, s.argv = dirs, hide, fs.Args()
	if len(s.argv) == 0 {
		return s, errorf("helper: no command")
	}
	return s, nil
}

// HelperMain is the helper's main: it sets up the sandbox it was started
// in and execs the command. It returns only on failure, with the message
// already printed to stderr.
func HelperMain(args []string, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "nixgate: "+policy.Line(err))
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
	if err := s.isolateFiles(); err != nil {
		return fail(err)
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
			return fail(errorf("%w", err))
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
	argv := append([]string{path}, s.argv[1:]...)
	if os.Getpid() == 1 {
		// The first process of a PID namespace of its own: stay as its
		// init, so that signals reach Nix and the namespace, with every
		// process of the session, ends when Nix does.
		code, err := runAsInit(path, argv, env)
		if err != nil {
			return fail(err)
		}
		return code
	}
	err = syscall.Exec(path, argv, env)
	return fail(errorf("exec %s: %w", path, err))
}

// isolateFiles gives the session's PID namespace its /proc and hides
// what Nix has no need to see. With isolate: the rest of the root read-only
// (but for /nix, /dev, /proc and /sys), and private, empty /tmp,
// /dev/shm and /run/user/UID. Then the hidden files and directories (an
// empty file, an empty read-only directory), then the home.
func (s helperSpec) isolateFiles() error {
	if os.Getpid() == 1 {
		// The session's own PID namespace needs its own /proc: process
		// ids there are the namespace's (a nested namespace's uid_map
		// is written through it), and the machine's processes are not
		// to be seen.
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return namespaceError("mounting /proc for the session's PID namespace", err)
		}
	}
	if s.isolate {
		entries, err := os.ReadDir("/")
		if err != nil {
			return errorf("%w", err)
		}
		for _, e := range entries {
			switch e.Name() {
			case "nix", "dev", "proc", "sys", "tmp":
				continue
			}
			if e.Type()&os.ModeSymlink != 0 {
				continue
			}
			if err := readOnlyTree("/" + e.Name()); err != nil {
				return err
			}
		}
		run := fmt.Sprintf("/run/user/%d", os.Getuid())
		for _, d := range []string{"/tmp", "/dev/shm", run} {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				continue
			}
			if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
				return namespaceError("a private "+d, err)
			}
		}
	}
	for _, p := range s.hide {
		if s.hideHome != "" && (p == s.hideHome || strings.HasPrefix(p, s.hideHome+"/")) {
			continue // hidden with the home
		}
		if err := hidePath(p); err != nil {
			return err
		}
	}
	if s.hideHome != "" {
		if err := hidePath(s.hideHome); err != nil {
			return err
		}
	}
	return nil
}

// hidePath puts something empty and read-only over p: /dev/null over a
// file, an empty tmpfs over a directory. A p that does not exist (in
// this view) is already hidden.
func hidePath(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return nil
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0555,size=4k")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return namespaceError("hiding "+p, err)
	}
	return nil
}

// readOnlyTree makes the mount at dir and every mount below it
// read-only (mount_setattr, Linux 5.12), or only dir where the kernel is
// older.
func readOnlyTree(dir string) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err := unix.MountSetattr(-1, dir, unix.AT_RECURSIVE, attr)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) {
		return namespaceError("making "+dir+" read-only", err)
	}
	return remountReadOnly(dir)
}

// runAsInit starts argv as the only child of the namespace's init (this
// process), passes on SIGTERM, SIGINT and SIGHUP, reaps what the session
// leaves behind, and returns Nix's exit status (128+n for a signal n).
func runAsInit(path string, argv, env []string) (int, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}})
	if err != nil {
		return 0, errorf("starting %s: %w", path, err)
	}
	go func() {
		for s := range sigs {
			syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, errorf("waiting for %s: %w", path, err)
		}
		if got != pid {
			continue // an orphan of the session: reaped
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
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
			return errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return errorf("dropping ambient capabilities: %w", err)
	}
	var none [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
		return errorf("dropping capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return errorf("setting no_new_privs: %w", err)
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
		return errorf("store_dir %s is not a directory", storeDir)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return namespaceError("making / private in the mount namespace", err)
	}
	root, err := os.MkdirTemp("", "nixgate-root-")
	if err != nil {
		return errorf("%w", err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		os.Remove(root)
		return namespaceError("mounting a tmpfs for the new root", err)
	}
	entries, err := os.ReadDir("/")
	if err != nil {
		return errorf("%w", err)
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
		return errorf("%w", err)
	}
	if err := unix.Mount(storeDir, nix, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return namespaceError("binding "+storeDir+" onto /nix", err)
	}
	if err := os.Chdir(root); err != nil {
		return errorf("%w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return namespaceError("pivot_root into the new root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return namespaceError("detaching the old root", err)
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
		return errorf("%w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return errorf("%w", err)
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return errorf("%w", err)
		}
	default:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return errorf("%w", err)
		}
		f.Close()
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return namespaceError("binding "+src+" into the new root", err)
	}
	return nil
}

// remountReadOnly makes dir a read-only bind of itself, keeping the
// flags the kernel locks for mounts seen from a user namespace.
func remountReadOnly(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return namespaceError("binding the home directory "+dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return errorf("%w", err)
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
		return namespaceError("remounting the home directory "+dir+" read-only", err)
	}
	return nil
}
