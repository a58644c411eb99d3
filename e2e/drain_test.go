package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// drainRefusal finds b's log record of a session refused as draining.
func drainRefusal(t testing.TB, b *builder, reason string) map[string]any {
	t.Helper()
	return findRecord(t, b, logWait, func(r map[string]any) bool {
		return r["msg"] == "refused" && r["decision"] == "deny" && r["draining"] == true && r["reason"] == reason
	})
}

// TestDrainFailover has real Nix 2.8 build with two nixgate serve
// builders, A and B, in one machines list: with A draining, the build
// lands on B without a failed build (Nix's build hook says it cannot build
// on A and moves on); with A back and B draining, it lands on A. With only
// a draining builder, the build fails and the client sees the reason in
// one line.
func TestDrainFailover(t *testing.T) {
	a := newBuilder(t, modeServe)
	b := newBuilder(t, modeServe)
	// One ssh config for both: each builder's aliases, renamed.
	both := filepath.Join(a.root, "client", "ssh_config_both")
	cfg := strings.ReplaceAll(readFile(t, a.sshConfig), "Host builder-", "Host a-builder-") +
		strings.ReplaceAll(readFile(t, b.sshConfig), "Host builder-", "Host b-builder-")
	writeFile(t, both, cfg, 0o644)
	env := append(append([]string{}, a.clientEnv...), "NIX_SSHOPTS=-F "+both)
	machineA, machineB := "ssh://a-builder-build x86_64-linux - 1", "ssh://b-builder-build x86_64-linux - 1"
	build := func(machines string) (result, string) {
		t.Helper()
		nonce := fmt.Sprint(time.Now().UnixNano())
		r := run(t, env, nil, "nix-build", writeDerivation(t, a.root, nonce), "--no-out-link", "-j0", "--builders", machines)
		return r, strings.TrimSpace(r.stdout)
	}
	// Nix tries the first machine of the list first: put the draining
	// one first.
	for _, step := range []struct {
		name           string
		machines       string
		drain, undrain *builder
		on, off        *builder
		refused        string
	}{
		{"A draining", machineA + " ; " + machineB, a, nil, b, a, "ssh://a-builder-build"},
		{"A back, B draining", machineB + " ; " + machineA, b, a, a, b, "ssh://b-builder-build"},
	} {
		if step.undrain != nil {
			step.undrain.drain(t, "--off")
		}
		step.drain.drain(t, "--reason", "maintenance")
		r, out := build(step.machines)
		if r.code != 0 || !strings.HasPrefix(out, "/nix/store/") {
			t.Fatalf("%s: nix-build failed: %s", step.name, r)
		}
		if !inStore(step.on.storeDir, out) || inStore(step.off.storeDir, out) {
			t.Errorf("%s: %s in the working builder's store %v, in the draining one's %v; want only the working one", step.name, out, inStore(step.on.storeDir, out), inStore(step.off.storeDir, out))
		}
		if !strings.Contains(r.stderr, "cannot build on '"+step.refused+"'") || !strings.Contains(r.stderr, "nixgate: builder draining: maintenance") {
			t.Errorf("%s: Nix does not say it could not build on %s because it drains:\n%s", step.name, step.refused, r.stderr)
		}
		if drainRefusal(t, step.drain, "builder draining: maintenance") == nil {
			t.Errorf("%s: no log record of the refusal in %s:\n%s", step.name, step.drain.log, readFile(t, step.drain.log))
		}
	}
	if got := b.metric(t, "nixgate_draining"); got != 1 {
		t.Errorf("B's nixgate_draining = %v; want 1", got)
	}
	if got := a.metric(t, "nixgate_draining"); got != 0 {
		t.Errorf("A's nixgate_draining = %v; want 0", got)
	}

	// B alone, draining: the build fails with the reason, in one line.
	r, _ := build(machineB)
	if r.code == 0 {
		t.Fatalf("a build on a draining builder succeeded: %s", r)
	}
	lines := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "builder draining") {
			lines++
			if !strings.Contains(l, "nixgate: builder draining: maintenance") {
				t.Errorf("the refusal line %q lacks the reason", l)
			}
		}
	}
	if lines != 1 {
		t.Errorf("the client shows the drain in %d lines; want 1:\n%s", lines, r.stderr)
	}
	// check says so, with the fix.
	c := run(t, nil, nil, nixgateBin, "check", "--config", b.config)
	if !strings.Contains(c.stdout, "WARN  drain") || !strings.Contains(c.stdout, "fix: nixgate drain --off") {
		t.Errorf("nixgate check does not show the drain:\n%s", c.stdout)
	}
}

// TestDrainExec has exec mode honour the same drain file: refused with
// the line while draining, served again after drain --off.
func TestDrainExec(t *testing.T) {
	b := newBuilder(t, modeExec)
	ping := []string{"nix", "store", "ping", "--store", "ssh://" + b.Host("build")}
	b.drain(t, "--reason", "disk swap")
	r := b.nix(t, ping...)
	if r.code == 0 || strings.Count(r.stderr, "nixgate: builder draining: disk swap\n") != 1 {
		t.Errorf("nix store ping on a draining exec builder: %s; want a failure with the line once", r)
	}
	if drainRefusal(t, b, "builder draining: disk swap") == nil {
		t.Errorf("no log record of the refusal:\n%s", readFile(t, b.log))
	}
	b.drain(t, "--off")
	b.mustNix(t, ping...)
}
