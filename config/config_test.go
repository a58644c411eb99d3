package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// Fixed test keys (public halves only).
const (
	keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0nUc4ChNnd1VOVyS6mW3eiBkNR0bHtAnNALhG1n7cC a@test"
	keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnCrEjEfi2LXbiSlJs+jHLbdmoLk8Zx5Wa3TP1FsS1R b@test"
)

// write writes the configuration doc, and when keysFile is not empty a
// keys file named by it, into a new directory; it returns the
// configuration's path. "@KEYS@" in doc is the keys file's path.
func write(t *testing.T, doc, keysFile string) string {
	t.Helper()
	dir := t.TempDir()
	kp := filepath.Join(dir, "authorized_keys")
	if keysFile != "" {
		if err := os.WriteFile(kp, []byte(keysFile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "k.toml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(doc, "@KEYS@", kp)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func key(name, pub string) string {
	s := "[[keys]]\nname = \"" + name + "\"\nrole = \"build\"\n"
	if pub != "" {
		s += "public_key = \"" + pub + "\"\n"
	}
	return s
}

func TestLoad(t *testing.T) {
	p := write(t, "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n"+key("a", keyA)+key("c", ""),
		"# builders\n"+`name="ci",role="substitute",from="10.0.0.0/8,192.0.2.1",expiry-time="20270131Z",max-sessions="4" `+keyB+"\n")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 3 {
		t.Fatalf("Keys = %+v; want a, c and ci", cfg.Keys)
	}
	ci := cfg.Key("ci")
	if ci == nil || ci.Role != policy.RoleSubstitute || ci.MaxSessions != 4 || ci.PublicKey != keyB || ci.Line != 2 || !strings.HasSuffix(ci.Source, "authorized_keys") {
		t.Fatalf("ci = %+v", ci)
	}
	if !ci.Expires.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) || !ci.Expired(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ci.Expires = %v", ci.Expires)
	}
	// Every public key parsed once, here: its fingerprint is the key's
	// identity at login.
	for name, pub := range map[string]string{"a": keyA, "ci": keyB, "c": ""} {
		want := ""
		if pub != "" {
			e, _ := keys.ParseLine(pub)
			want = keys.Fingerprint(e.Key)
		}
		if got := cfg.Key(name).Fingerprint; got != want {
			t.Errorf("key %s: Fingerprint = %q; want %q", name, got, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ name, doc, keysFile, want string }{
		{"bad public_key", "user = \"b\"\n" + key("a", "ssh-ed25519 AAAA"), "", "config: @DIR@/k.toml:2: key \"a\": public_key: not an OpenSSH public key"},
		{"options in public_key", "user = \"b\"\n" + key("a", "restrict "+keyA), "", "k.toml:2: key \"a\": public_key: options belong"},
		{"same key twice", "user = \"b\"\n" + key("a", keyA) + key("b", keyA), "", "k.toml:6: key \"b\": public_key SHA256:"},
		{"same key in the keys file", "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n" + key("a", keyA), "role=\"build\",name=\"x\" " + keyA + "\n", "authorized_keys:1: key \"x\": public_key SHA256:"},
		{"name taken by the keys file", "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n" + key("a", keyA), "role=\"build\",name=\"a\" " + keyB + "\n", "authorized_keys:1: key 1.name: \"a\" is used by another key"},
		// from="10.0.0.0/8\x2c0.0.0.0/0" is one value, not two networks.
		{"from escape", "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n", `role="build",from="10.0.0.0/8\x2c0.0.0.0/0" ` + keyA + "\n", "authorized_keys:1: key 1.from[0]"},
		{"keys file syntax", "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n", keyA + "\n", "keys: @DIR@/authorized_keys:1: no role"},
		{"bad role in the keys file", "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n", `role="admin" ` + keyA + "\n", "authorized_keys:1: key 1.role: unknown role"},
		{"the file itself", "user = \"root\"\n" + key("a", keyA), "", "policy: @DIR@/k.toml:1: user: root is refused"},
	}
	for _, tt := range tests {
		p := write(t, tt.doc, tt.keysFile)
		want := strings.ReplaceAll(tt.want, "@DIR@", filepath.Dir(p))
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Load = %v; want an error containing %q", tt.name, err, want)
		}
	}
}

func TestParseReadsTheKeysFile(t *testing.T) {
	p := write(t, "", "role=\"build\" "+keyA+"\n")
	cfg, err := Parse("(embedded)", []byte("user = \"b\"\nauthorized_keys = \""+filepath.Join(filepath.Dir(p), "authorized_keys")+"\"\n"))
	if err != nil || cfg.Key("a@test") == nil || cfg.Source != "(embedded)" {
		t.Fatalf("Parse = %+v, %v; want key a@test from the keys file", cfg, err)
	}
}

func TestCheckGrant(t *testing.T) {
	p := write(t, "user = \"b\"\nauthorized_keys = \"@KEYS@\"\n"+key("a", keyA), "")
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := keys.ParseGrantKey(keyA)
	b, _ := keys.ParseGrantKey(keyB)
	tests := []struct {
		g    keys.Grant
		want string // "" when allowed
	}{
		{keys.Grant{Name: "new", Role: "build", Key: b}, ""},
		{keys.Grant{Name: "a", Role: "build", Key: b}, `a key named "a" exists already`},
		{keys.Grant{Name: "new", Role: "build", Key: a}, `is authorized already as "a"`},
		{keys.Grant{Name: "new", Role: "admin", Key: b}, "unknown role"},
		{keys.Grant{Name: "new", Role: "build", From: []string{"nowhere"}, Key: b}, "from[0]"},
		{keys.Grant{Name: "bad name", Role: "build", Key: b}, "name"},
	}
	for _, tt := range tests {
		err := CheckGrant(cfg, tt.g)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckGrant(%s, %s) = %v; want %q", tt.g.Name, tt.g.Role, err, tt.want)
		}
	}
	if len(cfg.Keys) != 1 {
		t.Errorf("CheckGrant changed the configuration: %+v", cfg.Keys)
	}
	if k := Granted(cfg, keys.Grant{Name: "a", Key: a}); k == nil || k.Name != "a" {
		t.Errorf("Granted(a, key a) = %v", k)
	}
	if k := Granted(cfg, keys.Grant{Name: "a", Key: b}); k != nil {
		t.Errorf("Granted(a, key b) = %v; want nil", k)
	}
}
