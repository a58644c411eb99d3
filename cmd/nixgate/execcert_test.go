package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
)

func newTestSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExecCert: exec mode takes the certificate from sshd's
// SSH_USER_AUTH file and checks it as serve mode would, for exactly the
// authorized_keys line's principal.
func TestExecCert(t *testing.T) {
	dir := t.TempDir()
	ca := newTestSigner(t)
	revoked := filepath.Join(dir, "ci.revoked")
	os.WriteFile(revoked, []byte("serial:9\n"), 0o644)
	doc := fmt.Sprintf("user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = %q\nrevoked = %q\n[[cas.principals]]\nname = \"ci-build\"\nrole = \"build\"\n[[cas.principals]]\nname = \"ci-cache\"\nrole = \"substitute\"\n",
		keys.AuthorizedKey(ca.PublicKey()), revoked)
	cfg, err := config.Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	certLine := func(serial uint64, principals ...string) string {
		c := &ssh.Certificate{Key: newTestSigner(t).PublicKey(), Serial: serial, CertType: ssh.UserCert, KeyId: "job", ValidPrincipals: principals,
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return "publickey " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c)))
	}
	info := func(lines ...string) string {
		p := filepath.Join(t.TempDir(), "auth")
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		return p
	}
	plain := "publickey " + keys.AuthorizedKey(newTestSigner(t).PublicKey())
	tests := []struct {
		name, authInfo, want string // want: part of the error, or "" when accepted
	}{
		{"accepted", info(certLine(1, "ci-build")), ""},
		{"after another method", info("password", certLine(1, "ci-build")), ""},
		{"no ExposeAuthInfo", "", "set ExposeAuthInfo yes in sshd_config"},
		{"unreadable", filepath.Join(dir, "missing"), "SSH_USER_AUTH file"},
		{"a plain key", info(plain), "no certificate logged in"},
		{"revoked", info(certLine(9, "ci-build")), "certificate revoked: serial 9 is revoked"},
		{"another principal's", info(certLine(1, "ci-cache")), `logs in as "ci-cache", not as "ci-build"`},
		{"two mapped principals", info(certLine(1, "ci-build", "ci-cache")), "more than one principal"},
	}
	for _, tt := range tests {
		l, err := execCert(cfg, cfg.Key("ci-build"), tt.authInfo, netip.MustParseAddr("127.0.0.1"), time.Now())
		switch {
		case tt.want == "" && (err != nil || l.Key.Name != "ci-build" || l.Cert.KeyId != "job"):
			t.Errorf("%s: %v, %v", tt.name, l, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v; want %q", tt.name, err, tt.want)
		}
	}
}
