package e2e

// Harness: what every end-to-end test needs, whatever it drives: the
// nixgate binary, programs run bounded in a process group of their own,
// processes, ports, files, and nixgate check's findings. The builder and
// its clients are in builder*_test.go, the audit log in
// harness_log_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// TestMain builds nixgate once, with the race detector when the tests
// have it, for every test of the package.
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

// String shows the whole result, for a failing test.
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

// waitCmd waits, up to a bound, for cmd to exit.
func waitCmd(t testing.TB, cmd *exec.Cmd, within time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("%q did not finish within %v", cmd.Args, within)
		return nil
	}
}

// accountProcesses lists the pids of processes running as uid.
func accountProcesses(uid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name()), &st) == nil && int(st.Uid) == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// vmRSS returns the resident memory (VmRSS) of pid in bytes; 0 when the
// process is gone.
func vmRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// ms is d in milliseconds, as the measurements report it.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// freePort returns a TCP port that was free on every address a moment
// ago. It is taken below the kernel's ephemeral range, so no outgoing
// connection (of this test or of any program running beside it) can
// take it as its local port between now and the bind of the server the
// port is for; a counter keeps the ports of one test run apart.
func freePort(t testing.TB) int {
	t.Helper()
	low, span := ephemeralLow(), 8000
	for i := 0; i < span; i++ {
		port := low - span + int(nextPort.Add(1)%uint32(span))
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatalf("no free port in [%d, %d)", low-span, low)
	return 0
}

// nextPort is the last port offset freePort tried; it starts at a
// place of this process's own, so two test binaries rarely walk the
// same ports.
var nextPort = func() *atomic.Uint32 {
	var n atomic.Uint32
	n.Store(uint32(os.Getpid() * 97))
	return &n
}()

// ephemeralLow is the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 10000 {
				return n
			}
		}
	}
	return 32768
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

// waitSocket waits, up to 5 s, for path (a program's Unix socket) to
// appear.
func waitSocket(t testing.TB, path string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

// writeFile writes content to path with mode (whatever the umask),
// making its directory.
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

// readFile returns the content of path.
func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// copyFile copies from to to, with mode.
func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data), mode)
}

// repoFile returns the path of a file of the repository.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tempDir is a directory others may enter, removed when the test ends.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nixgate-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	return dir
}

// lastLine returns the last line of s, such as the store path nix-build
// prints last.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// checkResult is one finding of nixgate check --json.
type checkResult struct {
	Name, Status, Message, Fix string
}

// runCheck runs nixgate check with args and returns its findings and
// exit status.
func runCheck(t *testing.T, args ...string) ([]checkResult, int) {
	t.Helper()
	r := run(t, nil, nil, append([]string{nixgateBin, "check", "--json"}, args...)...)
	var rs []checkResult
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		t.Fatalf("nixgate check output is not JSON: %v\n%s", err, r)
	}
	return rs, r.code
}

// finding fails the test unless rs has a finding named name with status
// whose message contains msgPart and whose fix contains fixPart.
func finding(t *testing.T, rs []checkResult, name, status, msgPart, fixPart string) {
	t.Helper()
	for _, r := range rs {
		if r.Name == name && r.Status == status && strings.Contains(r.Message, msgPart) && strings.Contains(r.Fix, fixPart) {
			return
		}
	}
	t.Fatalf("no %s finding %q with %q / fix %q in:\n%+v", status, name, msgPart, fixPart, rs)
}

// noFailures fails the test when check failed anything or exited
// non-zero.
func noFailures(t *testing.T, rs []checkResult, code int) {
	t.Helper()
	for _, r := range rs {
		if r.Status == "fail" {
			t.Fatalf("check failed on a correct setup: %+v\nall: %+v", r, rs)
		}
	}
	if code != 0 {
		t.Fatalf("check exited %d on a correct setup: %+v", code, rs)
	}
}
