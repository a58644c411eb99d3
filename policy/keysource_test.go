package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseKeySource(t *testing.T) {
	cfg, err := Parse("k.toml", []byte("user = \"b\"\n[key_source]\ncommand = [\"/usr/local/bin/nix-keys\", \"--user=%u\", \"%t\", \"%f\", \"%k\", \"100%%\"]\ntimeout = \"2s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ks := cfg.KeySource
	if ks.Timeout != 2*time.Second || ks.Cache != DefaultKeySourceCache {
		t.Errorf("KeySource = %+v", ks)
	}
	got := strings.Join(ks.KeySourceArgv("nixremote", "ssh-ed25519", "SHA256:x%u", "AAAA"), " ")
	if want := "/usr/local/bin/nix-keys --user=nixremote ssh-ed25519 SHA256:x%u AAAA 100%"; got != want {
		t.Errorf("KeySourceArgv = %q; want %q", got, want)
	}
	none, err := Parse("k.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil || len(none.KeySource.Command) != 0 {
		t.Errorf("no [key_source]: %+v, %v", none.KeySource, err)
	}
	for doc, want := range map[string]string{
		"[key_source]\ncommand = [\"nix-keys\"]\n":             "k.toml:3: key_source.command: \"nix-keys\" must be an absolute path",
		"[key_source]\ncommand = [\"/k\", \"%x\"]\n":           `key_source.command[1]: "%x": unknown token "%x"`,
		"[key_source]\ncommand = [\"/k\", \"50%\"]\n":          `unknown token "%"`,
		"[key_source]\ncommand = [\"/k\"]\ntimeout = \"0s\"\n": `key_source.timeout: "0s" is not a positive duration`,
		"[key_source]\ncache = \"1m\"\n":                       "key_source.command: missing",
		"[key_source]\ncommand = [\"/k\"]\ncahce = \"1m\"\n":   `unknown setting "key_source.cahce": did you mean "key_source.cache"?`,
		"[key_source]\ncommand = \"/k %u\"\n":                  "key_source.command: a TOML string where a list of strings belongs",
	} {
		_, err := Parse("k.toml", []byte("user = \"b\"\n"+doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want %q", doc, err, want)
		}
	}
}
