package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// commandTimeout bounds every program the tests run.
const commandTimeout = 2 * time.Minute

// requireTools fails (under CI) or skips the test when what the
// end-to-end tests need is missing.
func requireTools(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to create the build account and run sshd)")
	}
	for _, p := range []string{"nix", "nix-store", "nix-build", "nix-copy-closure", "ssh", "/usr/sbin/sshd", "/bin/busybox", "useradd", "userdel"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "end-to-end test needs " + strings.Join(missing, ", ") + ": run `make test`, which installs nix-bin, openssh-server and busybox-static"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// nixgateBin is the nixgate binary built once for the package's tests;
// nixUserChroot is a link to it named nix-user-chroot, which makes it
// behave as nix-user-chroot.
var nixgateBin, nixUserChroot string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "nixgate-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		nixgateBin = filepath.Join(dir, "nixgate")
		nixUserChroot = filepath.Join(dir, "nix-user-chroot")
		if err := os.Symlink("nixgate", nixUserChroot); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		args := []string{"build", "-o", nixgateBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, "github.com/nixgate/nixgate/cmd/nixgate")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building nixgate:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// result is what a finished program left behind.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout: %q\nstderr: %s", r.code, r.err, r.stdout, r.stderr)
}

// run runs argv with env added to the environment and stdin as input,
// bounded by commandTimeout.
func run(t testing.TB, env []string, stdin []byte, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("%q timed out after %v\n%s", argv, commandTimeout, r)
	}
	return r
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t testing.TB, env []string, argv ...string) result {
	t.Helper()
	r := run(t, env, nil, argv...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("%q failed: %s", argv, r)
	}
	return r
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitPort waits until something accepts on addr, up to a bound.
func waitPort(t testing.TB, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 1500; i++ {
		select {
		case <-exited:
			t.Fatalf("server for %s exited before listening", addr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// clientKey is a client key pair on disk.
type clientKey struct {
	path      string // private key, 0600
	publicKey string // OpenSSH authorized_keys form, without comment
}

func newClientKey(t testing.TB, dir, name string) clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, string(pem.EncodeToMemory(block)), 0o600)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{path: path, publicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// buildAccount is a system account created for one test run.
type buildAccount struct {
	name     string
	home     string
	uid, gid int
}

// newBuildAccount creates a system account with a /bin/sh login shell and
// a password that is not locked (sshd with UsePAM no refuses a locked
// one), and removes it when the test ends.
func newBuildAccount(t testing.TB, home string) buildAccount {
	t.Helper()
	name := fmt.Sprintf("ngt%06d", time.Now().UnixNano()%1000000)
	mustRun(t, nil, "useradd", "--system", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", "--user-group", name)
	t.Cleanup(func() {
		// The account's last processes may still be exiting after their
		// client left: try for a while.
		var out []byte
		var err error
		for i := 0; i < 50; i++ {
			if out, err = exec.Command("userdel", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("userdel %s: %v: %s", name, err, out)
	})
	mustRun(t, nil, "usermod", "-p", "*", name)
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return buildAccount{name: name, home: home, uid: uid, gid: gid}
}

// chown gives path (recursively) to the account.
func (a buildAccount) chown(t testing.TB, path string) {
	t.Helper()
	mustRun(t, nil, "chown", "-R", fmt.Sprintf("%d:%d", a.uid, a.gid), path)
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func execLookPath(name string) (string, error) { return exec.LookPath(name) }

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func ioReadFull(r io.Reader, buf []byte) (int, error) { return io.ReadFull(r, buf) }
