package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// writeFailingDerivation writes a derivation whose build prints lines
// lines (the first naming nonce) and fails.
func writeFailingDerivation(t testing.TB, root, nonce string, lines int) string {
	t.Helper()
	file := writeDerivation(t, root, nonce)
	expr := readFile(t, file)
	script := fmt.Sprintf(`echo first line of %s; i=1; while [ $i -lt %d ]; do echo log line $i; i=$((i+1)); done; exit 3`, nonce, lines)
	expr = strings.Replace(expr, fmt.Sprintf(`"echo built remotely %s > $out"`, nonce), fmt.Sprintf("%q", script), 1)
	writeFile(t, file, expr, 0o644)
	return file
}

// instantiate returns the store path of the derivation of file, as the
// client's Nix computes it (the builder's is the same).
func (b *builder) instantiate(t *testing.T, file string) string {
	t.Helper()
	r := b.mustNix(t, "nix-instantiate", file)
	return strings.TrimSpace(r.stdout)
}

// TestBuildLogFetched: a remote build that fails, over ssh:// and
// ssh-ng://, in both modes, has its log kept on the builder; the key
// that built it fetches it afterwards with ssh … nixgate log DRV, and
// it is what the client printed of the build, line for line; another
// key is refused; a log past [build_logs] max_log_size is cut and says
// so; and nixgate log on the builder shows it too.
func TestBuildLogFetched(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			t.Run(scheme, func(t *testing.T) {
				nonce := fmt.Sprint(time.Now().UnixNano())
				file := writeFailingDerivation(t, b.root, nonce, 5)
				drv := b.instantiate(t, file)
				r := b.nix(t, "nix-build", file, "--no-out-link", "-j0", "--builders", scheme+"://"+b.Host("build")+" x86_64-linux - 1")
				if r.code == 0 || !strings.Contains(r.stderr, "first line of "+nonce) {
					t.Fatalf("the failing remote build: %s", r)
				}
				// The log is kept when the session ends, just after the
				// client's Nix has gone.
				rec := findRecord(t, b, logWait, func(r map[string]any) bool {
					logs, _ := r["build_logs"].([]any)
					return r["msg"] == "session ended" && len(logs) > 0 && logs[0] == drv
				})
				if rec == nil {
					t.Errorf("no session record names the log of %s:\n%s", drv, readFile(t, b.log))
				}
				got := b.ssh(t, "build", "nixgate log "+drv, nil)
				if got.code != 0 {
					t.Fatalf("ssh … nixgate log %s: %s\nthe build: %s", drv, got, r)
				}
				want := "first line of " + nonce + "\nlog line 1\nlog line 2\nlog line 3\nlog line 4\n"
				if !strings.Contains(got.stdout, want) {
					t.Errorf("the log fetched: %q; want the build's lines %q", got.stdout, want)
				}
				// Everything in it, the client printed, in that order.
				if !inOrder(r.stderr, got.stdout) {
					t.Errorf("the log fetched has lines the client did not print:\nlog: %q\nclient: %q", got.stdout, r.stderr)
				}
				other := b.ssh(t, "substitute", "nixgate log "+drv, nil)
				if other.code == 0 || other.stdout != "" || !strings.Contains(other.stderr, `no build log of `+drv+` is kept for key "substitute"`) {
					t.Errorf("another key's nixgate log: %s; want it refused", other)
				}
				local := run(t, nil, nil, nixgateBin, "log", "--config", b.config, drv)
				if local.stdout != got.stdout {
					t.Errorf("nixgate log on the builder: %s; over SSH: %q", local, got.stdout)
				}
			})
		}
		t.Run("max_log_size", func(t *testing.T) {
			cfg := readFile(t, b.config)
			writeFile(t, b.config, strings.Replace(cfg, "[limits]\n", "[build_logs]\nmax_log_size = 1024\n\n[limits]\n", 1), 0o644)
			if b.mode == modeServe {
				b.waitReload(t)
			}
			defer func() {
				writeFile(t, b.config, cfg, 0o644)
				if b.mode == modeServe {
					b.waitReload(t)
				}
			}()
			nonce := fmt.Sprint(time.Now().UnixNano())
			file := writeFailingDerivation(t, b.root, nonce, 2000)
			drv := b.instantiate(t, file)
			b.nix(t, "nix-build", file, "--no-out-link", "-j0", "--builders", "ssh-ng://"+b.Host("build")+" x86_64-linux - 1")
			findRecord(t, b, logWait, func(r map[string]any) bool {
				logs, _ := r["build_logs"].([]any)
				return r["msg"] == "session ended" && len(logs) > 0 && logs[0] == drv
			})
			got := b.ssh(t, "build", "nixgate log "+drv, nil)
			head, note, cut := strings.Cut(got.stdout, "\n[nixgate: the rest of this log is not kept: [build_logs] max_log_size is 1024 bytes]\n")
			if got.code != 0 || !cut || len(head) != 1024 || note != "" || !strings.HasPrefix(head, "first line of "+nonce+"\n") {
				t.Errorf("a log past max_log_size: %d bytes, cut %v: %s", len(got.stdout), cut, got)
			}
		})
	})
}

// inOrder reports whether every line of log is a line of out, in order.
func inOrder(out, log string) bool {
	lines := strings.Split(out, "\n")
	i := 0
	for _, l := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		for i < len(lines) && lines[i] != l {
			i++
		}
		if i == len(lines) {
			return false
		}
		i++
	}
	return true
}
