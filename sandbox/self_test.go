package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfTestMain is what the test binary does when RunSelfAs runs it with
// one of these commands, as nixgate's hidden subcommands would if the
// account bent them (by ptrace, which the account may do to its own
// processes): "self-test-linger PIDFILE" leaves a process behind that
// holds its stdout open (its pid in PIDFILE) and exits 0;
// "self-test-flood" writes 64 MiB to stdout; "self-test-sleep" sleeps a
// minute.
func selfTestMain(args []string) (int, bool) {
	switch args[0] {
	case "self-test-linger":
		self, _ := os.Executable()
		cmd := exec.Command(self, "self-test-sleep")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return 1, true
		}
		os.WriteFile(args[1], []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
		os.Stdout.WriteString("[]\n")
		return 0, true
	case "self-test-flood":
		b := bytes.Repeat([]byte("x"), 1<<20)
		for range 64 {
			if _, err := os.Stdout.Write(b); err != nil {
				return 1, true
			}
		}
		return 0, true
	case "self-test-sleep":
		time.Sleep(time.Minute)
		return 0, true
	}
	return 0, false
}

// TestRunSelfAsBounded: what RunSelfAs runs as the account cannot keep
// nixgate check (root) waiting past its time, by leaving a process
// behind that holds its output open, nor make it hold more than a small
// answer in memory.
func TestRunSelfAsBounded(t *testing.T) {
	pidFile := t.TempDir() + "/pid"
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(string(b)); err == nil && pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := RunSelfAs(nil, "self-test-linger", pidFile)
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Errorf("RunSelfAs(a child that leaves a process holding its output) still waiting after 20 s")
	}

	out, err := RunSelfAs(nil, "self-test-flood")
	if err == nil || len(out) > maxSelfOutput {
		t.Errorf("RunSelfAs(64 MiB of output) = %d bytes, %v; want an error and at most %d bytes", len(out), err, maxSelfOutput)
	} else if !strings.Contains(err.Error(), "more than") {
		t.Errorf("RunSelfAs(64 MiB of output): %v; want it to say the output was too long", err)
	}
}
