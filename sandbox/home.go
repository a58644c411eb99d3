package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// HomeError reports that the build account could change its own access.
type HomeError struct {
	// Path is the file or directory at fault.
	Path string
	// Problem says what is wrong with it.
	Problem string
	// Fix is the command that fixes it.
	Fix string
}

func (e *HomeError) Error() string {
	return fmt.Sprintf("sandbox: %s %s; fix: %s", e.Path, e.Problem, e.Fix)
}

// CheckReadOnlyHome checks, as the calling process, that the account with
// home directory home cannot change how it is let in: home, ~/.ssh and
// ~/.ssh/authorized_keys (and authorized_keys2) are not writable, and
// there is no ~/.ssh/rc for sshd to run. It must run as the account
// itself, as exec mode does: writability is checked with access(2) for
// the real user. A missing ~/.ssh or authorized_keys is fine as long as
// the directory above it is not writable.
func CheckReadOnlyHome(name, home string) error {
	if home == "" || home == "/" {
		return nil
	}
	fix := "chmod -R a-w ~" + name
	ssh := filepath.Join(home, ".ssh")
	for _, p := range []string{home, ssh, filepath.Join(ssh, "authorized_keys"), filepath.Join(ssh, "authorized_keys2")} {
		writable, err := isWritable(p)
		if err != nil {
			return fmt.Errorf("sandbox: checking %s: %w", p, err)
		}
		if writable {
			return &HomeError{Path: p, Problem: "is writable by " + name + ", who could then change their own access", Fix: fix}
		}
	}
	rc := filepath.Join(ssh, "rc")
	if _, err := os.Lstat(rc); err == nil {
		return &HomeError{Path: rc, Problem: "exists, and sshd would run it before every command", Fix: "rm " + rc}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sandbox: checking %s: %w", rc, err)
	}
	return nil
}

// isWritable reports whether the real user may write p. A missing p is
// not writable.
func isWritable(p string) (bool, error) {
	err := unix.Access(p, unix.W_OK)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EROFS), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, err
}
