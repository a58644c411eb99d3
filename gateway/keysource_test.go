package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// fakeSource answers from a map of fingerprints, or fails.
type fakeSource struct {
	mu      sync.Mutex
	answers map[string]*policy.Key
	err     error
	asked   int
}

func (f *fakeSource) Lookup(user string, key gossh.PublicKey) (*policy.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.err != nil {
		return nil, f.err
	}
	return f.answers[keys.Fingerprint(key)], nil
}

func (f *fakeSource) set(fp string, k *policy.Key, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k != nil {
		f.answers[fp] = k
	}
	f.err = err
}

// TestKeySource: a key the configuration does not list logs in as the
// key source answers it, with that key's role; no answer, or a failure,
// refuses it; each new session asks again.
func TestKeySource(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "nix-store"), []byte(fakeNixStore), 0o755)
	doc := fmt.Sprintf("user = \"builder\"\n[nix]\nbin_dirs = [%q]\nstore = \"local?root=%s/store\"\nenv = { FAKE_MODE = \"args\" }\n[key_source]\ncommand = [\"/usr/local/bin/nix-keys\", \"%%f\"]\n", bin, dir)
	cfg, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	src := &fakeSource{answers: map[string]*policy.Key{}}
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &mu}, nil))
	// Without a way to run the key source, the server refuses to start.
	if _, err := New(Options{Config: cfg, HostSigners: []gossh.Signer{host}}); err == nil || !strings.Contains(err.Error(), "Options.KeySource") {
		t.Fatalf("New without KeySource = %v", err)
	}
	srv, err := New(Options{Config: cfg, HostSigners: []gossh.Signer{host}, Account: sandbox.Account{Name: "builder", Home: dir}, Logger: log,
		KeySource: func(*policy.Config) KeySource { return src }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ts := &testServer{srv: srv, addr: l.Addr().String(), dir: dir}
	logText := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }

	alice, stranger, broken := newSigner(t), newSigner(t), newSigner(t)
	answered, err := config.AnswerKey(cfg, "source", []byte(`name="alice",role="substitute" `+keys.AuthorizedKey(alice.PublicKey())+"\n"), keys.Fingerprint(alice.PublicKey()))
	if err != nil || answered == nil {
		t.Fatal(answered, err)
	}
	src.set(keys.Fingerprint(alice.PublicKey()), answered, nil)

	c, err := ts.dialWith(alice)
	if err != nil {
		t.Fatalf("the answered key: %v\n%s", err, logText())
	}
	defer c.Close()
	out, _, err := runCmd(t, c, "nix-store --serve --write")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "--serve --store") {
		t.Fatalf("the answered key's session: %q, %v; want nix-store --serve (role substitute)", out, err)
	}
	if !strings.Contains(logText(), `"key":"alice"`) || !strings.Contains(logText(), `"key_source":true`) {
		t.Errorf("no record of alice from the key source:\n%s", logText())
	}
	if _, err := ts.dialWith(stranger); err == nil {
		t.Fatal("a key the source does not answer logged in")
	}
	if !strings.Contains(logText(), "the key source answered no line for it") {
		t.Errorf("no refusal record:\n%s", logText())
	}
	// A failing source refuses: the new key, and a new session of the
	// connection already in.
	src.set("", nil, errors.New("keysource: the key source command did not answer within 5s"))
	if _, err := ts.dialWith(broken); err == nil {
		t.Fatal("a key logged in while the key source fails")
	}
	if !strings.Contains(logText(), "did not answer within 5s") {
		t.Errorf("no refusal record with the failure:\n%s", logText())
	}
	if _, stderr, err := runCmd(t, c, "nix-store --serve"); err == nil || !strings.Contains(stderr, "did not answer within 5s") {
		t.Fatalf("a new session while the key source fails: %q, %v", stderr, err)
	}
	// Answering again, the connection's next session works.
	src.set("", nil, nil)
	if _, _, err := runCmd(t, c, "nix-store --serve"); err != nil {
		t.Fatalf("after the source recovered: %v", err)
	}
}
