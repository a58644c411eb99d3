package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/policy"
)

// HomeError reports that the build account could change its own access.
// Its text is the line a client sees; CheckReadOnlyHome returns it inside
// sandbox's policy.Error ("sandbox: " and the line).
type HomeError struct {
	// Path is the file or directory at fault.
	Path string
	// Problem says what is wrong with it.
	Problem string
	// Fix is the command that fixes it.
	Fix string
}

func (e *HomeError) Error() string {
	return fmt.Sprintf("%s %s; fix: %s", e.Path, e.Problem, e.Fix)
}

// HomeMustBeReadOnly reports whether, in sandbox mode, the account's home
// must itself be read-only for the account (see CheckReadOnlyHome): in
// direct mode (or none named) and in proot mode, where a build can kill
// its tracer, Nix and its builds run as the account with the home as it
// is. userns and nix-user-chroot mount it read-only for them.
func HomeMustBeReadOnly(mode policy.SandboxMode) bool {
	return mode == policy.SandboxDirect || mode == policy.SandboxProot || mode == ""
}

// AuthorizedKeysFiles are the files in home that OpenSSH's sshd reads
// an account's keys from by default.
func AuthorizedKeysFiles(home string) []string {
	ssh := filepath.Join(home, ".ssh")
	return []string{filepath.Join(ssh, "authorized_keys"), filepath.Join(ssh, "authorized_keys2")}
}

// CheckReadOnlyHome checks, as the calling process, that the account with
// home directory home cannot change how it is let in; it returns the
// first problem HomeProblems finds, wrapping a *HomeError. It must run as the
// account itself, as exec mode does.
func CheckReadOnlyHome(name, home string) error {
	problems, err := HomeProblems(name, home)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return errorf("%w", problems[0])
	}
	return nil
}

// HomeProblems returns every way the account called name, with home
// directory home, could change how it is let in: home, ~/.ssh and the
// AuthorizedKeysFiles writable, or a ~/.ssh/rc for sshd to run. It checks
// as the calling process, which must be the account: writability is
// checked with access(2) for the real user. A missing ~/.ssh or
// authorized_keys is fine as long as the directory above it is not
// writable. None (nil) means the home is safe; a home of "" or "/" is
// not checked.
func HomeProblems(name, home string) ([]*HomeError, error) {
	if home == "" || home == "/" {
		return nil, nil
	}
	var problems []*HomeError
	fix := "chmod -R a-w ~" + name
	ssh := filepath.Join(home, ".ssh")
	for _, p := range append([]string{home, ssh}, AuthorizedKeysFiles(home)...) {
		writable, err := isWritable(p)
		if err != nil {
			return nil, errorf("checking %s: %w", p, err)
		}
		if writable {
			problems = append(problems, &HomeError{Path: p, Problem: "is writable by " + name + ", who could then change their own access", Fix: fix})
		}
	}
	rc := filepath.Join(ssh, "rc")
	if _, err := os.Lstat(rc); err == nil {
		problems = append(problems, &HomeError{Path: rc, Problem: "exists, and sshd would run it before every command", Fix: "rm " + rc})
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, errorf("checking %s: %w", rc, err)
	}
	return problems, nil
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

// HomeCheckCommand is the hidden subcommand HomeProblemsAs runs nixgate
// as, as the account: access(2) answers only for the calling process's
// own user.
const HomeCheckCommand = "sandbox-check-home"

// HomeProblemsAs runs HomeProblems for account a as a: in this process
// when cred is nil (it is the account), otherwise in nixgate itself run
// as cred (HomeCheckCommand, through RunSelfAs). nixgate check uses it,
// so that it finds exactly what exec mode refuses.
func HomeProblemsAs(a Account, cred *syscall.Credential) ([]*HomeError, error) {
	if cred == nil {
		return HomeProblems(a.Name, a.Home)
	}
	out, err := RunSelfAs(cred, HomeCheckCommand, a.Name, a.Home)
	if err != nil {
		return nil, errorf("checking %s as %s: %w", a.Home, a.Name, err)
	}
	var problems []*HomeError
	if err := json.Unmarshal(out, &problems); err != nil {
		return nil, errorf("checking %s as %s: %w", a.Home, a.Name, err)
	}
	return problems, nil
}

// HomeCheckMain is HomeCheckCommand: it runs HomeProblems for the
// account NAME with home HOME (its two arguments) and prints what it
// found as JSON; exit status 1 and the error's line (policy.Line) on
// stderr when it could not check, which RunSelfAs returns as its error.
func HomeCheckMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "sandbox: usage: "+HomeCheckCommand+" NAME HOME")
		return 2
	}
	problems, err := HomeProblems(args[0], args[1])
	if err != nil {
		fmt.Fprintln(stderr, policy.Line(err))
		return 1
	}
	if problems == nil {
		problems = []*HomeError{}
	}
	json.NewEncoder(stdout).Encode(problems)
	return 0
}
