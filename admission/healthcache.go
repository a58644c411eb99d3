package admission

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GreetInterval is how often the Nix daemon is greeted while it answers:
// each greeting is a line ("accepted connection") in the daemon's log, so
// it is not every few seconds. While the builder is unhealthy it is
// greeted again after RecheckInterval.
const GreetInterval = 30 * time.Second

// RecheckInterval is how long exec mode keeps an unhealthy daemon's
// verdict before it greets the daemon again; serve checks as often.
const RecheckInterval = 5 * time.Second

// healthFile is the lock directory's file of the last greeting's verdict,
// shared by exec mode's processes: "at UNIXNANO", "socket PATH", "ok" or
// "reason TEXT", a line each.
const healthFile = "health"

// healthTemp starts the name of a verdict being written.
const healthTemp = healthFile + "."

// DaemonHealth is CheckQuick of t, and for a daemon's store the verdict
// of the last greeting of its daemon, kept in the directory for exec
// mode's processes, which live one session each: the daemon is greeted
// (Check, up to 2 seconds) when no verdict is kept for its socket, when
// the kept one is healthy and GreetInterval old, or unhealthy and
// RecheckInterval old; the new verdict is kept for the next session. A
// nil d keeps nothing and is CheckQuick.
func (d *LockDir) DaemonHealth(t Target) Health {
	h := CheckQuick(t)
	if !h.OK || t.Socket == "" || d == nil {
		return h
	}
	if kept, ok := d.keptHealth(t.Socket); ok {
		age := time.Since(kept.At)
		if age >= 0 && (kept.OK && age < GreetInterval || !kept.OK && age < RecheckInterval) {
			if !kept.OK {
				return kept
			}
			return h
		}
	}
	full := Check(t)
	d.keepHealth(t.Socket, full) // a verdict not kept is found again next time
	return full
}

// keptHealth reads the kept verdict for socket; ok is false when there
// is none, or it is for another socket or unreadable.
func (d *LockDir) keptHealth(socket string) (h Health, ok bool) {
	b, err := d.readFile(healthFile)
	if err != nil {
		return Health{}, false
	}
	return parseKeptHealth(b, socket)
}

// parseKeptHealth reads b, a kept verdict, for socket: ok is false when
// it is not whole (no time, no socket, or not exactly one of "ok" and a
// reason) or is another socket's. The reason is cleaned as a drain's
// (CleanReason).
func parseKeptHealth(b []byte, socket string) (h Health, ok bool) {
	var at int64
	var err error
	var sock string
	h.OK = false
	for _, line := range strings.Split(string(b), "\n") {
		name, value, _ := strings.Cut(line, " ")
		switch name {
		case "at":
			at, err = strconv.ParseInt(value, 10, 64)
			if err != nil {
				return Health{}, false
			}
		case "socket":
			sock = value
		case "ok":
			h.OK = true
		case "reason":
			// The account may write this file: a refused client is
			// shown one line of text, as for a drain's reason.
			h.Reason = CleanReason(value)
		}
	}
	if at == 0 || sock != socket || h.OK == (h.Reason != "") {
		return Health{}, false
	}
	h.At = time.Unix(0, at)
	return h, true
}

// keepHealth writes h as the kept verdict for socket, through a file of
// its own renamed into place, so that a reader sees one verdict whole.
// The file is locked while it is written: one whose writer died before
// the rename is swept by the next writer, as holders' files are.
func (d *LockDir) keepHealth(socket string, h Health) error {
	d.scan(healthTemp) // sweeps the ones nobody holds; errors: swept next time
	verdict := "ok"
	if !h.OK {
		verdict = "reason " + strings.NewReplacer("\n", " ", "\r", " ").Replace(h.Reason)
	}
	content := fmt.Sprintf("at %d\nsocket %s\n%s\n", h.At.UnixNano(), socket, verdict)
	temp := healthTemp + uniqueID()
	fd, err := d.openRegular(temp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return d.errorf(temp, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		unix.Unlinkat(d.fd, temp, 0)
		return d.errorf(temp, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.Path, temp))
	defer f.Close() // after the rename: the lock keeps the sweep off it till then
	if _, err := f.WriteString(content); err != nil {
		unix.Unlinkat(d.fd, temp, 0)
		return errorf("%w", err)
	}
	if err := unix.Renameat(d.fd, temp, d.fd, healthFile); err != nil {
		unix.Unlinkat(d.fd, temp, 0)
		return d.errorf(healthFile, err)
	}
	return nil
}
