package admission

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// DrainFileName is the name of the drain file in the state directory.
// While it exists the builder refuses new Nix sessions; its first line is
// the operator's reason, which may be empty.
const DrainFileName = "drain"

// maxReason bounds the reason shown to clients, in bytes.
const maxReason = 200

// DrainPath returns the drain file of stateDir.
func DrainPath(stateDir string) string { return filepath.Join(stateDir, DrainFileName) }

// Drain is the drain state of a builder. The zero Drain is a builder
// that takes sessions.
type Drain struct {
	// On reports whether new sessions are refused.
	On bool
	// Reason is the operator's reason, one line; empty when none was
	// given.
	Reason string
	// Since is when the drain began (the file's modification time); zero
	// when not draining.
	Since time.Time
}

// Message returns the line a refused client sees, without the
// "nixgate: " prefix: "builder draining", with the reason when there is
// one.
func (d Drain) Message() string {
	if d.Reason == "" {
		return "builder draining"
	}
	return "builder draining: " + d.Reason
}

// ReadDrain reads the drain state of stateDir. A missing file (or state
// directory) means not draining. Any other error is returned together
// with a Drain that is On, so that a caller that ignores the error fails
// closed: an operator who asked for a drain gets one.
func ReadDrain(stateDir string) (Drain, error) {
	p := DrainPath(stateDir)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return Drain{}, nil
	}
	if err != nil {
		return Drain{On: true, Reason: "cannot read the drain state in " + stateDir + " (run nixgate check)"}, errorf("%w", err)
	}
	defer f.Close()
	d := Drain{On: true}
	if fi, err := f.Stat(); err == nil {
		d.Since = fi.ModTime()
	}
	buf := make([]byte, 4*maxReason)
	n, _ := f.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	d.Reason = CleanReason(line)
	return d, nil
}

// Draining reports whether the builder of stateDir is draining and the
// line to refuse with, failing closed on an unreadable drain file. It is
// one open(2) when not draining: cheap enough for every session.
func Draining(stateDir string) (bool, string) {
	d, err := ReadDrain(stateDir)
	if err != nil {
		return true, d.Message()
	}
	return d.On, d.Message()
}

// SetDrain starts draining the builder of stateDir, with reason (made one
// line, at most 200 bytes; empty for none). It creates stateDir when
// missing and writes the file atomically, readable by every account, so
// that exec mode, which runs as the build account, can read it.
func SetDrain(stateDir, reason string) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return errorf("%w", err)
	}
	tmp, err := os.CreateTemp(stateDir, "."+DrainFileName+"-*")
	if err != nil {
		return errorf("%w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(CleanReason(reason) + "\n")
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), DrainPath(stateDir))
	}
	if err != nil {
		return errorf("%w", err)
	}
	return nil
}

// ClearDrain ends the drain of stateDir; the builder takes new sessions
// again. Clearing a builder that is not draining is not an error.
func ClearDrain(stateDir string) error {
	err := os.Remove(DrainPath(stateDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errorf("%w", err)
	}
	return nil
}

// CleanReason makes s fit on one line of a client's terminal: control
// characters become spaces, runs of space one, and it is cut to 200
// bytes on a rune boundary.
func CleanReason(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
	}), " ")
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
