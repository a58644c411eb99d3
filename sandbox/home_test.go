package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestMain lets the test binary stand in for nixgate when HomeProblemsAs
// runs it as HomeCheckCommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HomeCheckCommand {
		os.Exit(HomeCheckMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 {
		if code, ok := selfTestMain(os.Args[1:]); ok {
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

// writableHome returns a home that the calling process may write (its
// own, or root's), with ~/.ssh, authorized_keys and a ~/.ssh/rc.
func writableHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	ssh := filepath.Join(home, ".ssh")
	if err := os.Mkdir(ssh, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ssh, "authorized_keys"), nil, 0o600)
	os.WriteFile(filepath.Join(ssh, "rc"), nil, 0o400)
	return home
}

func TestHomeProblems(t *testing.T) {
	home := writableHome(t)
	ssh := filepath.Join(home, ".ssh")
	problems, err := HomeProblems("builder", home)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range problems {
		paths = append(paths, p.Path)
	}
	// authorized_keys2 is missing: fine, as ~/.ssh is reported.
	want := []string{home, ssh, filepath.Join(ssh, "authorized_keys"), filepath.Join(ssh, "rc")}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("HomeProblems = %q; want %q", paths, want)
	}
	var he *HomeError
	if err := CheckReadOnlyHome("builder", home); !errors.As(err, &he) || he.Path != home || he.Fix != "chmod -R a-w ~builder" || !strings.HasPrefix(err.Error(), "sandbox: "+home+" is writable") {
		t.Errorf("CheckReadOnlyHome = %v; want the home first, fixed with chmod -R a-w ~builder", err)
	}
	for _, h := range []string{"", "/"} {
		if problems, err := HomeProblems("builder", h); problems != nil || err != nil {
			t.Errorf("HomeProblems(home %q) = %v, %v; want nothing checked", h, problems, err)
		}
	}
}

// TestHomeProblemsAs: run as the account in a child (nixgate check as
// root), the check finds what it finds in this process.
func TestHomeProblemsAs(t *testing.T) {
	home := writableHome(t)
	a := Account{Name: "builder", Home: home}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), NoSetGroups: os.Getuid() != 0}
	want, err := HomeProblems(a.Name, a.Home)
	if err != nil {
		t.Fatal(err)
	}
	got, err := HomeProblemsAs(a, cred)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("HomeProblemsAs = %v, %v; want %v", got, err, want)
	}
	// A home the child cannot check: its error comes back.
	long := "/" + strings.Repeat("x/", 3000)
	if _, err := HomeProblemsAs(Account{Name: "builder", Home: long}, cred); err == nil || !strings.Contains(err.Error(), "file name too long") {
		t.Errorf("HomeProblemsAs(a home too long to check) = %v; want the child's error", err)
	}
}

func TestHomeMustBeReadOnly(t *testing.T) {
	for mode, want := range map[policy.SandboxMode]bool{"": true, policy.SandboxDirect: true, policy.SandboxProot: true, policy.SandboxUserNS: false, policy.SandboxNixUserChroot: false} {
		if got := HomeMustBeReadOnly(mode); got != want {
			t.Errorf("HomeMustBeReadOnly(%q) = %v; want %v", mode, got, want)
		}
	}
}
