package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Roles, caps and accounting that hold whatever the client sends: raw
// clients sending what Nix reads otherwise than a filter that looks at
// the raw bytes would, in both modes, against Nix 2.8's root daemon.

// TestNonCanonicalBuildRefused: before worker protocol 1.30 Nix cleans a
// BuildPaths path before it reads it, so "/nix/store/…-x.drv/" builds
// the derivation (the control shows it, without nixgate). Through
// nixgate it is refused for a build key and a substitute key alike — a
// filter that judged the raw string saw nothing to build, gave a
// substitute key a build, and let a build key's take no slot and go
// uncounted — the session stays in step, and the build never runs.
func TestNonCanonicalBuildRefused(t *testing.T) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) {
			b, d := newDaemonBuilder(t, mode)
			if mode == modeServe {
				b.waitHealthy(t, 1)
			}
			dir := filepath.Dir(d.socket)
			const version = 1<<8 | 28
			instantiate := func(name string) (drv, built string) {
				nonce := fmt.Sprint(name, "-", mode, "-", time.Now().UnixNano())
				built = filepath.Join(dir, "built-"+nonce)
				return d.instantiateScript(t, nonce, "echo ran > "+built+"; echo "+nonce+" > $out"), built
			}

			// The control: Nix builds the derivation the path names.
			drv, built := instantiate("control")
			c := d.stdioWorker(t, b.account.uid, b.account.gid, version)
			if msg, failed := c.call(wop(9).strs(drv + "/").u64(0).b); failed || c.u64() != 1 {
				t.Fatalf("control: BuildPaths of %s/ without nixgate: %q", drv, msg)
			}
			c.close()
			if _, err := os.Stat(built); err != nil {
				t.Fatalf("control: without nixgate, BuildPaths of %s/ did not build it: the finding is not reproduced", drv)
			}

			for _, key := range []string{"build", "substitute"} {
				drv, built := instantiate(key)
				start := time.Now()
				c := b.dialWorker(t, key, version)
				msg, failed := c.call(wop(9).strs(drv + "/").u64(0).b)
				if !failed || !strings.Contains(msg, "BuildPaths refused") {
					t.Errorf("key %s: BuildPaths of %s/ got %q (error %v); want nixgate's refusal", key, drv, msg, failed)
				}
				if ok, err := c.isValid(drv); err != nil || !ok {
					t.Errorf("key %s: IsValidPath after the refusal = %v, %v; want the session in step", key, ok, err)
				}
				c.close()
				if _, err := os.Stat(built); err == nil {
					t.Errorf("key %s: through nixgate the derivation of %s/ was built", key, drv)
				}
				rec := findRecord(t, b, logWait, func(r map[string]any) bool {
					return r["msg"] == "session ended" && r["key"] == key && !recordTime(r).Before(start) &&
						fmt.Sprint(r["refused_ops"]) == "[BuildPaths]"
				})
				if rec == nil {
					t.Errorf("key %s: no session record names the refused BuildPaths:\n%s", key, readFile(t, b.log))
				}
			}
		})
	}
}

// TestRepeatsCleared: the serve protocol's build options carry repeats,
// which Nix 2.12 and earlier honour with a fresh timeout each round (the
// control builds locally with repeat = 2 and shows the rounds). A client
// that asks an ssh:// builder for 5 gets one round through nixgate, in
// both modes, with the key's build_timeout in force.
func TestRepeatsCleared(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		b.limitBuildKey(t, "build_timeout = \"60s\"\n")
		control := b.nix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint("repeat-control-", time.Now().UnixNano())), "--no-out-link", "--option", "repeat", "2")
		if control.code != 0 || !strings.Contains(control.stderr, "round 2/3") {
			t.Fatalf("control: a local build with repeat = 2 shows no second round: the finding is not reproduced: %s", control)
		}
		r := b.nix(t, "nix-build", writeDerivation(t, b.root, fmt.Sprint("repeat-", time.Now().UnixNano())), "--no-out-link", "-j0",
			"--option", "repeat", "5", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
		if r.code != 0 {
			t.Fatalf("a remote build asking for 5 repeats: %s", r)
		}
		if strings.Contains(r.stderr, "round 2/") {
			t.Errorf("the builder built more than one round: %s", r.stderr)
		}
	})
}

// TestPipelinedBuildTime: a build's time counts until Nix answers it,
// though the client sends its next operation right behind the build (a
// filter that stopped the clock at the next operation counted
// nanoseconds).
func TestPipelinedBuildTime(t *testing.T) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) {
			b, d := newDaemonBuilder(t, mode)
			if mode == modeServe {
				b.waitHealthy(t, 1)
			}
			const secs = 3
			nonce := fmt.Sprint("pipelined-", mode, "-", time.Now().UnixNano())
			drv := d.instantiateScript(t, nonce, fmt.Sprintf("/bin/sleep %d; echo %s > $out", secs, nonce))
			start := time.Now()
			c := b.dialWorker(t, "build", 1<<8|34)
			c.send(append(wop(9).strs(drv+"!out").u64(0).b, wop(1).str(drv).b...))
			if msg, failed := c.stderrUntilLast(); failed || c.u64() != 1 {
				t.Fatalf("the build: %q", msg)
			}
			if msg, failed := c.stderrUntilLast(); failed || c.u64() != 1 {
				t.Fatalf("IsValidPath after the build: %q", msg)
			}
			c.close()
			rec := findRecord(t, b, logWait, func(r map[string]any) bool {
				return r["msg"] == "session ended" && r["key"] == "build" && !recordTime(r).Before(start)
			})
			if rec == nil {
				t.Fatalf("no session record:\n%s", readFile(t, b.log))
			}
			took, err := time.ParseDuration(fmt.Sprint(rec["build_time"]))
			if err != nil || took < secs*time.Second {
				t.Errorf("the record's build time is %v (%v); want at least the %d s the build slept", rec["build_time"], err, secs)
			}
		})
	}
}
