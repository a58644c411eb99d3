package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRun runs nixgate as `make run` does (serve --embedded, here on
// a port of its own) in a directory with nothing in it, then runs the
// command it prints, exactly as printed, through a shell: as root and as
// an ordinary user. The root run listens on both 0.0.0.0 and [::] (the
// README's listen, which failed with "address already in use" while Go
// opened both dual-stack) and is reached through 127.0.0.1 and ::1.
func TestMakeRun(t *testing.T) {
	requireTools(t)
	t.Run("root", func(t *testing.T) {
		dir := tempDir(t)
		port := freePort(t)
		hint := startEmbedded(t, dir, nil, "--listen", fmt.Sprintf("0.0.0.0:%d", port), "--listen", fmt.Sprintf("[::]:%d", port))
		if !strings.Contains(hint.notice, "client key was generated and authorized (role build)") {
			t.Errorf("no word of the generated client key on stderr:\n%s", hint.notice)
		}
		if want := fmt.Sprintf("ready on 127.0.0.1:%d (listening on 0.0.0.0:%d, [::]:%d)", port, port, port); !strings.Contains(hint.ready, want) {
			t.Errorf("ready line %q lacks %q", hint.ready, want)
		}
		if r := run(t, nil, nil, "sh", "-c", hint.command); r.code != 0 {
			t.Fatalf("the printed command %q failed: %s", hint.command, r)
		}
		v6 := strings.Replace(hint.command, "@127.0.0.1", "@::1", 1)
		if r := run(t, nil, nil, "sh", "-c", v6); r.code != 0 {
			t.Fatalf("the printed command through ::1, %q, failed: %s", v6, r)
		}
	})
	t.Run("user", func(t *testing.T) {
		dir := tempDir(t)
		a := newBuildAccount(t, filepath.Join(dir, "home"))
		work := filepath.Join(dir, "src")
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatal(err)
		}
		a.chown(t, dir)
		as := []string{"setpriv", "--reuid", fmt.Sprint(a.uid), "--regid", fmt.Sprint(a.gid), "--init-groups", "--",
			"env", "-i", "HOME=" + a.home, "USER=" + a.name, "LOGNAME=" + a.name, "PATH=/usr/bin:/bin"}
		hint := startEmbedded(t, work, as, "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		if !strings.Contains(hint.command, "ssh://"+a.name+"@127.0.0.1") {
			t.Errorf("the printed command %q does not log in as %s", hint.command, a.name)
		}
		if r := run(t, nil, nil, append(as, "sh", "-c", hint.command)...); r.code != 0 {
			t.Fatalf("the printed command %q, as %s, failed: %s", hint.command, a.name, r)
		}
	})
}

// embeddedHint is what `nixgate serve --embedded` said on start.
type embeddedHint struct {
	notice  string // every line before the ready line
	ready   string // "nixgate serve: ready on …; try:"
	command string // the line after it, without its indent
}

// startEmbedded starts `nixgate serve --embedded` in dir behind the
// wrapper argv, stops it by PID when the test ends, and returns what it
// printed up to the command to try.
func startEmbedded(t testing.TB, dir string, wrapper []string, args ...string) embeddedHint {
	t.Helper()
	argv := append(append(append([]string{}, wrapper...), nixgateBin, "serve", "--embedded"), args...)
	return startHinted(t, dir, argv)
}

// startHinted starts argv, which runs `nixgate serve --embedded` (itself,
// or through make run), in dir; stops its process group, by PID, when the
// test ends; and returns what it printed (stdout and stderr) up to the
// command to try.
func startHinted(t testing.TB, dir string, argv []string) embeddedHint {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for l := range lines {
			seen = append(seen, l)
		}
		cmd.Wait()
		r.Close()
		if t.Failed() {
			t.Logf("%q printed:\n%s", argv, strings.Join(seen, "\n"))
		}
	})
	var h embeddedHint
	timeout := time.After(commandTimeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%q exited before printing a command:\n%s", argv, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			switch {
			case strings.HasPrefix(l, "{"): // the JSON log
			case h.ready != "":
				h.command = strings.TrimSpace(l)
				go func() {
					for range lines { // keep the pipe drained
					}
				}()
				return h
			case strings.Contains(l, "ready on"):
				h.ready = l
			default:
				h.notice += l + "\n"
			}
		case <-timeout:
			t.Fatalf("%q printed no command within %v:\n%s", argv, commandTimeout, strings.Join(seen, "\n"))
		}
	}
}
