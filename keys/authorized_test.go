package keys

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// seedKey returns a fixed ed25519 public key line with comment
// k<i>@test.
func seedKey(t testing.TB, i byte) Entry {
	t.Helper()
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Key: pub, Comment: fmt.Sprintf("k%d@test", i)}
}

// authorizedDoc is an authorized_keys file with a line of every kind:
// comments, blank lines, a line that is no key, keys forcing nixgate
// exec with and without restrict, a bare key, malformed options, a CRLF
// line, and a command that runs more than nixgate.
func authorizedDoc(t testing.TB) (doc string, k []Entry) {
	k = make([]Entry, 8)
	for i := 1; i < len(k); i++ {
		k[i] = seedKey(t, byte(i))
	}
	doc = strings.Join([]string{
		"# builders",
		"",
		`restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci",from="10.0.0.0/8" ` + k[1].String(),
		`command="nixgate exec --key ci2" ` + k[2].String(),
		"garbage",
		"   # an indented comment",
		k[3].String(),
		`restrict,name="named",command="nixgate exec --key ghost" ` + k[4].String(),
		`restrict,command="nixgate exec --key x",from=bad ` + k[5].String(),
		`restrict,command="nixgate exec --key ci3" ` + k[6].String() + "\r",
		`restrict,command="nixgate exec --key ci; exec /bin/sh" ` + k[7].String(),
		"",
	}, "\n")
	return doc, k
}

func TestForcedCommandPresent(t *testing.T) {
	doc, k := authorizedDoc(t)
	p := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	other := seedKey(t, 9)
	tests := []struct {
		name string
		g    Grant
		want bool
		err  string // in the error; "" for none
	}{
		{"there", Grant{Name: "ci", Key: k[1]}, true, ""},
		{"there, CRLF", Grant{Name: "ci3", Key: k[6]}, true, ""},
		{"not there", Grant{Name: "new", Key: other}, false, ""},
		{"another name", Grant{Name: "new", Key: k[1]}, false, "key " + Fingerprint(k[1].Key) + " is in " + p + " already (line 3), but not as restricted nixgate exec --key new"},
		{"not restricted", Grant{Name: "ci2", Key: k[2]}, false, "(line 4)"},
		{"no command", Grant{Name: "k3@test", Key: k[3]}, false, "(line 7)"},
		{"malformed options", Grant{Name: "x", Key: k[5]}, false, "(line 9)"},
		{"more than nixgate", Grant{Name: "ci", Key: k[7]}, false, "(line 11)"},
	}
	for _, tt := range tests {
		got, err := ForcedCommandPresent(p, tt.g)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: ForcedCommandPresent = %v, %v; want %v, %q", tt.name, got, err, tt.want, tt.err)
		}
	}
	if got, err := ForcedCommandPresent(filepath.Join(t.TempDir(), "none"), tests[0].g); got || err != nil {
		t.Errorf("ForcedCommandPresent(a missing file) = %v, %v; want false, nil", got, err)
	}
}

func TestAddForcedCommandAndRevoke(t *testing.T) {
	doc, k := authorizedDoc(t)
	p := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	// Present already: nothing changes.
	if err := AddForcedCommand(p, Grant{Name: "ci", Key: k[1]}, "nixgate", "/c"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != doc {
		t.Fatalf("AddForcedCommand(present) changed the file:\n%q", got)
	}
	if err := AddForcedCommand(p, Grant{Name: "k3", Key: k[3]}, "nixgate", "/c"); err == nil || !strings.Contains(err.Error(), "(line 7)") {
		t.Errorf("AddForcedCommand(a key with a shell) = %v; want line 7", err)
	}
	g := Grant{Name: "new", Key: seedKey(t, 9)}
	if err := AddForcedCommand(p, g, "/usr/bin/nixgate", "/c"); err != nil {
		t.Fatal(err)
	}
	added := g.ForcedCommandLine("/usr/bin/nixgate", "/c")
	if got, _ := os.ReadFile(p); string(got) != doc+added+"\n" {
		t.Fatalf("after AddForcedCommand:\n%q\nwant the file and one line more", got)
	}
	// By name (the command's --key, then a name=), and by fingerprint;
	// every other line stays byte for byte.
	for _, what := range []string{"new", "named", Fingerprint(k[3].Key)} {
		if n, err := Revoke(p, what); n != 1 || err != nil {
			t.Errorf("Revoke(%s) = %d, %v", what, n, err)
		}
	}
	want := strings.Replace(strings.Replace(doc, k[3].String()+"\n", "", 1), `restrict,name="named",command="nixgate exec --key ghost" `+k[4].String()+"\n", "", 1)
	if got, _ := os.ReadFile(p); string(got) != want {
		t.Errorf("after Revoke:\n%q\nwant\n%q", got, want)
	}
	if n, err := Revoke(p, "garbage"); n != 0 || err == nil || !strings.Contains(err.Error(), `no key named or with fingerprint "garbage"`) {
		t.Errorf("Revoke(garbage) = %d, %v; want nothing removed and an error", n, err)
	}
}
