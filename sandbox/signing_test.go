package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestSigning: where the daemon signs, root's key in nix.conf; where the
// account's own Nix does (the sandbox modes, a local store of its own),
// a key the account makes in what Nix sees as /nix, given to that Nix
// through [nix] env — which, applied to the configuration as printed,
// is what SecretKeyFiles then reads, and where OutsidePath finds the key.
func TestSigning(t *testing.T) {
	t.Setenv("NIX_CONF_DIR", t.TempDir()) // no nix.conf of the machine's
	const keys = "[[keys]]\nname = \"k\"\nrole = \"substitute\"\n"
	a := Account{Name: "u", Home: "/home/u"}
	for _, tt := range []struct {
		name, doc, self string
		as, command     string // command: the first, in part
		secret, sees    string
		env, where      string // "" for none
		newTable        bool
	}{
		{name: "daemon", doc: "user = \"u\"\n", self: "root", as: "root",
			command: "nix-store --generate-binary-cache-key h-1 /etc/nix/cache-priv-key.pem /etc/nix/cache-pub-key.pem",
			secret:  "/etc/nix/cache-priv-key.pem", sees: "/etc/nix/cache-priv-key.pem"},
		{name: "daemon, named", doc: "user = \"u\"\n[nix]\nstore = \"daemon\"\n", self: "root", as: "root",
			command: "nix-store --generate-binary-cache-key", secret: "/etc/nix/cache-priv-key.pem", sees: "/etc/nix/cache-priv-key.pem"},
		{name: "userns, as the account", doc: "user = \"u\"\n[sandbox]\nmode = \"userns\"\n", self: "u", as: "u",
			command: "mkdir -p -m 700 /home/u/.nix/var/nixgate && nix-store --store dummy:// --generate-binary-cache-key h-1 /home/u/.nix/var/nixgate/cache-priv-key.pem /home/u/.nix/var/nixgate/cache-pub-key.pem",
			secret:  "/home/u/.nix/var/nixgate/cache-priv-key.pem", sees: "/nix/var/nixgate/cache-priv-key.pem",
			env: `env = { NIX_CONFIG = "extra-secret-key-files = /nix/var/nixgate/cache-priv-key.pem" }`, where: "add to /etc/n.toml", newTable: true},
		{name: "proot, run by root, env kept", doc: "user = \"u\"\n[nix]\nenv = { NIX_CONFIG = \"substituters =\", TMPDIR = \"/var/tmp\" }\n[sandbox]\nmode = \"proot\"\nstore_dir = \"/srv/n\"\n", self: "root", as: "root",
			command: "runuser -u u -- sh -c 'mkdir -p -m 700 /srv/n/var/nixgate && nix-store",
			secret:  "/srv/n/var/nixgate/cache-priv-key.pem", sees: "/nix/var/nixgate/cache-priv-key.pem",
			env: `env = { NIX_CONFIG = "substituters =\nextra-secret-key-files = /nix/var/nixgate/cache-priv-key.pem", TMPDIR = "/var/tmp" }`, where: "in /etc/n.toml, replace [nix] env (line 3) with"},
		{name: "a local store of the account's own", doc: "user = \"u\"\n[nix]\nstore = \"local?root=/srv/s\"\n", self: "root", as: "root",
			command: "runuser -u u -- sh -c 'mkdir -p -m 700 /srv/s/nix/var/nixgate && ",
			secret:  "/srv/s/nix/var/nixgate/cache-priv-key.pem", sees: "/srv/s/nix/var/nixgate/cache-priv-key.pem",
			env: `env = { NIX_CONFIG = "extra-secret-key-files = /srv/s/nix/var/nixgate/cache-priv-key.pem" }`, where: "in /etc/n.toml, add to [nix] (line 2)"},
	} {
		cfg, err := policy.Parse("/etc/n.toml", []byte(tt.doc+keys))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		s := Signing(cfg, a, "h-1", tt.self)
		if s.As != tt.as || len(s.Commands) == 0 || !strings.HasPrefix(s.Commands[0], tt.command) || s.SecretKey != tt.secret || s.NixSees != tt.sees || s.Env != tt.env || s.EnvWhere != tt.where || s.NewTable != tt.newTable {
			t.Errorf("%s: Signing = %+v", tt.name, s)
			continue
		}
		if s.Env == "" {
			if !strings.Contains(strings.Join(s.Commands, "\n"), "echo 'extra-secret-key-files = "+s.SecretKey+"' >> /etc/nix/nix.conf && systemctl restart nix-daemon") {
				t.Errorf("%s: the daemon is not told: %q", tt.name, s.Commands)
			}
			continue
		}
		// The env line applied as EnvWhere says: the configuration still
		// parses, and its Nix signs with the key.
		doc := tt.doc
		if i := strings.Index(doc, "env = "); i >= 0 {
			j := i + strings.Index(doc[i:], "\n")
			doc = doc[:i] + s.Env + doc[j:]
		} else if s.NewTable {
			doc += "[nix]\n" + s.Env + "\n"
		} else {
			doc = strings.Replace(doc, "[nix]\n", "[nix]\n"+s.Env+"\n", 1)
		}
		signed, err := policy.Parse("/etc/n.toml", []byte(doc+keys))
		if err != nil {
			t.Errorf("%s: the configuration with %s: %v", tt.name, s.Env, err)
			continue
		}
		if got := SecretKeyFiles(signed, a); !slices.Equal(got, []string{s.NixSees}) {
			t.Errorf("%s: secret-key-files after the advice = %q; want %s", tt.name, got, s.NixSees)
		}
		if got := OutsidePath(signed, a, s.NixSees); got != s.SecretKey {
			t.Errorf("%s: OutsidePath(%s) = %s; want %s", tt.name, s.NixSees, got, s.SecretKey)
		}
		for k, v := range cfg.Nix.Env {
			if k != "NIX_CONFIG" && signed.Nix.Env[k] != v {
				t.Errorf("%s: %s lost: %q", tt.name, k, signed.Nix.Env)
			}
		}
	}
}

func TestTOMLString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":              `"plain"`,
		"a \"b\" \\c":        `"a \"b\" \\c"`,
		"line\nnext\ttab":    `"line\nnext\ttab"`,
		"bell\x07 del\x7f é": `"bell\u0007 del\u007F é"`,
	} {
		if got := tomlString(in); got != want {
			t.Errorf("tomlString(%q) = %s; want %s", in, got, want)
		}
	}
}
