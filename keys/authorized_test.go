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

func TestParseAuthorizedKeys(t *testing.T) {
	doc, k := authorizedDoc(t)
	type line struct {
		number  int
		name    string
		comment string
		nixgate bool
		err     bool
	}
	want := []line{
		{3, "ci", "k1@test", true, false},
		{4, "ci2", "k2@test", true, false},
		{5, "", "", false, true},
		{7, "k3@test", "k3@test", false, false},
		{8, "named", "k4@test", true, false},
		{9, "k5@test", "k5@test", false, false},
		{10, "ci3", "k6@test", true, false},
		{11, "k7@test", "k7@test", false, false},
	}
	got := ParseAuthorizedKeys([]byte(doc))
	if len(got) != len(want) {
		t.Fatalf("ParseAuthorizedKeys = %d lines; want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Number != w.number || g.Name != w.name || g.Comment != w.comment || g.ForcesNixgate() != w.nixgate || (g.Err != nil) != w.err {
			t.Errorf("line %d = number %d, name %q, comment %q, nixgate %v (%v), err %v; want %+v", i, g.Number, g.Name, g.Comment, g.ForcesNixgate(), g.ForcedErr, g.Err, w)
		}
		if g.Err == nil && g.ForcesNixgate() == (g.ForcedErr != nil) {
			t.Errorf("line %d: ForcesNixgate %v, ForcedErr %v", g.Number, g.ForcesNixgate(), g.ForcedErr)
		}
	}
	if f := got[0].Forced; f != (ForcedExec{Program: "/usr/local/bin/nixgate", Config: "/etc/nixgate/nixgate.toml", Key: "ci"}) {
		t.Errorf("line 3 forces %+v", f)
	}
	if Fingerprint(got[0].Key) != Fingerprint(k[1].Key) || !got[0].Restricted() || got[1].Restricted() {
		t.Errorf("line 3 key %s restricted %v, line 4 restricted %v", Fingerprint(got[0].Key), got[0].Restricted(), got[1].Restricted())
	}
	if v, ok := got[0].Option("from"); !ok || v != "10.0.0.0/8" {
		t.Errorf("line 3 from = %q, %v", v, ok)
	}
	// The line that is no key: its reason, a keys: error, and no entry.
	if bad := got[2]; bad.Key != nil || bad.Options != nil || bad.ForcedErr != nil || !strings.HasPrefix(bad.Err.Error(), "keys: not an OpenSSH public key line") {
		t.Errorf("line 5 = %+v", bad)
	}
	// The malformed options are why line 9 forces nothing.
	if err := got[5].ForcedErr; err == nil || err.Error() != "keys: option from: value must be in double quotes" {
		t.Errorf("line 9: ForcedErr = %v", err)
	}

	for _, doc := range []string{"", "\n", "\n\n  \n\t\r\n", "# c", "#" + k[1].String(), "  # c\r\n"} {
		if got := ParseAuthorizedKeys([]byte(doc)); len(got) != 0 {
			t.Errorf("ParseAuthorizedKeys(%q) = %+v; want no lines", doc, got)
		}
	}
	// The last line needs no newline.
	if got := ParseAuthorizedKeys([]byte("\n" + k[1].String())); len(got) != 1 || got[0].Number != 2 || got[0].Err != nil {
		t.Errorf("a last line without its newline: %+v", got)
	}
}

// FuzzParseAuthorizedKeys checks the one authorized_keys reader against
// the line parser, the option reader and the keys file: every line that
// is neither blank nor a comment comes back once, in order, read as
// ParseLine and ForcedExec read it alone.
func FuzzParseAuthorizedKeys(f *testing.F) {
	doc, _ := authorizedDoc(f)
	f.Add(doc)
	f.Add(`name="ci",role="build",from="10.0.0.0/8" ` + keyA + "\r\n# c\n\n" + keyB)
	f.Add(`restrict,command="nixgate exec --key ci",command="/bin/sh" ` + keyA + "\n  #" + keyB + "\nx")
	f.Fuzz(func(t *testing.T, doc string) {
		got := ParseAuthorizedKeys([]byte(doc))
		texts := strings.Split(doc, "\n")
		next := 0 // index into got
		for i, text := range texts {
			if trimmed := strings.TrimSpace(text); trimmed == "" || strings.HasPrefix(trimmed, "#") {
				if next < len(got) && got[next].Number == i+1 {
					t.Fatalf("line %d, %q, is a comment but was read: %+v", i+1, text, got[next])
				}
				continue
			}
			if next >= len(got) || got[next].Number != i+1 {
				t.Fatalf("line %d, %q, is missing from %+v", i+1, text, got)
			}
			l := got[next]
			next++
			e, err := ParseLine(text)
			if (err == nil) != (l.Err == nil) {
				t.Fatalf("line %d, %q: Err %v; ParseLine says %v", l.Number, text, l.Err, err)
			}
			if err != nil {
				if l.Key != nil || l.Options != nil || l.Comment != "" || l.Name != "" || l.ForcesNixgate() || !strings.HasPrefix(l.Err.Error(), "keys: ") {
					t.Fatalf("line %d, %q: no key, but %+v", l.Number, text, l)
				}
				continue
			}
			if e.String() != l.String() || l.Key == nil {
				t.Fatalf("line %d, %q: read as %q; ParseLine reads %q", l.Number, text, l.String(), e.String())
			}
			fe, ferr := e.ForcedExec()
			if (ferr == nil) != l.ForcesNixgate() || fe != l.Forced || (ferr != nil && ferr.Error() != l.ForcedErr.Error()) {
				t.Fatalf("line %d, %q: forces %+v, %v; ForcedExec says %+v, %v", l.Number, text, l.Forced, l.ForcedErr, fe, ferr)
			}
			if name := lineName(e, fe, ferr); name != l.Name {
				t.Fatalf("line %d, %q: name %q; want %q", l.Number, text, l.Name, name)
			}
		}
		if next != len(got) {
			t.Fatalf("%d lines read beyond the file's %d: %+v", len(got)-next, len(texts), got[next:])
		}
		// The keys file reads the same lines: where it accepts the file,
		// each of its keys is one of these lines, in order.
		if specs, err := ParseFile("fuzz", []byte(doc)); err == nil {
			if len(specs) != len(got) {
				t.Fatalf("ParseFile has %d keys; ParseAuthorizedKeys %d lines", len(specs), len(got))
			}
			for i, s := range specs {
				if s.Line != got[i].Number || Fingerprint(s.Key) != Fingerprint(got[i].Key) {
					t.Fatalf("ParseFile's key %d is line %d; ParseAuthorizedKeys's line %d", i, s.Line, got[i].Number)
				}
			}
		}
	})
}
