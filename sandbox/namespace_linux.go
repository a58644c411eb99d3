//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// namespaceAttr returns the process attributes that start a child in a
// new user, mount, PID and IPC namespace, with the caller's uid and gid mapped 1:1
// (Nix must not believe it is root) and CAP_SYS_ADMIN kept across execve
// as an ambient capability, so that the helper can mount before it execs
// Nix, with CAP_SETPCAP, so that it can then empty its bounding set.
func namespaceAttr() *syscall.SysProcAttr {
	uid, gid := os.Getuid(), os.Getgid()
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP},
	}
}

// NamespaceError explains why the kernel refused nixgate a user
// namespace, and what to change. Its text is the line a client sees;
// sandbox returns it inside its policy.Error ("sandbox: " and the line).
type NamespaceError struct {
	Op  string // what was refused
	Err error  // the kernel's answer
}

// namespaceError returns a *NamespaceError as one of sandbox's errors.
func namespaceError(op string, err error) error {
	return errorf("%w", &NamespaceError{Op: op, Err: err})
}

func (e *NamespaceError) Error() string {
	return fmt.Sprintf("the kernel refused %s (%s): %s", e.Op, errnoText(e.Err), namespaceAdvice(e.Err, readSysctl))
}

func (e *NamespaceError) Unwrap() error { return e.Err }

func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s, %s", unix.ErrnoName(errno), errno.Error())
	}
	return err.Error()
}

// namespaceAdvice says what to change for a refused user namespace,
// reading the knobs that explain it (through sysctl) where it can.
func namespaceAdvice(err error, sysctl func(string) (string, bool)) string {
	var hints []string
	if v, ok := sysctl("user/max_user_namespaces"); ok && v == "0" {
		hints = append(hints, "user.max_user_namespaces is 0: sysctl -w user.max_user_namespaces=15000")
	}
	if v, ok := sysctl("kernel/unprivileged_userns_clone"); ok && v == "0" {
		hints = append(hints, "kernel.unprivileged_userns_clone is 0: sysctl -w kernel.unprivileged_userns_clone=1")
	}
	if v, ok := sysctl("kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" {
		hints = append(hints, "AppArmor restricts unprivileged user namespaces (Ubuntu): sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for nixgate with the userns permission")
	}
	if len(hints) == 0 {
		switch {
		case errors.Is(err, syscall.ENOSPC):
			hints = append(hints, "the limit on user namespaces is reached (user.max_user_namespaces, or a parent namespace that allows none): raise it with sysctl -w user.max_user_namespaces=15000")
		case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
			hints = append(hints, "unprivileged user namespaces are disabled or filtered: check kernel.unprivileged_userns_clone (Debian), kernel.apparmor_restrict_unprivileged_userns (Ubuntu) and any seccomp filter of a container runtime")
		case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOSYS):
			hints = append(hints, "this kernel has no user namespaces (CONFIG_USER_NS)")
		default:
			hints = append(hints, "check that unprivileged user namespaces are enabled")
		}
	}
	return strings.Join(hints, "; ") + `; or set sandbox.mode = "proot", which needs none`
}

func readSysctl(name string) (string, bool) {
	data, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

// growPipe asks for a large buffer for the pipe w writes to: a store copy
// then flows in big chunks, with fewer wake-ups of nixgate and of Nix.
// Best effort.
func growPipe(w *os.File) {
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, stdinPipeSize)
}
