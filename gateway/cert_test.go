package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/keys"
)

// certServer is a test server that trusts one CA, "ci", whose principals
// are ci-build (role build), ci-cache (substitute) and ci-lan (build,
// from 192.0.2.0/24 only); its revoked file is empty at the start.
type certServer struct {
	*testServer
	ca      gossh.Signer
	revoked string
}

func newCertServer(t *testing.T) *certServer {
	t.Helper()
	ca := newSigner(t)
	revoked := filepath.Join(t.TempDir(), "ci.revoked")
	if err := os.WriteFile(revoked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`[[cas]]
name = "ci"
key = %q
revoked = %q
[[cas.principals]]
name = "ci-build"
role = "build"
[[cas.principals]]
name = "ci-cache"
role = "substitute"
[[cas.principals]]
name = "ci-lan"
role = "build"
from = ["192.0.2.0/24"]
`, keys.AuthorizedKey(ca.PublicKey()), revoked)
	return &certServer{testServer: newTestServer(t, "args", extra), ca: ca, revoked: revoked}
}

func newSigner(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cert returns a signer that logs in with a certificate of a new key,
// signed by ca: a user certificate for ci-build, serial 7, key ID
// "run-1", valid from a minute ago for ten minutes, changed by edit.
func cert(t *testing.T, ca gossh.Signer, edit func(c *gossh.Certificate)) gossh.Signer {
	t.Helper()
	key := newSigner(t)
	now := time.Now()
	c := &gossh.Certificate{
		Key: key.PublicKey(), Serial: 7, CertType: gossh.UserCert, KeyId: "run-1",
		ValidPrincipals: []string{"ci-build"},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(10 * time.Minute).Unix()),
	}
	if edit != nil {
		edit(c)
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewCertSigner(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (ts *testServer) dialWith(signer gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User: "builder", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
}

// records returns the log records with message msg.
func (ts *testServer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(ts.log(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord waits, bounded, for a record with message msg whose reason
// contains reason, and returns it.
func (ts *testServer) waitRecord(t *testing.T, msg, reason string) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, fmt.Sprintf("a %q record with reason %q", msg, reason), func() bool {
		for _, r := range ts.records(msg) {
			if strings.Contains(fmt.Sprint(r["reason"]), reason) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// args runs command with signer's certificate and returns what the fake
// nix-store was given.
func (ts *certServer) args(t *testing.T, signer gossh.Signer, command string) (string, error) {
	t.Helper()
	c, err := ts.dialWith(signer)
	if err != nil {
		return "", err
	}
	defer c.Close()
	out, _, err := runCmd(t, c, command)
	return strings.TrimSpace(out), err
}

func TestCertAccepted(t *testing.T) {
	ts := newCertServer(t)
	store := "--store local?root=" + ts.dir + "/store"
	tests := []struct {
		name    string
		edit    func(c *gossh.Certificate)
		command string
		want    string
	}{
		{"build principal", nil, "nix-store --serve --write", "--serve --write " + store},
		{"substitute principal cannot write", func(c *gossh.Certificate) { c.ValidPrincipals = []string{"ci-cache"} }, "nix-store --serve --write", "--serve " + store},
		{"one mapped principal among others", func(c *gossh.Certificate) { c.ValidPrincipals = []string{"alice", "ci-build", "root"} }, "nix-store --serve --write", "--serve --write " + store},
		{"valid-after within the clock skew", func(c *gossh.Certificate) { c.ValidAfter = uint64(time.Now().Add(CertClockSkew / 2).Unix()) }, "nix-store --serve --write", "--serve --write " + store},
		{"valid forever", func(c *gossh.Certificate) { c.ValidAfter, c.ValidBefore = 0, gossh.CertTimeInfinity }, "nix-store --serve --write", "--serve --write " + store},
		{"source-address matches", func(c *gossh.Certificate) {
			c.CriticalOptions = map[string]string{"source-address": "10.0.0.0/8,127.0.0.1/32"}
		}, "nix-store --serve --write", "--serve --write " + store},
		{"force-command replaces the client's command", func(c *gossh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "nix-store --serve"}
		}, "nix-store --serve --write", "--serve " + store},
		{"extensions grant nothing", func(c *gossh.Certificate) {
			c.ValidPrincipals = []string{"ci-cache"}
			c.Extensions = map[string]string{"permit-pty": "", "nixgate-key": "ci", extHasForceCommand: "yes", extForceCommand: "nix-store --serve --write"}
		}, "nix-store --serve --write", "--serve " + store},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ts.args(t, cert(t, ts.ca, tt.edit), tt.command)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q:\n%s", got, err, tt.want, ts.log())
			}
		})
	}
	// The records name the certificate.
	auth := ts.records("authenticated")
	if len(auth) == 0 {
		t.Fatal("no authenticated record")
	}
	a := auth[0]
	caFP := keys.Fingerprint(ts.ca.PublicKey())
	if a["key"] != "ci-build" || a["principal"] != "ci-build" || a["ca"] != "ci" || a["ca_fingerprint"] != caFP || a["cert_key_id"] != "run-1" || a["cert_serial"] != float64(7) {
		t.Errorf("authenticated record = %v", a)
	}
	var ended map[string]any
	for _, r := range ts.records("session ended") {
		if r["key"] == "ci-build" {
			ended = r
			break
		}
	}
	if ended == nil || ended["principal"] != "ci-build" || ended["ca_fingerprint"] != caFP || ended["cert_key_id"] != "run-1" || ended["cert_serial"] != "7" {
		t.Errorf("session ended record = %v", ended)
	}
	for _, r := range ts.records("session ended") {
		if r["client_command"] == "nix-store --serve --write" && r["command"] != "nix-store --serve" {
			t.Errorf("force-command record = %v", r)
		}
	}
	// The extensions' record names the principal, not what they claim.
	for _, r := range ts.records("authenticated") {
		if r["key"] == "ci" {
			t.Errorf("a certificate's extension chose the key: %v", r)
		}
	}
}

func TestCertRefused(t *testing.T) {
	ts := newCertServer(t)
	otherCA := newSigner(t)
	tests := []struct {
		name   string
		ca     gossh.Signer
		edit   func(c *gossh.Certificate)
		reason string
	}{
		{"expired", nil, func(c *gossh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Second).Unix()) }, "cert has expired (valid "},
		{"not yet valid", nil, func(c *gossh.Certificate) {
			c.ValidAfter, c.ValidBefore = uint64(time.Now().Add(time.Hour).Unix()), uint64(time.Now().Add(2*time.Hour).Unix())
		}, "cert is not yet valid (valid "},
		{"valid-after past the clock skew", nil, func(c *gossh.Certificate) {
			c.ValidAfter = uint64(time.Now().Add(CertClockSkew + 30*time.Second).Unix())
		}, "cert is not yet valid"},
		{"wrong principal", nil, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"builder"} }, `none of the certificate's principals ["builder"] is mapped by CA "ci"`},
		{"two mapped principals", nil, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"ci-cache", "ci-build"} }, "more than one principal"},
		{"principal's from", nil, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"ci-lan"} }, `key "ci-lan" may not connect from 127.0.0.1`},
		{"unknown CA", otherCA, nil, "certificate signed by an unknown CA " + keys.Fingerprint(otherCA.PublicKey())},
		{"host certificate", nil, func(c *gossh.Certificate) { c.CertType = gossh.HostCert }, "a host certificate presented as a user certificate"},
		{"unknown critical option", nil, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"verify-required": ""} }, `unsupported critical option "verify-required"`},
		{"source-address mismatch", nil, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"source-address": "10.9.9.9/32"} }, `the client address 127.0.0.1 is not in the certificate's source-address "10.9.9.9/32"`},
		{"source-address garbage", nil, func(c *gossh.Certificate) {
			c.CriticalOptions = map[string]string{"source-address": "127.0.0.1,nonsense"}
		}, `an entry that is no address or network: "nonsense"`},
		{"force-command a shell", nil, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"force-command": "bash -i"} }, `the certificate's force-command "bash -i" is not allowed for principal "ci-build"`},
		{"force-command empty", nil, func(c *gossh.Certificate) { c.CriticalOptions = map[string]string{"force-command": ""} }, `the certificate's force-command "" is not allowed`},
		{"force-command another store", nil, func(c *gossh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "nix-store --serve --write --store /elsewhere"}
		}, `store "/elsewhere" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := tt.ca
			if ca == nil {
				ca = ts.ca
			}
			c, err := ts.dialWith(cert(t, ca, tt.edit))
			if err == nil {
				c.Close()
				t.Fatalf("logged in:\n%s", ts.log())
			}
			r := ts.waitRecord(t, "certificate refused", tt.reason)
			if r["cert_key_id"] != "run-1" || r["ca_fingerprint"] != keys.Fingerprint(ca.PublicKey()) {
				t.Errorf("refusal record = %v", r)
			}
		})
	}
	// The control: the same server lets a valid certificate in.
	if got, err := ts.args(t, cert(t, ts.ca, nil), "nix-store --serve --write"); err != nil || !strings.HasPrefix(got, "--serve --write") {
		t.Fatalf("a valid certificate: %q, %v", got, err)
	}
}

// TestCertRevokedWithoutRestart revokes a certificate by serial, then
// another by key ID, in the revoked file of the running server.
func TestCertRevokedWithoutRestart(t *testing.T) {
	ts := newCertServer(t)
	first, second := cert(t, ts.ca, nil), cert(t, ts.ca, func(c *gossh.Certificate) { c.Serial, c.KeyId = 8, "run-2" })
	for _, s := range []gossh.Signer{first, second} {
		if _, err := ts.args(t, s, "nix-store --serve --write"); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
	}
	open, err := ts.dialWith(first)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := keys.AddRevoked(ts.revoked, "serial:7"); err != nil {
		t.Fatal(err)
	}
	// A connection that logged in before opens no new session.
	if _, stderr, err := runCmd(t, open, "nix-store --serve --write"); err == nil || !strings.Contains(stderr, "nixgate: refused: the certificate is no longer accepted: certificate revoked: serial 7 is revoked") {
		t.Fatalf("a new session of a revoked certificate's connection: %q, %v", stderr, err)
	}
	if _, err := ts.dialWith(first); err == nil {
		t.Fatal("the certificate revoked by serial logged in")
	}
	ts.waitRecord(t, "certificate refused", "certificate revoked: serial 7 is revoked ("+ts.revoked+":1)")
	if _, err := ts.args(t, second, "nix-store --serve --write"); err != nil {
		t.Fatalf("serial 8 after serial 7 was revoked: %v", err)
	}
	if _, err := keys.AddRevoked(ts.revoked, "id:run-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.dialWith(second); err == nil {
		t.Fatal("the certificate revoked by key ID logged in")
	}
	ts.waitRecord(t, "certificate refused", `key ID "run-2" is revoked`)
	// A broken file refuses every certificate of the CA.
	os.WriteFile(ts.revoked, []byte("serial:7\nnonsense\n"), 0o644)
	if _, err := ts.dialWith(cert(t, ts.ca, func(c *gossh.Certificate) { c.Serial, c.KeyId = 9, "run-3" })); err == nil {
		t.Fatal("a certificate logged in while the revoked file is broken")
	}
	ts.waitRecord(t, "certificate refused", "the CA's revoked file cannot be used")
}

// otherKeySigner presents a certificate but signs with a key other than
// the one it certifies.
type otherKeySigner struct {
	cert   *gossh.Certificate
	signer gossh.Signer
}

func (o otherKeySigner) PublicKey() gossh.PublicKey { return o.cert }
func (o otherKeySigner) Sign(r io.Reader, data []byte) (*gossh.Signature, error) {
	return o.signer.Sign(r, data)
}

// TestCertForAnotherKey: a client that has a valid certificate but not
// the private key it certifies cannot log in with it.
func TestCertForAnotherKey(t *testing.T) {
	ts := newCertServer(t)
	valid := cert(t, ts.ca, nil)
	// The control: with its own key it logs in.
	if _, err := ts.args(t, valid, "nix-store --serve --write"); err != nil {
		t.Fatalf("the certificate with its key: %v", err)
	}
	before := len(ts.records("authenticated"))
	_, err := ts.dialWith(otherKeySigner{cert: valid.PublicKey().(*gossh.Certificate), signer: newSigner(t)})
	if err == nil {
		t.Fatal("logged in with a certificate of another key")
	}
	if n := len(ts.records("authenticated")); n != before {
		t.Errorf("%d authenticated records after the attempt; want %d", n, before)
	}
}

// TestCertNoPTY: a certificate's permit-pty grants a build principal no
// terminal.
func TestCertNoPTY(t *testing.T) {
	ts := newCertServer(t)
	c, err := ts.dialWith(cert(t, ts.ca, func(c *gossh.Certificate) { c.Extensions = map[string]string{"permit-pty": ""} }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err == nil {
		t.Fatal("a build principal got a terminal")
	}
}

// TestCertOnlyAsBuildUser: a valid certificate logs in as the build
// user only, whatever its principals name.
func TestCertOnlyAsBuildUser(t *testing.T) {
	ts := newCertServer(t)
	signer := cert(t, ts.ca, func(c *gossh.Certificate) { c.ValidPrincipals = []string{"ci-build", "root"} })
	for _, user := range []string{"root", "ci-build"} {
		c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{User: user, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
			t.Fatalf("logged in as %s", user)
		}
		ts.waitRecord(t, "certificate refused", fmt.Sprintf("user %q is not the build user", user))
	}
	// The control: the same certificate as the build user.
	if _, err := ts.args(t, signer, "nix-store --serve --write"); err != nil {
		t.Fatalf("as the build user: %v", err)
	}
}
