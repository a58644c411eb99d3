package policy

import (
	"strings"
	"testing"
	"time"
)

const casConfig = `user = "b"

[[keys]]
name = "laptop"
role = "build"

[[cas]]
name = "ci"
key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyFakeKeyFakeKeyFakeKeyFakeKeyFakeKey ci-ca"
revoked = "/etc/nixgate/ci.revoked"

[[cas.principals]]
name = "ci-repo-x"   # the certificate's principal
role = "build"
max_builds = 2
build_timeout = "1h"
from = ["10.0.0.0/8"]

[[cas.principals]]
name = "ci-cache"
role = "substitute"
max_sessions = 3

[[cas]]
name = "people"
key = "/etc/nixgate/people-ca.pub"

[[cas.principals]]
name = "alice"
role = "shell"
expires = 2030-01-01
`

func TestParseCAs(t *testing.T) {
	cfg, err := Parse("cas.toml", []byte(casConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.CAs) != 2 {
		t.Fatalf("CAs = %+v; want 2", cfg.CAs)
	}
	ci, people := cfg.CA("ci"), cfg.CA("people")
	if ci == nil || ci.Line != 7 || ci.Revoked != "/etc/nixgate/ci.revoked" || !strings.HasPrefix(ci.PublicKey, "ssh-ed25519 ") || ci.Key != nil {
		t.Errorf("CA ci = %+v", ci)
	}
	if got := strings.Join(ci.Principals, ","); got != "ci-repo-x,ci-cache" {
		t.Errorf("CA ci principals = %q", got)
	}
	if people == nil || people.PublicKey != "/etc/nixgate/people-ca.pub" || people.Line != 24 {
		t.Errorf("CA people = %+v", people)
	}
	tests := []struct {
		name  string
		check func(k *Key) bool
	}{
		{"ci-repo-x", func(k *Key) bool {
			return k.CA == "ci" && k.Role == RoleBuild && k.MaxBuilds == 2 && k.Limits.BuildTimeout == time.Hour &&
				k.AllowsFrom(netipMust("10.1.1.1")) && !k.AllowsFrom(netipMust("192.0.2.1")) && k.Line == 12 && k.PublicKey == ""
		}},
		{"ci-cache", func(k *Key) bool {
			return k.CA == "ci" && k.Role == RoleSubstitute && k.MaxSessions == 3 && k.Line == 19
		}},
		{"alice", func(k *Key) bool {
			return k.CA == "people" && k.Role == RoleShell && k.Expires.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) && k.Line == 28
		}},
		{"laptop", func(k *Key) bool { return k.CA == "" }},
	}
	for _, tt := range tests {
		k := cfg.Key(tt.name)
		if k == nil || !tt.check(k) {
			t.Errorf("key %s = %+v", tt.name, k)
		}
	}
	if cfg.CA("nobody") != nil {
		t.Error("CA(nobody) is not nil")
	}
}

func TestParseCAErrors(t *testing.T) {
	head := "user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = \"ssh-ed25519 AAAA ci\"\n"
	tests := []struct {
		name, doc, want string
	}{
		{"only a CA", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", ""},
		{"no principals", head, "bad.toml:2: cas[0].principals: none: add a [[cas.principals]] entry"},
		{"missing name", "user = \"b\"\n[[cas]]\nkey = \"ssh-ed25519 AAAA\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:2: cas[0].name: missing"},
		{"missing key", "user = \"b\"\n[[cas]]\nname = \"ci\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:2: cas[0].key: missing"},
		{"relative path", "user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = \"ca.pub\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:4: cas[0].key: \"ca.pub\" is neither"},
		{"certificate as CA", "user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = \"ssh-ed25519-cert-v01@openssh.com AAAA\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "cas[0].key: a certificate cannot be a CA"},
		{"relative revoked", head + "revoked = \"ci.revoked\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:5: cas[0].revoked: \"ci.revoked\" must be an absolute path"},
		{"principal without role", head + "[[cas.principals]]\nname = \"p\"\n", "bad.toml:5: cas[0].principals[0].role: missing"},
		{"principal bad role", head + "[[cas.principals]]\nname = \"p\"\nrole = \"root\"\n", "bad.toml:7: cas[0].principals[0].role: unknown role \"root\""},
		{"principal bad name", head + "[[cas.principals]]\nname = \"a b\"\nrole = \"build\"\n", "bad.toml:6: cas[0].principals[0].name: \"a b\""},
		{"principal clashes with key", "user = \"b\"\n[[keys]]\nname = \"p\"\nrole = \"build\"\n" + head[len("user = \"b\"\n"):] + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "cas[0].principals[0].name: \"p\" is used by another key"},
		{"principal in two CAs", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n[[cas]]\nname = \"ci2\"\nkey = \"ssh-ed25519 AAAA\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:12: cas[1].principals[0].name: \"p\" is used by another key"},
		{"two CAs one name", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n[[cas]]\nname = \"ci\"\nkey = \"ssh-ed25519 AAAA\"\n[[cas.principals]]\nname = \"q\"\nrole = \"build\"\n", "bad.toml:9: cas[1].name: \"ci\" is used by another CA"},
		{"second principal's line", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n[[cas.principals]]\nname = \"q\"\nrole = \"substitute\"\nmax_builds = 1\n", "bad.toml:11: cas[0].principals[1].max_builds: is for build keys"},
		{"build caps on substitute", head + "[[cas.principals]]\nname = \"p\"\nrole = \"substitute\"\nbuild_timeout = \"1h\"\n", "bad.toml:8: cas[0].principals[0].build_timeout: build limits are for build keys"},
		{"public_key in a principal", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\npublic_key = \"ssh-ed25519 AAAA\"\n", "bad.toml:8: unknown setting \"cas.principals.public_key\""},
		{"misspelt principal setting", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\nmax_build = 2\n", "bad.toml:8: unknown setting \"cas.principals.max_build\": did you mean \"cas.principals.max_builds\"?"},
		{"misspelt CA setting", head + "revokd = \"/x\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:5: unknown setting \"cas.revokd\": did you mean \"cas.revoked\"?"},
		{"case of a CA setting", head + "Revoked = \"/x\"\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", "bad.toml:5: unknown setting \"Revoked\": did you mean \"revoked\"? (names are exact)"},
		{"wrong type", head + "[[cas.principals]]\nname = \"p\"\nrole = \"build\"\nfrom = \"10.0.0.0/8\"\n", "bad.toml:8: cas.principals.from: a TOML string where a list of strings belongs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tt.doc))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v; want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "policy: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line of package policy", err)
			}
		})
	}
}

func TestCertKey(t *testing.T) {
	cfg, err := Parse("cas.toml", []byte(casConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ca         string
		principals []string
		want       string // the key's name, or part of the error
		ok         bool
	}{
		{"ci", []string{"ci-repo-x"}, "ci-repo-x", true},
		{"ci", []string{"someone", "ci-cache"}, "ci-cache", true},
		{"ci", []string{"ci-repo-x", "ci-repo-x"}, "ci-repo-x", true},
		{"people", []string{"alice"}, "alice", true},
		// A principal of another CA, a plain key's name, or none.
		{"ci", []string{"alice"}, `none of the certificate's principals ["alice"] is mapped by CA "ci"`, false},
		{"people", []string{"ci-repo-x"}, "is mapped by CA \"people\"", false},
		{"ci", []string{"laptop"}, "is mapped by CA \"ci\"", false},
		{"ci", nil, "is mapped", false},
		{"ci", []string{""}, "is mapped", false},
		// Exact bytes: no case folding, no trimming.
		{"ci", []string{"CI-REPO-X"}, "is mapped", false},
		{"ci", []string{"ci-repo-x "}, "is mapped", false},
		// Two mapped principals: which role would be the client's choice.
		{"ci", []string{"ci-repo-x", "ci-cache"}, `more than one principal that CA "ci" maps ("ci-repo-x" and "ci-cache")`, false},
		{"nobody", []string{"ci-repo-x"}, `no certificate authority "nobody"`, false},
	}
	for _, tt := range tests {
		k, err := cfg.CertKey(tt.ca, tt.principals)
		switch {
		case tt.ok && (err != nil || k == nil || k.Name != tt.want):
			t.Errorf("CertKey(%q, %q) = %v, %v; want key %q", tt.ca, tt.principals, k, err, tt.want)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CertKey(%q, %q) error = %v; want %q", tt.ca, tt.principals, err, tt.want)
		}
	}
	var nilCfg *Config
	if _, err := nilCfg.CertKey("ci", []string{"ci-repo-x"}); err == nil {
		t.Error("a nil Config mapped a principal")
	}
}

// TestDecideCertKey: a principal's key is decided as any key is, by its
// role and settings.
func TestDecideCertKey(t *testing.T) {
	cfg, err := Parse("cas.toml", []byte(casConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	tests := []struct {
		key, cmd, remote string
		allow            bool
		args             string
	}{
		{"ci-repo-x", "nix-store --serve --write", "10.0.0.1", true, "--serve --write"},
		{"ci-repo-x", "nix-store --serve --write", "192.0.2.1", false, ""},
		{"ci-cache", "nix-store --serve --write", "192.0.2.1", true, "--serve"},
		{"ci-cache", "nix-daemon --stdio", "192.0.2.1", true, "--stdio"},
		{"ci-cache", "bash", "192.0.2.1", false, ""},
	}
	for _, tt := range tests {
		d := e.Decide(Request{Key: tt.key, Command: tt.cmd, Remote: netipMust(tt.remote)})
		if d.Allow != tt.allow || strings.Join(d.Args, " ") != tt.args {
			t.Errorf("Decide(%s, %q from %s) = %v %q (%s); want %v %q", tt.key, tt.cmd, tt.remote, d.Allow, d.Args, d.Reason, tt.allow, tt.args)
		}
	}
}
