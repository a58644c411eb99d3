package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// pollable returns the terminal f as a file that Go's poller watches, so
// that closing it ends a Read in progress: creack/pty leaves it in
// blocking mode, where a Read outlives Close as long as a process left
// behind holds the terminal open. f is closed.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
