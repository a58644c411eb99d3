package gateway

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAck has Linux send the acknowledgement of what was just read now
// (TCP_QUICKACK, which the kernel clears again by itself) rather than
// when its delayed-ACK timer fires. A failure only costs that wait.
func quickAck(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
