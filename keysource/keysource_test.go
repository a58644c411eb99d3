package keysource

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

func newKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// setup writes script as the key source command (it is given user, type,
// fingerprint and key as $1..$4, and $DIR for its own files) and returns
// a Source of a configuration with a key named "configured", and the
// log.
func setup(t *testing.T, script string, extra string) (*Source, *bytes.Buffer, string) {
	t.Helper()
	dir := t.TempDir()
	prog := filepath.Join(dir, "keys.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nDIR="+dir+"\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("user = \"b\"\n[[keys]]\nname = \"configured\"\nrole = \"build\"\n[key_source]\ncommand = [%q, \"%%u\", \"%%t\", \"%%f\", \"%%k\"]\n%s", prog, extra)
	cfg, err := config.Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, nil))
	return New(cfg, log), &logs, dir
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// answerFor is a script that answers one line for the offered key, with
// the options opts, and counts its runs in $DIR/runs.
func answerFor(opts string) string {
	return `echo run >> "$DIR/runs"
echo "checking $1 $2 $3" >&2
echo '# inventory'
echo '` + opts + ` '"$2 $4"' from-inventory'
`
}

func TestLookupAnswer(t *testing.T) {
	s, logs, dir := setup(t, answerFor(`name="alice",role="substitute",from="127.0.0.0/8"`), "")
	key := newKey(t)
	k, err := s.Lookup("nixremote", key)
	if err != nil || k == nil {
		t.Fatalf("Lookup = %v, %v", k, err)
	}
	if k.Name != "alice" || k.Role != policy.RoleSubstitute || k.Fingerprint != keys.Fingerprint(key) || !k.AllowsFrom(netipMust("127.0.0.1")) || k.AllowsFrom(netipMust("192.0.2.1")) {
		t.Errorf("key = %+v", k)
	}
	// Its stderr is logged, with the key it was run for.
	if !strings.Contains(logs.String(), "key source stderr") || !strings.Contains(logs.String(), "checking nixremote ssh-ed25519 "+keys.Fingerprint(key)) {
		t.Errorf("stderr not logged:\n%s", logs.String())
	}
	// Another key gets no line from an answer about... itself: the
	// script answers every key, so make one that answers another's.
	other, _, _ := setup(t, `echo 'role="build" `+keys.AuthorizedKey(newKey(t))+` bob'`+"\n", "")
	if k, err := other.Lookup("nixremote", key); k != nil || err != nil {
		t.Errorf("an answer without the offered key = %v, %v; want nil, nil", k, err)
	}
	_ = dir
}

func TestLookupCache(t *testing.T) {
	s, _, dir := setup(t, answerFor(`name="alice",role="build"`), "cache = \"1m\"\n")
	now := time.Now()
	s.now = func() time.Time { return now }
	key := newKey(t)
	runs := func() int {
		data, _ := os.ReadFile(filepath.Join(dir, "runs"))
		return strings.Count(string(data), "run")
	}
	for i := 0; i < 3; i++ {
		if k, err := s.Lookup("nixremote", key); err != nil || k == nil {
			t.Fatal(k, err)
		}
	}
	if n := runs(); n != 1 {
		t.Errorf("%d runs within the cache time; want 1", n)
	}
	// Another user or key is another question.
	s.Lookup("other", key)
	s.Lookup("nixremote", newKey(t))
	if n := runs(); n != 3 {
		t.Errorf("%d runs; want 3", n)
	}
	// After the cache time, the command runs again.
	now = now.Add(61 * time.Second)
	s.Lookup("nixremote", key)
	if n := runs(); n != 4 {
		t.Errorf("%d runs after the cache time; want 4", n)
	}
}

func TestLookupFailsClosed(t *testing.T) {
	tests := []struct {
		name, script, extra, want string
	}{
		{"exit 1", "echo 'role=\"build\" '\"$2 $4\"\nexit 1\n", "", "the key source command failed (exit status 1)"},
		{"timeout", "sleep 10\n", "timeout = \"1s\"\n", "did not answer within 1s"},
		{"garbage", "echo 'not a key line'\n", "", "the key source command's answer: key source"},
		{"unknown option", "echo 'role=\"build\",command=\"sh\" '\"$2 $4\"\n", "", "answer"},
		{"bad role", "echo 'name=\"x\",role=\"root\" '\"$2 $4\"\n", "", `unknown role "root"`},
		{"a configured key's name", "echo 'name=\"configured\",role=\"build\" '\"$2 $4\"\n", "", `"configured" is used by another key`},
		{"too much", "head -c 2000000 /dev/zero | tr '\\0' 'x'\n", "", "answered more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, dir := setup(t, "echo run >> \"$DIR/runs\"\n"+tt.script, tt.extra)
			start := time.Now()
			k, err := s.Lookup("nixremote", newKey(t))
			if k != nil || err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "keysource: ") {
				t.Fatalf("Lookup = %v, %v; want an error with %q", k, err, tt.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			// A failure is not cached: the next lookup runs again.
			s.Lookup("nixremote", newKey(t))
			if data, _ := os.ReadFile(filepath.Join(dir, "runs")); strings.Count(string(data), "run") != 2 {
				t.Errorf("runs: %q; want 2", data)
			}
		})
	}
	var nilSource *Source
	if k, err := nilSource.Lookup("u", newKey(t)); k != nil || err != nil {
		t.Error("a nil Source answered")
	}
}

// TestTimeoutKillsTheGroup: a command whose child holds stdout open is
// not waited for past the timeout.
func TestTimeoutKillsTheGroup(t *testing.T) {
	s, _, _ := setup(t, "sleep 30 &\nsleep 30\n", "timeout = \"1s\"\n")
	start := time.Now()
	if _, err := s.Lookup("u", newKey(t)); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Lookup took %v", d)
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
