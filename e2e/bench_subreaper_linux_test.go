//go:build bench && linux

package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER.
const prSetChildSubreaper = 36

// becomeSubreaper makes this process the child subreaper of everything
// it starts, until the test ends: a process orphaned below it (the Nix
// that OpenSSH's sshd leaves running when its client is gone) becomes its
// child, for reapOrphans to wait for and count.
func becomeSubreaper(t testing.TB) {
	t.Helper()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}

// reapOrphans waits, up to within, until no process of uid is left,
// reaping those orphaned to this process (see becomeSubreaper), and
// returns their CPU seconds: user and system time, theirs and their
// waited-for children's. Only processes of uid are reaped, never a child
// an exec.Cmd waits for.
func reapOrphans(t testing.TB, uid int, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	var cpu float64
	for {
		left := accountProcesses(uid)
		if len(left) == 0 {
			return cpu
		}
		for _, pid := range left {
			if parentOf(pid) != os.Getpid() {
				continue
			}
			var ws syscall.WaitStatus
			var ru syscall.Rusage
			if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, &ru); err == nil && got == pid {
				cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			}
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, p := range left {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				desc = append(desc, fmt.Sprintf("%d (parent %d) %q", p, parentOf(p), strings.ReplaceAll(string(cmdline), "\x00", " ")))
			}
			t.Fatalf("uid %d still has processes after %v: %s", uid, within, strings.Join(desc, "; "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
