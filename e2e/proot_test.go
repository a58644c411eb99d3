package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestProotBuildKeysNeedAcknowledgement: proot cannot contain code of the
// account's own uid (a build killed its tracer and wrote the keys file),
// so without [sandbox] proot_build_keys a build key is refused in proot
// mode, in one line that says why, while substitute keys keep working;
// serve says so at start-up (here: on reload) and check fails.
func TestProotBuildKeysNeedAcknowledgement(t *testing.T) {
	for _, transport := range []string{modeExec, modeServe} {
		t.Run(transport, func(t *testing.T) {
			b := newBuilderIn(t, transport, "proot")
			acked := readFile(t, b.config)
			writeFile(t, b.config, strings.Replace(acked, "proot_build_keys = \"same-uid-not-contained\"\n", "", 1), 0o644)
			if transport == modeServe {
				b.signalServe(t, syscall.SIGHUP)
				waitLog(t, b, "proot: build keys refused", nil)
				if s := readFile(t, b.serveLog); !strings.Contains(s, "build keys are refused in sandbox.mode proot") {
					t.Errorf("serve said nothing about proot on its stderr:\n%s", s)
				}
			}
			r := b.ssh(t, "build", "nix-store --serve --write", nil)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code == 0 || r.stdout != "" || len(lines) != 1 || !strings.Contains(r.stderr, "nixgate: refused: build keys are refused in sandbox.mode proot: proot cannot contain code that runs as the build account's own uid") || !strings.Contains(r.stderr, `proot_build_keys = "same-uid-not-contained"`) {
				t.Fatalf("build key under proot without the acknowledgement: %s", r)
			}
			b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))

			rs, code := runCheck(t, "--config", b.config, "--mode", transport)
			finding(t, rs, "proot", "fail", "build keys are refused in sandbox.mode proot", "proot_build_keys")
			if code != 1 {
				t.Errorf("check exit %d; want 1", code)
			}
			writeFile(t, b.config, acked, 0o644)
			rs, _ = runCheck(t, "--config", b.config, "--mode", transport)
			finding(t, rs, "proot", "warn", "proot cannot contain code", "userns")
		})
	}
}

// TestExecProotChecksReadOnlyHome: exec mode skipped its read-only-home
// check in every sandbox mode, so under proot (which a build escapes) a
// build could write ~/.ssh/authorized_keys.
func TestExecProotChecksReadOnlyHome(t *testing.T) {
	b := newBuilderIn(t, modeExec, "proot")
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	mustRun(t, nil, "chmod", "u+w", b.account.home)
	defer mustRun(t, nil, "chmod", "a-w", b.account.home)
	r := b.ssh(t, "build", "nix-store --serve --write", nil)
	if r.code == 0 || !strings.Contains(r.stderr, "nixgate: refused: "+b.account.home+" is writable by "+b.account.name) {
		t.Fatalf("exec under proot with a writable home: %s", r)
	}
}

// TestProotBinaryInHome: proot mode shows Nix an empty home; nixgate
// installed where the README puts it without root, ~/.local/bin, is
// shown there too, so its helper runs (it was "not found" before).
func TestProotBinaryInHome(t *testing.T) {
	b := newBuilderWith(t, modeServe, builderOptions{sandbox: "proot", binInHome: true})
	if !strings.HasPrefix(b.bin, b.account.home) {
		t.Fatalf("serve runs %s, not a nixgate in the home", b.bin)
	}
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))

	// check, run by the account itself on a configuration of its own
	// (as a builder without root has), reports its own state_dir in
	// proot mode with a fix it can apply (not chown root: alone).
	own := filepath.Join(b.root, "own")
	state := filepath.Join(own, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(own, "nixgate.toml")
	writeFile(t, config, strings.Replace(readFile(t, b.config), filepath.Join(b.root, "serve-state"), state, 1), 0o644)
	b.account.chown(t, state)
	r := run(t, nil, nil, "setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--",
		"env", "HOME="+b.account.home, b.bin, "check", "--json", "--config", config, "--mode", "serve")
	var rs []checkResult
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		t.Fatalf("check as %s: %v\n%s", b.account.name, err, r)
	}
	finding(t, rs, "files", "fail", "the drain state "+filepath.Join(state, "drain")+" can be changed by "+b.account.name, `set sandbox.mode = "userns"`)
}
