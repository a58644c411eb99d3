package policy

import (
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy/policytest"
)

// FuzzParseCommand checks that the word parser never panics, and that
// whatever it accepts is made of words without shell metacharacters that
// could only have come from quoting.
func FuzzParseCommand(f *testing.F) {
	cases, err := policytest.Load(testStores)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		f.Add(c.Command)
	}
	f.Add("nix-store --serve --write --store 'a'\\''b'")
	f.Fuzz(func(t *testing.T, cmd string) {
		argv, err := ParseCommand(cmd)
		if err != nil {
			if argv != nil {
				t.Fatalf("ParseCommand(%q) returned argv %q with error %v", cmd, argv, err)
			}
			return
		}
		if len(argv) == 0 {
			t.Fatalf("ParseCommand(%q) returned no words and no error", cmd)
		}
		if strings.ContainsAny(cmd, "\x00\n\r") {
			t.Fatalf("ParseCommand(%q) accepted a control character", cmd)
		}
		// Deciding must not panic either, and must agree with the parser.
		d := fuzzEngine.Decide(Request{Key: "build", Command: cmd})
		if d.Allow && d.Program == "" {
			t.Fatalf("Decide(%q) allowed without a program", cmd)
		}
	})
}

var fuzzEngine = func() *Engine {
	cfg, err := Parse("fuzz.toml", []byte("user = \"b\"\n[nix]\nallowed_stores = [\"local?root=/x\"]\n[[keys]]\nname = \"build\"\nrole = \"build\"\n"))
	if err != nil {
		panic(err)
	}
	return NewEngine(cfg)
}()

// FuzzParseConfig checks that the config loader never panics and that
// every error it returns is one line naming the file.
func FuzzParseConfig(f *testing.F) {
	f.Add(goodConfig)
	f.Add(casConfig)
	f.Add("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\nexpires = 2020-01-01T00:00:00\n")
	f.Add("[[keys]]\n[[keys]]\nkeys = 1\n")
	f.Add("user = \"b\"\n[nix.env]\nA = \"1\"\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse("fuzz.toml", []byte(doc))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: fuzz.toml") {
				t.Fatalf("Parse error %q does not name the file", err)
			}
			return
		}
		// Keys may also come from an authorized_keys file.
		if cfg.User == "" || (len(cfg.Keys) == 0 && cfg.AuthorizedKeys == "") {
			t.Fatalf("Parse(%q) accepted a config without user or keys", doc)
		}
	})
}

// FuzzCertKey checks the mapping of a certificate's principals to a key:
// it never panics, and a key it returns is the CA's own, one of the
// certificate's principals byte for byte, and the only one of them the
// CA maps.
func FuzzCertKey(f *testing.F) {
	cfg, err := Parse("cas.toml", []byte(casConfig))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("ci", "ci-repo-x")
	f.Add("ci", "ci-repo-x\nci-cache")
	f.Add("people", "alice\nalice")
	f.Add("ci", "alice\nlaptop\n")
	f.Add("nobody", "")
	f.Fuzz(func(t *testing.T, ca, list string) {
		principals := strings.Split(list, "\n")
		k, err := cfg.CertKey(ca, principals)
		if err != nil {
			if k != nil {
				t.Fatalf("CertKey(%q, %q) returned key %q with error %v", ca, principals, k.Name, err)
			}
			return
		}
		if k.CA != ca || cfg.CA(ca) == nil {
			t.Fatalf("CertKey(%q, %q) = key %q of CA %q", ca, principals, k.Name, k.CA)
		}
		mapped := map[string]bool{}
		for _, p := range principals {
			if o := cfg.Key(p); o != nil && o.CA == ca {
				mapped[p] = true
			}
		}
		if len(mapped) != 1 || !mapped[k.Name] {
			t.Fatalf("CertKey(%q, %q) = %q; the CA maps %v of them", ca, principals, k.Name, mapped)
		}
	})
}
