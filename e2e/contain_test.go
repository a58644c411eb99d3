package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeAttackDerivation writes a derivation whose build, with a build
// key, tries what issue 10 found a build could do where it runs as the
// account: read secrets the account owns, replace the nix-store later
// sessions run, change a store path it was given, reach the host's /tmp,
// signal a process of the account, leave a process behind; and records
// its capabilities. Its output lists what got through (the profile it
// writes is checked from outside: inside Nix's build sandbox a write to
// /nix/var lands in the build's own scratch root).
func writeAttackDerivation(t testing.TB, root, nonce string, secrets []string, marker string, victimPID int, sleepSecs string) string {
	t.Helper()
	dir := filepath.Join(root, "attack-"+nonce)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bb", "bin", "busybox"), string(bb), 0o755)
	var script strings.Builder
	fmt.Fprintf(&script, `b=${bb}/bin/busybox; : > $out; r() { echo "$1" >> $out; }
for f in %s; do if $b cat "$f" >/dev/null 2>&1; then r "read:$f"; fi; done
$b mkdir -p /nix/var/nix/profiles/default/bin 2>/dev/null && echo pwned > /nix/var/nix/profiles/default/bin/nix-store 2>/dev/null
if $b chmod u+w ${bb}/bin/busybox 2>/dev/null && echo >> ${bb}/bin/busybox 2>/dev/null; then r wrote:input; fi
if [ -e %s ]; then r saw:host-tmp; fi
if $b kill -0 %d 2>/dev/null; then r signal:account-process; fi
$b setsid $b sleep %s </dev/null >/dev/null 2>&1 &
$b grep -E '^(CapInh|CapEff|NoNewPrivs):' /proc/self/status >> $out
`, strings.Join(secrets, " "), marker, victimPID, sleepSecs)
	expr := fmt.Sprintf(`let bb = builtins.path { path = %s; name = "busybox"; }; in
derivation {
  name = "nixgate-attack-%s";
  system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" %q ];
}
`, filepath.Join(dir, "bb"), nonce, script.String())
	file := filepath.Join(dir, "attack.nix")
	writeFile(t, file, expr, 0o644)
	return file
}

// targets are what the containment tests try to reach from a build or
// from Nix: a secret of the account's in its home, nixgate's
// configuration and (serve) host key, a file in the host's /tmp, a
// process of the account outside the session (a tmux server, say), and
// a duration for the sleep a build leaves behind, to find it by.
type targets struct {
	nonce, marker, sleepSecs string
	secrets                  []string
	victim                   *exec.Cmd
}

func newTargets(t *testing.T, b *builder) targets {
	t.Helper()
	tg := targets{nonce: fmt.Sprint(time.Now().UnixNano())}
	secret := filepath.Join(b.account.home, "secret-"+tg.nonce)
	writeFile(t, secret, "the account's secret\n", 0o600)
	b.account.chown(t, secret)
	tg.secrets = []string{secret, b.config}
	if b.mode == modeServe {
		tg.secrets = append(tg.secrets, filepath.Join(b.root, "serve-state", "ssh_host_ed25519_key"))
	}
	tg.marker = filepath.Join(os.TempDir(), "nixgate-marker-"+tg.nonce)
	writeFile(t, tg.marker, "", 0o644)
	t.Cleanup(func() { os.Remove(tg.marker) })
	tg.victim = exec.Command("setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--clear-groups", "sleep", "600")
	tg.victim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := tg.victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.victim.Process.Kill(); tg.victim.Wait() })
	tg.sleepSecs = fmt.Sprint(800000 + time.Now().UnixNano()%199999)
	return tg
}

// outlived waits, up to 5 s, for the processes whose command line holds
// s to end, and returns those still running.
func outlived(s string) []int {
	var left []int
	for i := 0; i < 100; i++ {
		if left = processesWith(s); len(left) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return left
}

// processesWith returns the pids whose command line holds s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), s) {
			var pid int
			fmt.Sscan(e.Name(), &pid)
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestBuildContained runs the attacks of issue 10 as a remote build with
// a build key wherever Nix builds as the account — a builder without root
// in the userns and nix-user-chroot modes, and direct mode with a store
// of the account's own (local?root=) — through both transports: nothing
// gets through, and the builder keeps serving.
func TestBuildContained(t *testing.T) {
	for _, transport := range []string{modeExec, modeServe} {
		for _, sb := range []string{"direct", "userns", "nix-user-chroot"} {
			t.Run(transport+"/"+sb, func(t *testing.T) {
				var b *builder
				if sb == "direct" {
					b = newBuilder(t, transport)
				} else {
					b = newBuilderIn(t, transport, sb)
				}
				tg := newTargets(t, b)
				nonce, secrets, marker, victim, sleepSecs := tg.nonce, tg.secrets, tg.marker, tg.victim, tg.sleepSecs

				drv := writeAttackDerivation(t, b.root, nonce, secrets, marker, victim.Process.Pid, sleepSecs)
				r := b.mustNix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
				out := strings.TrimSpace(r.stdout)
				report := readStore(t, b.clientStoreDir, out)
				for _, line := range strings.Split(strings.TrimSpace(report), "\n") {
					key, value, _ := strings.Cut(line, ":")
					switch key {
					case "read", "wrote", "saw", "signal":
						t.Errorf("the build got through: %s", line)
					case "CapInh", "CapEff":
						if strings.Trim(strings.TrimSpace(value), "0") != "" {
							t.Errorf("the build runs with %s", line)
						}
					case "NoNewPrivs":
						if strings.TrimSpace(value) != "1" {
							t.Errorf("the build runs without no_new_privs: %s", line)
						}
					}
				}
				if !strings.Contains(report, "NoNewPrivs:") {
					t.Errorf("the build's report lacks its capabilities:\n%s", report)
				}
				if _, err := os.Lstat(filepath.Join(b.storeDir, "var", "nix", "profiles", "default", "bin", "nix-store")); err == nil {
					t.Errorf("the build wrote a nix-store into the account's profile")
				}
				if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
					t.Errorf("the account's process outside the session is gone: %v", err)
				}
				// What the build left running ends with it.
				if left := outlived("sleep " + sleepSecs); len(left) > 0 {
					t.Errorf("processes the build started outlived it: %v", left)
				}
				if sb == "direct" {
					// Direct mode runs the machine's Nix; bin_dirs are the
					// operator's (see the sandbox modes below).
					b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))
					return
				}
				// Had something of the account's planted a nix-store in its
				// profile, later sessions would still not run it: bin_dirs
				// inside the account's store are not trusted by default.
				planted := filepath.Join(b.storeDir, "var", "nix", "profiles", "default", "bin", "nix-store")
				// (Where it would leave its mark is a directory anyone may
				// write; not the builder's root, whose etc/ would then be
				// anyone's too, which nixgate refuses.)
				marks := filepath.Join(b.root, "marks")
				os.MkdirAll(marks, 0o755)
				os.Chmod(marks, 0o777)
				ran := filepath.Join(marks, "planted-ran-"+nonce)
				writeFile(t, planted, "#!/bin/sh\ntouch "+ran+"\nexec /usr/bin/nix-store \"$@\"\n", 0o755)
				b.account.chown(t, filepath.Join(b.storeDir, "var"))
				// And the builder still serves.
				b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("substitute"))
				if _, err := os.Lstat(ran); err == nil {
					t.Errorf("a session ran the nix-store planted in the account's profile")
				}
			})
		}
	}
}

// TestSandboxHidesFromNix puts a stand-in for nix-store, which reports
// what it can reach, where nixgate's sandbox runs Nix (a bin_dirs entry
// the operator named): it stands for Nix itself, or a build that got out
// of Nix's build sandbox. In the userns and nix-user-chroot modes it must
// see none of the account's secrets, nixgate's files, the host's /tmp or
// processes, hold no capability, and leave nothing running.
func TestSandboxHidesFromNix(t *testing.T) {
	for _, transport := range []string{modeExec, modeServe} {
		for _, sb := range []string{"userns", "nix-user-chroot"} {
			t.Run(transport+"/"+sb, func(t *testing.T) {
				b := newBuilderIn(t, transport, sb)
				tg := newTargets(t, b)
				secrets, marker, victim, sleepSecs := tg.secrets, tg.marker, tg.victim, tg.sleepSecs

				// The stand-in lives outside /tmp, which the sandbox
				// replaces, in a directory the account cannot write.
				bin, err := os.MkdirTemp("/var/tmp", "nixgate-standin-")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(bin) })
				os.Chmod(bin, 0o755)
				writeFile(t, filepath.Join(bin, "nix-store"), fmt.Sprintf(`#!/bin/sh
for f in %s; do if cat "$f" >/dev/null 2>&1; then echo "read:$f" >&2; fi; done
[ -e %s ] && echo saw:host-tmp >&2
kill -0 %d 2>/dev/null && echo signal:account-process >&2
touch %s/written 2>/dev/null && echo wrote:outside-store >&2
echo "processes:$(ls /proc | grep -c '^[0-9]')" >&2
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status | tr -d '\t' >&2
setsid sleep %s </dev/null >/dev/null 2>&1 &
echo probe-done >&2
`, strings.Join(secrets, " "), marker, victim.Process.Pid, bin, sleepSecs), 0o755)
				cfg := readFile(t, b.config)
				writeFile(t, b.config, strings.Replace(cfg, "[nix]\n", fmt.Sprintf("[nix]\nbin_dirs = [%q]\n", bin), 1), 0o644)
				if transport == modeServe {
					b.waitReload(t)
				}
				r := b.ssh(t, "build", "nix-store --serve --write", nil)
				if !strings.Contains(r.stderr, "probe-done") || !strings.Contains(r.stderr, "NoNewPrivs:") || !strings.Contains(r.stderr, "processes:") {
					t.Fatalf("the stand-in did not run, or did not report: %s", r)
				}
				t.Logf("the stand-in reported:\n%s", r.stderr)
				for _, line := range strings.Split(r.stderr, "\n") {
					key, value, _ := strings.Cut(strings.TrimSpace(line), ":")
					switch key {
					case "read", "saw", "signal", "wrote":
						t.Errorf("reached from inside nixgate's sandbox: %s", line)
					case "processes":
						if n, _ := strconv.Atoi(value); n > 8 {
							t.Errorf("%d processes visible inside the sandbox; want only the session's", n)
						}
					case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
						if strings.Trim(value, "0") != "" {
							t.Errorf("Nix would run with %s", line)
						}
					case "NoNewPrivs":
						if value != "1" {
							t.Errorf("Nix would run without no_new_privs: %s", line)
						}
					}
				}
				if left := outlived("sleep " + sleepSecs); len(left) > 0 {
					t.Errorf("a process of the session outlived it: %v", left)
				}
				if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
					t.Errorf("the account's process outside the session is gone: %v", err)
				}
			})
		}
	}
}
