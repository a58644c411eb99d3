package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// TestSigningAdvice: client-config's signing advice is comments only,
// with no blank line (it sits in the nix.conf lines a client pastes),
// says why remote builds do not need it, and gives the commands and the
// [nix] env line of sandbox.Signing each on a line of its own, ready to
// copy.
func TestSigningAdvice(t *testing.T) {
	t.Setenv("NIX_CONF_DIR", t.TempDir())
	for name, doc := range map[string]string{
		"daemon": "user = \"u\"\n",
		"userns": "user = \"u\"\n[sandbox]\nmode = \"userns\"\n",
		"env":    "user = \"u\"\n[nix]\nenv = { NIX_CONFIG = \"substituters =\" }\n[sandbox]\nmode = \"nix-user-chroot\"\n",
	} {
		cfg, err := policy.Parse("/etc/n.toml", []byte(doc+"[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		a := sandbox.Account{Name: "u", Home: "/home/u"}
		var w bytes.Buffer
		writeSigningAdvice(&w, cfg, a, "b.example.org", errors.New("no secret-key-files in its Nix configuration"))
		out := strings.TrimSuffix(w.String(), "\n\n")
		text := strings.Join(strings.Fields(strings.ReplaceAll(out, "#", "")), " ")
		if !strings.Contains(text, "Remote builds work without it") {
			t.Errorf("%s: no word on remote builds:\n%s", name, out)
		}
		var copied []string
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "#") {
				t.Errorf("%s: %q is not a comment", name, l)
			}
			if c, ok := strings.CutPrefix(l, "#   "); ok {
				copied = append(copied, c)
			}
		}
		s := sandbox.Signing(cfg, a, "b.example.org-1", sandbox.Whoami())
		want := append([]string{}, s.Commands...)
		if s.NewTable {
			want = append(want, "[nix]")
		}
		if s.Env != "" {
			want = append(want, s.Env)
		}
		if strings.Join(copied, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: the lines to copy are\n%s\nwant\n%s", name, strings.Join(copied, "\n"), strings.Join(want, "\n"))
		}
	}
}
