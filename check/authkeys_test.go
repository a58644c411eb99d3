package check

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"golang.org/x/crypto/ssh"
)

// testKey returns a fixed ed25519 public key line with comment k<i>@test.
func testKey(t *testing.T, i byte) (line string, pub ssh.PublicKey) {
	t.Helper()
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s k%d@test", keys.AuthorizedKey(pub), i), pub
}

// TestCheckAuthorizedKeysFile: blank lines, comments and lines that are
// no key are passed over, as sshd passes over them; every key line that
// does not force a restricted nixgate exec of a configured key fails.
func TestCheckAuthorizedKeysFile(t *testing.T) {
	k := make([]string, 8)
	fp := make([]string, 8)
	for i := 1; i < len(k); i++ {
		var pub ssh.PublicKey
		k[i], pub = testKey(t, byte(i))
		fp[i] = keys.Fingerprint(pub)
	}
	doc := strings.Join([]string{
		"# builders",
		"",
		`restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci",from="10.0.0.0/8" ` + k[1],
		`command="nixgate exec --key ci2" ` + k[2],
		"garbage",
		"   # an indented comment",
		k[3],
		`restrict,command="nixgate exec --key ghost" ` + k[4],
		`restrict,command="nixgate exec --key x",from=bad ` + k[5],
		`restrict,command="nixgate exec --key ci3" ` + k[6] + "\r",
		`restrict,command="nixgate exec --key ci; exec /bin/sh" ` + k[7],
		"",
	}, "\n")
	p := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &policy.Config{Keys: []policy.Key{{Name: "ci"}, {Name: "ci2"}, {Name: "ci3"}, {Name: "x"}}}
	want := []Result{
		{"authorized_keys", Fail, p + ":4 (ci2) forces nixgate but lacks restrict: forwarding and a PTY stay open", "start the line with restrict,"},
		{"authorized_keys", Fail, p + ":7 (k3@test) does not force nixgate exec: that key gets a shell", "nixgate keys revoke --authorized-keys " + p + " " + fp[3] + ", then nixgate keys authorize --exec"},
		{"authorized_keys", Fail, p + ":8 (ghost) forces nixgate exec --key ghost, a key the configuration does not have: nixgate refuses it", "add a [[keys]] entry named ghost, or nixgate keys revoke --authorized-keys " + p + " ghost"},
		{"authorized_keys", Fail, p + ":9 (k5@test) does not force nixgate exec: that key gets a shell", "nixgate keys revoke --authorized-keys " + p + " " + fp[5] + ", then nixgate keys authorize --exec"},
		{"authorized_keys", Fail, p + ":11 (k7@test) does not force nixgate exec: that key gets a shell", "nixgate keys revoke --authorized-keys " + p + " " + fp[7] + ", then nixgate keys authorize --exec"},
	}
	got := checkAuthorizedKeysFile(cfg, p)
	if len(got) != len(want) {
		t.Fatalf("checkAuthorizedKeysFile = %d results; want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d = %+v\nwant %+v", i, got[i], want[i])
		}
	}

	clean := "# only good lines\n\n" + `restrict,command="nixgate exec --key ci" ` + k[1] + "\n" + `restrict,command="nixgate exec --key ci2" ` + k[2]
	if err := os.WriteFile(p, []byte(clean), 0o644); err != nil {
		t.Fatal(err)
	}
	okWant := Result{"authorized_keys", OK, "2 key(s) in " + p + ", each restricted to nixgate exec", ""}
	if got := checkAuthorizedKeysFile(cfg, p); len(got) != 1 || got[0] != okWant {
		t.Errorf("checkAuthorizedKeysFile(clean) = %+v; want %+v", got, okWant)
	}
}
