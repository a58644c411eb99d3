package nixproto

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe asks for a 1 MiB pipe to Nix, so that a store copy flows in
// large pieces with few wake-ups. Best effort. (Not through w.Fd, which
// would make the pipe blocking.)
func growPipe(w *os.File) {
	if rc, err := w.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}
