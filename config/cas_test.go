package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/policy"
)

// caDoc is a configuration with one CA whose key is key and whose
// revoked file is revoked (none when empty).
func caDoc(key, revoked string) string {
	s := "user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = \"" + key + "\"\n"
	if revoked != "" {
		s += "revoked = \"" + revoked + "\"\n"
	}
	return s + "[[cas.principals]]\nname = \"ci-x\"\nrole = \"build\"\n"
}

func TestLoadCAKey(t *testing.T) {
	pk, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(keyA))
	cfg, err := Load(write(t, caDoc(keyA, ""), ""))
	if err != nil {
		t.Fatal(err)
	}
	ca := cfg.CA("ci")
	if string(ca.Key) != string(pk.Marshal()) || ca.Fingerprint != gossh.FingerprintSHA256(pk) || ca.Revocation != nil {
		t.Errorf("CA = %+v", ca)
	}
	// The same key from a .pub file.
	pub := filepath.Join(t.TempDir(), "ca.pub")
	os.WriteFile(pub, []byte(keyA+"\n"), 0o644)
	cfg, err = Load(write(t, caDoc(pub, ""), ""))
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.CA("ci").Key) != string(pk.Marshal()) {
		t.Error("the key from the .pub file differs")
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	certLine := func() string {
		pk, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(keyA))
		return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(&gossh.Certificate{Key: pk, CertType: gossh.UserCert, SignatureKey: pk, Signature: &gossh.Signature{Format: "ssh-ed25519", Blob: make([]byte, 64)}})))
	}()
	broken := filepath.Join(dir, "broken.revoked")
	os.WriteFile(broken, []byte("serial:1\nserial:x\n"), 0o644)
	tests := []struct{ name, doc, want string }{
		{"not a key", caDoc("ssh-ed25519 AAAAnotbase64!", ""), `:2: CA "ci": key: not an OpenSSH public key line`},
		{"missing file", caDoc("/nonexistent/ca.pub", ""), `:2: CA "ci": key: open /nonexistent/ca.pub: no such file or directory`},
		{"options", caDoc(`cert-authority `+keyA, ""), "a CA's key has no options"},
		{"certificate", caDoc(certLine, ""), "cas[0].key: a certificate cannot be a CA"},
		{"same key twice", caDoc(keyA, "") + "[[cas]]\nname = \"ci2\"\nkey = \"" + keyA + "\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", `:8: CA "ci2": key SHA256:`},
		{"missing revoked file", caDoc(keyA, "/nonexistent/ci.revoked"), `CA "ci": revoked: /nonexistent/ci.revoked does not exist: create it empty (touch /nonexistent/ci.revoked), or remove revoked =`},
		{"broken revoked file", caDoc(keyA, broken), `CA "ci": revoked: ` + broken + `:2: serial "x" is not a decimal number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.doc, ""))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// TestRevokedFileFollowsChanges: the revoked file is read again when it
// changes, and while it is broken or gone every certificate is revoked.
func TestRevokedFileFollowsChanges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ci.revoked")
	os.WriteFile(p, nil, 0o644)
	cfg, err := Load(write(t, caDoc(keyA, p), ""))
	if err != nil {
		t.Fatal(err)
	}
	rev := cfg.CA("ci").Revocation
	id := policy.CertID{Serial: 5, KeyID: "run-1", Key: []byte("k"), CAKey: []byte("ca")}
	check := func(step, want string) {
		t.Helper()
		if got := rev.Revoked(id); !strings.Contains(got, want) || (want == "") != (got == "") {
			t.Errorf("%s: Revoked = %q; want %q", step, got, want)
		}
	}
	check("empty", "")
	os.WriteFile(p, []byte("serial:5\n"), 0o644)
	check("serial added", "serial 5 is revoked ("+p+":1)")
	os.WriteFile(p, []byte("id:run-1\n"), 0o644) // the same size
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	check("replaced by an ID", `key ID "run-1" is revoked`)
	os.WriteFile(p, []byte("id:run-2\nbogus\n"), 0o644)
	check("broken", "the CA's revoked file cannot be used")
	os.Remove(p)
	check("removed", "the CA's revoked file cannot be used")
	os.WriteFile(p, []byte("id:run-2\n"), 0o644)
	check("fixed", "")
	// An OpenSSH KRL in its place (ssh-keygen -k; it revokes nothing
	// of this CA's).
	krlData, err := os.ReadFile("../krl/testdata/ssh-keygen.krl")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, krlData, 0o644)
	check("a KRL", "")
	os.WriteFile(p, append([]byte{}, krlData[:len(krlData)-3]...), 0o644)
	check("a truncated KRL", "krl: section")
}
