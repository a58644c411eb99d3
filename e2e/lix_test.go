package e2e

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLixRevokedDuringDialogue: a Lix 2.93.0 session that sent "bash"
// before its key was revoked could still run nix-store --serve --write
// afterwards: the command it sent on stdin was decided by the
// configuration captured before the dialogue.
func TestLixRevokedDuringDialogue(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		cmd := exec.Command("ssh", "-F", b.sshConfig, b.Host("build"), "--", "bash")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		io.WriteString(stdin, "echo started\n")
		out := bufio.NewReader(stdout)
		if line, err := out.ReadString('\n'); line != "started\n" {
			t.Fatalf("Lix start-up: %q, %v, stderr %q", line, err, stderr.String())
		}
		done := make(chan error, 1)
		go func() {
			rest, _ := io.ReadAll(out)
			if len(rest) > 0 {
				t.Errorf("stdout after the dialogue: %q; want nothing", rest)
			}
			done <- cmd.Wait()
		}()

		// The build key is revoked while the dialogue is under way.
		cfg := readFile(t, b.config)
		i := strings.Index(cfg, "\n[[keys]]\nname = \"build\"")
		j := strings.Index(cfg, "\n[[keys]]\nname = \"substitute\"")
		if i < 0 || j < i {
			t.Fatalf("unexpected config layout:\n%s", cfg)
		}
		writeFile(t, b.config, cfg[:i]+cfg[j:], 0o644)
		if b.mode == modeServe {
			b.signalServe(t, syscall.SIGHUP)
			b.waitReload(t)
		}
		io.WriteString(stdin, "exec nix-store --serve --write\n")
		select {
		case err := <-done:
			if err == nil || !strings.Contains(stderr.String(), `nixgate: refused: key "build" is not configured`) {
				t.Fatalf("Lix command after the key was revoked: %v, stderr %q; want refused", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the Lix session did not end")
		}
		if rec := findRecord(t, b, absentWait, func(r map[string]any) bool { return r["msg"] == "allowed" && r["key"] == "build" }); rec != nil {
			t.Errorf("the log records an allowed session: %v", rec)
		}
	})
}
