package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var sandboxModes = []string{"userns", "nix-user-chroot", "proot"}

// homeStore returns where store path p lives in the account's ~/.nix,
// which the sandbox shows as /nix.
func homeStore(b *builder, p string) string {
	return filepath.Join(b.account.home, ".nix", strings.TrimPrefix(p, "/nix/"))
}

// writeProbeDerivation writes a derivation whose build looks around from
// inside the sandbox: can it write to the home directory, and what is in
// /. Its output holds the answers.
func writeProbeDerivation(t testing.TB, root, nonce, home string) string {
	t.Helper()
	dir := filepath.Join(root, "probe-"+nonce)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bb", "bin", "busybox"), string(bb), 0o755)
	script := fmt.Sprintf(`b=${bb}/bin/busybox; if $b touch %s/pwned-%s 2>/dev/null; then echo home-writable; else echo home-readonly; fi > $out; $b ls -1A / >> $out`, home, nonce)
	expr := fmt.Sprintf(`let bb = builtins.path { path = %s; name = "busybox"; }; in
derivation {
  name = "nixgate-probe-%s";
  system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" %q ];
}
`, filepath.Join(dir, "bb"), nonce, script)
	file := filepath.Join(dir, "probe.nix")
	writeFile(t, file, expr, 0o644)
	return file
}

// TestSandboxModes runs the real Nix client against a builder without
// root — its store in ~/.nix, never the machine's /nix — through both
// exec mode and serve mode (run as the account), in each sandbox mode.
func TestSandboxModes(t *testing.T) {
	for _, transport := range []string{modeExec, modeServe} {
		for _, sb := range sandboxModes {
			t.Run(transport+"/"+sb, func(t *testing.T) {
				b := newBuilderIn(t, transport, sb)
				for _, scheme := range []string{"ssh", "ssh-ng"} {
					b.mustNix(t, "nix", "store", "ping", "--store", scheme+"://"+b.Host("build"))
				}
				// copy --to and --from: the path lands in ~/.nix/store only.
				p := b.addPath(t, "nonroot-"+sb, "a store without root\n")
				b.mustNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
				if got := readFile(t, homeStore(b, p)); got != "a store without root\n" {
					t.Fatalf("~/.nix%s holds %q", p, got)
				}
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s reached the machine's /nix/store", p)
				}
				b.mustNix(t, "nix", "store", "delete", p)
				b.mustNix(t, "nix", "copy", "--from", "ssh-ng://"+b.Host("build"), p)
				if !inStore(b.clientStoreDir, p) {
					t.Fatal("copy --from did not bring the path back")
				}

				// A real remote build, looking around from inside.
				nonce := fmt.Sprint(time.Now().UnixNano())
				drv := writeProbeDerivation(t, b.root, nonce, b.account.home)
				r := b.mustNix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
				out := strings.TrimSpace(r.stdout)
				if !strings.HasPrefix(out, "/nix/store/") {
					t.Fatalf("nix-build printed %q", out)
				}
				if _, err := os.Lstat(homeStore(b, out)); err != nil {
					t.Fatalf("the output %s is not in the account's ~/.nix/store", out)
				}
				if _, err := os.Lstat(out); err == nil {
					t.Fatalf("the output %s reached the machine's /nix/store", out)
				}
				lines := strings.Split(strings.TrimSpace(readStore(t, b.clientStoreDir, out)), "\n")
				if lines[0] != "home-readonly" {
					t.Errorf("inside the %s sandbox the home directory was writable", sb)
				}
				if _, err := os.Lstat(filepath.Join(b.account.home, "pwned-"+nonce)); err == nil {
					t.Errorf("the build wrote into the home directory")
				}
				inside := lines[1:]
				slices.Sort(inside)
				if sb == "proot" {
					// No build sandbox under proot: the build sees the
					// machine's / (see the proot acknowledgement).
					var outside []string
					entries, _ := os.ReadDir("/")
					for _, e := range entries {
						outside = append(outside, e.Name())
					}
					if !slices.Equal(inside, outside) {
						t.Errorf("/ inside the sandbox %q differs from outside %q", inside, outside)
					}
				} else if want := []string{"build", "dev", "etc", "nix", "proc", "tmp"}; !slices.Equal(inside, want) {
					// Nix's own build sandbox, nested in nixgate's.
					t.Errorf("/ inside the %s build is %q; want Nix's build sandbox, %q", sb, inside, want)
				}
			})
		}
	}
}

// TestSandboxUserNamespaceRefused runs nixgate where the kernel refuses
// user namespaces — under bwrap --disable-userns, which answers ENOSPC —
// and expects the refusal explained, not a hang or a stack trace.
func TestSandboxUserNamespaceRefused(t *testing.T) {
	b := newBuilderIn(t, modeExec, "userns")
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Fatal("bwrap is missing (package bubblewrap)")
	}
	asAccount := []string{"setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--",
		"env", "-i", "HOME=" + b.account.home, "USER=" + b.account.name, "PATH=/usr/bin:/bin",
		"SSH_ORIGINAL_COMMAND=nix-store --serve --write", "SSH_CONNECTION=127.0.0.1 1 127.0.0.1 22",
		"bwrap", "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--"}
	for name, argv := range map[string][]string{
		"exec":        {nixgateBin, "exec", "--config", b.config, "--key", "build"},
		"user-chroot": {nixgateBin, "user-chroot", b.storeDir, "nix-store", "--version"},
		"serve":       {nixgateBin, "serve", "--config", b.config},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, nil, []byte{}, append(append([]string{}, asAccount...), argv...)...)
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code == 0 || r.stdout != "" || len(lines) != 1 || !strings.Contains(r.stderr, "ENOSPC") || !strings.Contains(r.stderr, "user.max_user_namespaces") || !strings.Contains(r.stderr, `sandbox.mode = "proot"`) {
				t.Fatalf("%s without user namespaces: %s", name, r)
			}
		})
	}
	waitLog(t, b, "refused", map[string]string{"reason": "ENOSPC"})
}

// TestSandboxStoreDirMissing: a store_dir that is not there (a typo) is
// refused, never made: exec mode refuses the session and serve refuses to
// start, each with one line naming the setting, the path, the file and
// line, and mkdir -p for a new store; check fails with that fix, which,
// run as printed, makes the sandbox work.
func TestSandboxStoreDirMissing(t *testing.T) {
	b := newBuilderIn(t, modeExec, "userns")
	doc := readFile(t, b.config)
	i := strings.Index(doc, "[sandbox]\n")
	if i < 0 {
		t.Fatalf("no [sandbox] in\n%s", doc)
	}
	i += len("[sandbox]\n")
	doc = doc[:i] + "store_dir = \"~/.nxi\"\n" + doc[i:]
	line := strings.Count(doc[:i], "\n") + 1
	cfg := filepath.Join(filepath.Dir(b.config), "typo.toml")
	writeFile(t, cfg, doc, 0o644)
	dir := filepath.Join(b.account.home, ".nxi")
	want := fmt.Sprintf("%s:%d: sandbox.store_dir \"~/.nxi\" is %s, which does not exist: mkdir -p %s if it is to be a new store, else correct sandbox.store_dir", cfg, line, dir, dir)

	asAccount := []string{"setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--",
		"env", "-i", "HOME=" + b.account.home, "USER=" + b.account.name, "PATH=/usr/bin:/bin",
		"SSH_ORIGINAL_COMMAND=nix-store --serve --write", "SSH_CONNECTION=127.0.0.1 1 127.0.0.1 22"}
	for name, tt := range map[string]struct {
		argv   []string
		prefix string
	}{
		"exec":  {[]string{nixgateBin, "exec", "--config", cfg, "--key", "build"}, "nixgate: refused: "},
		"serve": {[]string{nixgateBin, "serve", "--config", cfg}, "nixgate serve: "},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, nil, []byte{}, append(append([]string{}, asAccount...), tt.argv...)...)
			if r.code == 0 || r.stdout != "" || r.stderr != tt.prefix+want+"\n" {
				t.Errorf("%s with store_dir missing: %s\nwant the one line %q", name, r, tt.prefix+want)
			}
		})
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s was made", dir)
	}

	rs, code := runCheck(t, "--config", cfg, "--mode", "exec")
	fix := fmt.Sprintf("runuser -u %s -- mkdir -p %s", b.account.name, dir)
	finding(t, rs, "store", "fail", want, fix)
	if code != 1 {
		t.Errorf("check exited %d; want 1", code)
	}
	mustRun(t, nil, "sh", "-c", fix)
	rs, code = runCheck(t, "--config", cfg, "--mode", "exec")
	finding(t, rs, "store", "ok", "sandbox.store_dir "+dir+" is there", "")
	finding(t, rs, "sandbox", "ok", "sandbox.mode userns runs nix-store as "+b.account.name, "")
	if fi, err := os.Stat(dir); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != b.account.uid {
		t.Errorf("%s after the fix: %v; want it %s's", dir, err, b.account.name)
	}
}
