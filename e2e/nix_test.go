package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy/policytest"
)

func TestStorePing(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			r := b.mustNix(t, "nix", "store", "ping", "--store", scheme+"://"+b.Host("build"))
			if !strings.Contains(r.stderr, "Store URL: "+scheme+"://"+b.Host("build")) {
				t.Errorf("nix store ping %s: %s", scheme, r)
			}
		}
	})
}

// TestExecPlainForcedCommandNotFound shows the problem nixgate solves:
// with the same sshd, a hand-written forced command cannot find Nix.
func TestExecPlainForcedCommandNotFound(t *testing.T) {
	b := newBuilder(t, modeExec)
	r := b.nix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("plain"))
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("plain forced command unexpectedly found Nix: %s", r)
	}
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
}

func TestCopy(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			t.Run(scheme, func(t *testing.T) {
				url := scheme + "://" + b.Host("build")
				// --to
				p := b.addPath(t, "to-"+scheme, "copied to the builder over "+scheme+"\n")
				b.mustNix(t, "nix", "copy", "--to", url, p)
				if got := readStore(t, b.storeDir, p); got != "copied to the builder over "+scheme+"\n" {
					t.Fatalf("builder store has %q", got)
				}
				// Written by the build account, never by root.
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(b.storeDir, p), &st); err != nil || int(st.Uid) != b.account.uid {
					t.Fatalf("%s in the builder store is owned by uid %d (%v); want the build account's %d", p, st.Uid, err, b.account.uid)
				}
				// --from: remove it from the client first.
				b.mustNix(t, "nix", "store", "delete", p)
				if inStore(b.clientStoreDir, p) {
					t.Fatalf("%s still in the client store", p)
				}
				b.mustNix(t, "nix", "copy", "--from", url, p)
				if got := readStore(t, b.clientStoreDir, p); got != "copied to the builder over "+scheme+"\n" {
					t.Fatalf("client store has %q after copy --from", got)
				}
				// The audit log names the path each way.
				for _, moved := range []string{"imported", "read"} {
					if auditRecord(t, b, "build", moved, p) == nil {
						t.Errorf("no session record lists %s as %s", p, moved)
					}
				}
			})
		}
	})
}

func TestCopyClosure(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		p := b.addPath(t, "closure", "nix-copy-closure payload\n")
		b.mustNix(t, "nix-copy-closure", "--to", b.Host("build"), p)
		if !inStore(b.storeDir, p) {
			t.Fatalf("nix-copy-closure --to did not put %s in the builder store", p)
		}
		b.mustNix(t, "nix", "store", "delete", p)
		b.mustNix(t, "nix-copy-closure", "--from", b.Host("build"), p)
		if got := readStore(t, b.clientStoreDir, p); got != "nix-copy-closure payload\n" {
			t.Fatalf("client store has %q after nix-copy-closure --from", got)
		}
	})
}

func TestRemoteBuild(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			t.Run(scheme, func(t *testing.T) {
				nonce := fmt.Sprint(time.Now().UnixNano())
				drv := writeDerivation(t, b.root, nonce)
				r := b.mustNix(t, "nix-build", drv, "--no-out-link", "-j0",
					"--builders", scheme+"://"+b.Host("build")+" x86_64-linux - 1")
				out := strings.TrimSpace(r.stdout)
				if !strings.HasPrefix(out, "/nix/store/") {
					t.Fatalf("nix-build printed %q", out)
				}
				want := "built remotely " + nonce + "\n"
				if got := readStore(t, b.clientStoreDir, out); got != want {
					t.Errorf("output copied back holds %q; want %q", got, want)
				}
				if got := readStore(t, b.storeDir, out); got != want {
					t.Errorf("builder's output holds %q; want %q", got, want)
				}
				if auditRecord(t, b, "build", "built", out) == nil {
					t.Errorf("no session record lists %s as built", out)
				}
			})
		}
	})
}

// TestSubstituteKey: a substitute key reads over ssh:// and ssh-ng:// and
// cannot write or build over either; the refusal is nixgate's own line,
// and nothing reaches the builder's store.
func TestSubstituteKey(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			t.Run(scheme, func(t *testing.T) {
				url := scheme + "://" + b.Host("substitute")
				content := "readable by the substitute key over " + scheme + "\n"
				p := b.addPath(t, "for-substitute-"+scheme, content)
				b.mustNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
				b.mustNix(t, "nix", "store", "delete", p)

				// Reading works: ping, path-info, copy --from.
				if r := b.mustNix(t, "nix", "store", "ping", "--store", url); !strings.Contains(r.stderr, "Store URL: "+url) {
					t.Errorf("nix store ping: %s", r)
				}
				if r := b.mustNix(t, "nix", "path-info", "--store", url, p); strings.TrimSpace(r.stdout) != p {
					t.Errorf("nix path-info printed %q; want %s", r.stdout, p)
				}
				b.mustNix(t, "nix", "copy", "--from", url, p)
				if got := readStore(t, b.clientStoreDir, p); got != content {
					t.Fatalf("copy --from with the substitute key left %q", got)
				}

				// Writing is refused by nixgate before Nix sees it.
				q := b.addPath(t, "from-substitute-"+scheme, "must not reach the builder\n")
				r := b.nix(t, "nix", "copy", "--to", url, q)
				if r.code == 0 || inStore(b.storeDir, q) {
					t.Fatalf("copy --to with the substitute key: %s", r)
				}
				if !strings.Contains(r.stderr, `nixgate: key "substitute" (role substitute) is read-only:`) {
					t.Errorf("copy --to refusal is not nixgate's line: %s", r)
				}

				// Building fails the same way, and no build output lands.
				nonce := fmt.Sprint(time.Now().UnixNano())
				drv := writeDerivation(t, b.root, nonce)
				r = b.nix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", url+" x86_64-linux - 1")
				if r.code == 0 {
					t.Fatalf("build with the substitute key succeeded: %s", r)
				}
				if !strings.Contains(r.stderr, `(role substitute) is read-only:`) {
					t.Errorf("build refusal is not nixgate's line: %s", r)
				}
				if outs, _ := filepath.Glob(filepath.Join(b.storeDir, "nix", "store", "*nixgate-e2e-"+nonce)); len(outs) != 0 {
					t.Errorf("the refused build left %v in the builder's store", outs)
				}
			})
		}
	})
}

// TestExecCases sends every command of the shared case table through
// real OpenSSH to nixgate exec. Allowed commands must answer the Nix
// protocol's greeting; refused ones must exit non-zero with one clear
// line on stderr, nothing on stdout, and a log record.
func TestCases(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		cases, err := policytest.Load(policytest.Stores{Store: b.store, Allowed: b.allowedStore, Other: b.otherStore})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) {
				if c.ExecE2E != "" {
					t.Skip(c.ExecE2E)
				}
				if c.Allow {
					checkAllowed(t, b, c)
					return
				}
				r := b.ssh(t, c.Role, c.Command, nil)
				checkRefused(t, b, r, c.Command, c.Reason)
			})
		}
	})
}

func checkAllowed(t *testing.T, b *builder, c policytest.Case) {
	t.Helper()
	hello, reply := serveHello, serveReply
	if c.Program == "nix-daemon" {
		hello, reply = daemonHello, daemonReply
	}
	got, r := b.greet(t, c.Role, c.Command, hello, len(reply))
	if !bytes.Equal(got, reply) {
		t.Fatalf("%q did not answer the %s greeting: %s", c.Command, c.Program, r)
	}
	rec := waitCommandLog(t, b, c.Command, "allowed")
	argv, _ := rec["argv"].([]any)
	var ran []string
	for _, a := range argv {
		ran = append(ran, fmt.Sprint(a))
	}
	want := append([]string{"/usr/bin/" + c.Program}, c.Args...)
	if !slices.Equal(ran, want) {
		t.Errorf("ran %q; want %q", ran, want)
	}
}

// TestExecKeyRefusals covers refusals that depend on the key rather than
// the command: expiry, source address, a key the config lacks, and a
// person logging in without a command.
func TestExecKeyRefusals(t *testing.T) {
	b := newBuilder(t, modeExec)
	tests := []struct {
		key, command, reason string
	}{
		{"old", "nix-store --serve --write", `key "old" expired on 2020-01-01`},
		{"lan", "nix-store --serve --write", `key "lan" may not connect from 127.0.0.1`},
		{"ghost", "nix-store --serve --write", `key "ghost" is not configured`},
		{"build", "", "this account only serves Nix, there is no shell"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			r := b.ssh(t, tt.key, tt.command, nil)
			checkRefused(t, b, r, tt.command, tt.reason)
		})
	}
	// The same refusals reach a real Nix client as one line.
	r := b.nix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("old"))
	if r.code == 0 || !strings.Contains(r.stderr, "nixgate: refused: key \"old\" expired") {
		t.Errorf("nix store ping with an expired key: %s", r)
	}
}

// TestExecWritableHome makes the build account's home writable, as
// useradd leaves it, and expects every command to be refused with the fix.
func TestExecWritableHome(t *testing.T) {
	b := newBuilder(t, modeExec)
	for _, p := range []string{b.account.home, filepath.Join(b.account.home, ".ssh"), filepath.Join(b.account.home, ".ssh", "authorized_keys")} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			mustRun(t, nil, "chmod", "u+w", p)
			defer mustRun(t, nil, "chmod", "a-w", p)
			r := b.ssh(t, "build", "nix-store --serve --write", serveHello)
			checkRefused(t, b, r, "nix-store --serve --write", "is writable by "+b.account.name)
			if !strings.Contains(r.stderr, "fix: chmod -R a-w ~"+b.account.name) {
				t.Errorf("refusal does not give the fix: %q", r.stderr)
			}
		})
	}
	t.Run("ssh rc", func(t *testing.T) {
		rc := filepath.Join(b.account.home, ".ssh", "rc")
		dir := filepath.Dir(rc)
		mustRun(t, nil, "chmod", "u+w", dir)
		writeFile(t, rc, "true\n", 0o444)
		mustRun(t, nil, "chmod", "a-w", dir)
		defer func() {
			mustRun(t, nil, "chmod", "u+w", dir)
			os.Remove(rc)
			mustRun(t, nil, "chmod", "a-w", dir)
		}()
		r := b.ssh(t, "build", "nix-store --serve --write", serveHello)
		checkRefused(t, b, r, "nix-store --serve --write", "sshd would run it")
	})
	// Read-only again: Nix works, with a home it cannot write.
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
}

// TestExecLixBootstrap plays Lix 2.93.0's start-up through real OpenSSH:
// the command "bash", then "echo started" and "exec COMMAND" on stdin.
func TestLixBootstrap(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		in := append([]byte("echo started\nexec nix-store --serve --write --store '"+b.allowedStore+"'\n"), serveHello...)
		want := append([]byte("started\n"), serveReply...)
		got, r := b.greet(t, "build", "bash", in, len(want))
		if !bytes.Equal(got, want) {
			t.Fatalf("Lix start-up: %s", r)
		}
		r = b.ssh(t, "build", "bash", []byte("echo started\nexec id\n"))
		if r.code == 0 || r.stdout != "started\n" || !strings.Contains(r.stderr, "nixgate: refused: command refused") {
			t.Fatalf("Lix start-up with a forbidden command: %s", r)
		}
		r = b.ssh(t, "build", "bash", []byte("id\n"))
		checkRefused(t, b, r, "bash", "a shell is not offered here")
	})
}

// auditRecord returns the session record of key whose audit of kind
// ("imported", "built", "read") lists path, or nil.
func auditRecord(t testing.TB, b *builder, key, kind, path string) map[string]any {
	t.Helper()
	return findRecord(t, b, logWait, func(r map[string]any) bool {
		set, _ := r[kind].(map[string]any)
		if r["msg"] != "session ended" || r["key"] != key || set == nil {
			return false
		}
		paths, _ := set["paths"].([]any)
		for _, p := range paths {
			if p == path {
				return set["count"].(float64) >= 1
			}
		}
		return false
	})
}
