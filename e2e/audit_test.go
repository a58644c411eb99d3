package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// auditFindings runs ssh-audit (Debian's, 2.5) against a port and returns
// its [fail] and [warn] lines.
func auditFindings(t *testing.T, port int) (fails, warns []string) {
	t.Helper()
	r := run(t, nil, nil, "ssh-audit", "-n", "-p", fmt.Sprint(port), "127.0.0.1")
	if !strings.Contains(r.stdout, "# key exchange algorithms") {
		t.Fatalf("ssh-audit did not audit: %s", r)
	}
	for _, l := range strings.Split(r.stdout, "\n") {
		switch {
		case strings.Contains(l, "[fail]"):
			fails = append(fails, strings.TrimSpace(l))
		case strings.Contains(l, "[warn]"):
			warns = append(warns, strings.TrimSpace(l))
		}
	}
	return fails, warns
}

// TestSSHAudit: ssh-audit finds nothing to fail or warn about in nixgate
// serve but algorithms newer than itself, where it finds failures in
// OpenSSH 9.2's defaults on the same machine (the control).
func TestSSHAudit(t *testing.T) {
	requireTools(t)
	if _, err := exec.LookPath("ssh-audit"); err != nil {
		t.Fatal("ssh-audit is missing (package ssh-audit)")
	}
	ng := newBuilder(t, modeServe)
	fails, warns := auditFindings(t, ng.port)
	if len(fails) > 0 {
		t.Errorf("ssh-audit fails nixgate on:\n%s", strings.Join(fails, "\n"))
	}
	for _, w := range warns {
		if !strings.Contains(w, "unknown algorithm") {
			t.Errorf("ssh-audit warns about nixgate: %s", w)
		}
	}
	t.Logf("nixgate: %d [fail], %d [warn] (unknown algorithms)", len(fails), len(warns))

	ossh := newBuilder(t, modeExec)
	ofails, owarns := auditFindings(t, ossh.port)
	t.Logf("OpenSSH 9.2 defaults: %d [fail], %d [warn]", len(ofails), len(owarns))
	if len(ofails) == 0 {
		t.Error("ssh-audit found nothing wrong with OpenSSH's defaults either: is it auditing at all?")
	}
}
