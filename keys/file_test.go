package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFile(t *testing.T) {
	doc := "# builders\n\n" +
		`name="ci",role="build",from="10.0.0.0/8,192.0.2.1",expiry-time="20270131Z",max-sessions="4" ` + keyA + "\n" +
		`restrict,role="substitute" ` + keyB + "\n"
	specs, err := ParseFile("k", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("got %d keys", len(specs))
	}
	ci := specs[0]
	if ci.Name != "ci" || ci.Role != "build" || len(ci.From) != 2 || ci.MaxSessions != 4 || ci.Line != 3 {
		t.Errorf("ci = %+v", ci)
	}
	if !ci.Expires.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ci.Expires = %v", ci.Expires)
	}
	if pk := ci.PublicKey(); pk != keyA {
		t.Errorf("ci.PublicKey() = %q; want %q", pk, keyA)
	}
	if specs[1].Name != "b@test" || specs[1].Role != "substitute" || specs[1].Line != 4 || specs[1].PublicKey() != keyB {
		t.Errorf("second = %+v", specs[1])
	}
}

func TestParseFileErrors(t *testing.T) {
	for line, want := range map[string]string{
		keyA: "k:1: no role",
		`role="build" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0nUc4ChNnd1VOVyS6mW3eiBkNR0bHtAnNALhG1n7cC`: "k:1: no name",
		`command="/bin/sh",role="build" ` + keyA:                                                        `option "command" is not supported`,
		`role=build ` + keyA:                                                                            "value must be in double quotes",
		`role="build",expiry-time="soon" ` + keyA:                                                       "expiry-time",
		`role="build",max-sessions="x" ` + keyA:                                                         "max-sessions",
		"garbage":                                                                                       "k:1: not an OpenSSH public key",
	} {
		if _, err := ParseFile("k", []byte(line+"\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFile(%q) = %v; want %q", line, err, want)
		}
	}
}

func TestLoadFileMissing(t *testing.T) {
	specs, err := LoadFile(filepath.Join(t.TempDir(), "none"))
	if err != nil || specs != nil {
		t.Errorf("LoadFile(missing) = %v, %v", specs, err)
	}
}

func TestHostKeyGeneratedOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s1, gen, err := LoadHostKeys(nil, dir)
	if err != nil || !gen || len(s1) != 1 {
		t.Fatalf("first LoadHostKeys = %v, %v, %v", s1, gen, err)
	}
	fi, err := os.Stat(filepath.Join(dir, GeneratedHostKeyName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v, %v", fi, err)
	}
	s2, gen, err := LoadHostKeys(nil, dir)
	if err != nil || gen {
		t.Fatalf("second LoadHostKeys = %v, %v", gen, err)
	}
	if Fingerprint(s1[0].PublicKey()) != Fingerprint(s2[0].PublicKey()) {
		t.Error("host key changed between starts")
	}
	pub, _ := os.ReadFile(filepath.Join(dir, GeneratedHostKeyName+".pub"))
	if !strings.HasPrefix(string(pub), AuthorizedKey(s1[0].PublicKey())) {
		t.Errorf(".pub = %q", pub)
	}
	os.Chmod(filepath.Join(dir, GeneratedHostKeyName), 0o644)
	if _, _, err := LoadHostKeys(nil, dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadHostKeys(0644) = %v", err)
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add(`name="ci",role="build",from="10.0.0.0/8" ` + keyA + "\n# c\n" + keyB)
	f.Add(`role="substitute",expiry-time="202701311200Z" ` + keyB)
	f.Fuzz(func(t *testing.T, doc string) {
		specs, err := ParseFile("fuzz", []byte(doc))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "keys: fuzz") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, s := range specs {
			if s.Role == "" || s.Name == "" || s.Line < 1 {
				t.Fatalf("spec without role, name or line: %+v", s)
			}
		}
	})
}

// TestParseFileLongLine: the keys file stopped at a line of 64 KiB or
// more ("token too long"); sshd reads lines of any length, and so does
// the one reader.
func TestParseFileLongLine(t *testing.T) {
	comment := strings.Repeat("c", 70*1024)
	specs, err := ParseFile("k", []byte(`name="ci",role="build" `+keyA+comment+"\n"))
	if err != nil || len(specs) != 1 || specs[0].Comment != "a@test"+comment {
		t.Fatalf("ParseFile(a 70 KiB line) = %d keys, %v", len(specs), err)
	}
}
