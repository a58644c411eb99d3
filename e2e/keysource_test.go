package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keySourceScript is the [key_source] command of TestKeySourceServe: it
// answers the lines of $DIR/answers whose key has the fingerprint it is
// asked about, counts its runs per fingerprint in $DIR/runs, says on
// stderr what it was asked, and fails or hangs when $DIR/fail or
// $DIR/slow exist.
const keySourceScript = `#!/bin/sh
DIR=%s
echo "$3" >> "$DIR/runs"
echo "asked about $1 $2 $3" >&2
[ -e "$DIR/slow" ] && sleep 30
[ -e "$DIR/fail" ] && { echo "inventory unreachable" >&2; exit 1; }
while read -r line; do
	case "$line" in *"$4"*) echo "$line" ;; esac
done < "$DIR/answers"
exit 0
`

// TestKeySourceServe: real OpenSSH and real Nix against nixgate serve
// whose [key_source] command answers keys the configuration does not
// list: an answered key works with its role; a key it does not answer,
// its failure and its timeout refuse; its answers are cached for the
// stated time, then asked again.
func TestKeySourceServe(t *testing.T) {
	b := newBuilder(t, modeServe)
	dir := filepath.Join(b.root, "inventory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "nix-keys")
	writeFile(t, prog, fmt.Sprintf(keySourceScript, dir), 0o755)
	inv := newClientKey(t, filepath.Join(b.root, "client", "keys"), "inv")
	writeFile(t, filepath.Join(dir, "answers"), `name="inv-ci",role="build" `+inv.publicKey+" inv\n", 0o644)
	doc := readFile(t, b.config) + fmt.Sprintf("\n[key_source]\ncommand = [%q, \"%%u\", \"%%t\", \"%%f\", \"%%k\"]\ntimeout = \"2s\"\ncache = \"8s\"\n", prog)
	writeFile(t, b.config, doc, 0o644)
	b.waitReload(t)
	f, err := os.OpenFile(b.sshConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	pubs := map[string]string{"inv": inv.publicKey}
	for _, name := range []string{"inv", "inv2", "inv3"} {
		path := inv.path
		if name != "inv" {
			k := newClientKey(t, filepath.Join(b.root, "client", "keys"), name)
			path, pubs[name] = k.path, k.publicKey
		}
		fmt.Fprintf(f, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  HostKeyAlias nixgate-e2e-builder\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n  ControlMaster no\n\n",
			b.Host(name), b.port, b.account.name, path, filepath.Join(b.root, "client", "known_hosts"))
	}
	f.Close()
	runsOf := func(fp string) int {
		data, _ := os.ReadFile(filepath.Join(dir, "runs"))
		return strings.Count(string(data), fp)
	}

	// Answered: the key works with the answer's role and name, and the
	// command ran once for the connection's two checks and its session.
	p := b.addPath(t, "from-key-source", "copied with a key the inventory answered\n")
	b.mustNix(t, "nix", "copy", "--to", "ssh://"+b.Host("inv"), p)
	if auditRecord(t, b, "inv-ci", "imported", p) == nil {
		t.Fatalf("no session record of inv-ci importing %s", p)
	}
	fp := waitLog(t, b, "key source answered", map[string]string{"key": "inv-ci"})["fingerprint"].(string)
	waitLog(t, b, "key source stderr", map[string]string{"line": "asked about " + b.account.name + " ssh-ed25519 " + fp})
	if n := runsOf(fp); n != 1 {
		t.Errorf("the command ran %d times for one connection within the cache time; want 1", n)
	}

	// Not answered: refused.
	r := b.ssh(t, "inv2", "nix-store --serve --write", nil)
	if r.code != 255 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Fatalf("a key the command does not answer: %s", r)
	}
	waitLog(t, b, "public key refused", map[string]string{"reason": "the key source answered no line for it"})

	// Failing and hanging: refused, with the reason; no fallback.
	writeFile(t, filepath.Join(dir, "answers"), readFile(t, filepath.Join(dir, "answers"))+`name="inv3",role="build" `+pubs["inv3"]+" inv3\n", 0o644)
	writeFile(t, filepath.Join(dir, "fail"), "", 0o644)
	r = b.ssh(t, "inv3", "nix-store --serve --write", nil)
	if r.code != 255 {
		t.Fatalf("a key answered while the command fails: %s", r)
	}
	waitLog(t, b, "public key refused", map[string]string{"reason": "the key source command failed (exit status 1)"})
	waitLog(t, b, "key source stderr", map[string]string{"line": "inventory unreachable"})
	os.Remove(filepath.Join(dir, "fail"))
	writeFile(t, filepath.Join(dir, "slow"), "", 0o644)
	start := time.Now()
	r = b.ssh(t, "inv3", "nix-store --serve --write", nil)
	if r.code != 255 || time.Since(start) > 20*time.Second {
		t.Fatalf("a key answered while the command hangs: %s (%v)", r, time.Since(start))
	}
	waitLog(t, b, "public key refused", map[string]string{"reason": "did not answer within 2s"})
	os.Remove(filepath.Join(dir, "slow"))
	// The control: the same key once the command answers.
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("inv3"))

	// The cache: the inventory drops inv; within the cache time the
	// answer stands, after it the key is refused.
	writeFile(t, filepath.Join(dir, "answers"), "", 0o644)
	time.Sleep(9 * time.Second)
	r = b.ssh(t, "inv", "nix-store --serve --write", nil)
	if r.code != 255 {
		t.Fatalf("a key the inventory dropped, after the cache time: %s", r)
	}
	if n := runsOf(fp); n != 2 {
		t.Errorf("the command ran %d times for inv; want 2 (once per cache time)", n)
	}
	b.mustStillServe(t)
}
