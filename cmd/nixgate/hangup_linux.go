package main

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// hangupPoll is how long one wait of watchHangup lasts before it looks
// at done again.
const hangupPoll = 500 * time.Millisecond

// watchHangup returns a channel that is closed when nothing reads out
// any more: in exec mode, out is the pipe to sshd, and its read end
// closes when the client's connection is gone. It watches until done
// closes, or until poll fails; a file or /dev/null never reports
// anything, and then the channel is never closed.
func watchHangup(out *os.File, done <-chan struct{}) <-chan struct{} {
	gone := make(chan struct{})
	conn, err := out.SyscallConn()
	if err != nil {
		return gone
	}
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			// Events 0: poll reports only POLLERR (a pipe with no reader
			// left), POLLHUP (a socket shut down both ways) and POLLNVAL.
			fds := []unix.PollFd{{Events: 0}}
			var n int
			var perr error
			if err := conn.Control(func(fd uintptr) {
				fds[0].Fd = int32(fd)
				n, perr = unix.Poll(fds, int(hangupPoll/time.Millisecond))
			}); err != nil {
				return
			}
			switch {
			case errors.Is(perr, unix.EINTR):
			case perr != nil || fds[0].Revents&unix.POLLNVAL != 0:
				return
			case n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0:
				close(gone)
				return
			}
		}
	}()
	return gone
}
