package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// TestClientConfigCertificate: --certificate adds CertificateFile to
// both ssh configuration blocks, and says when the block is required.
func TestClientConfigCertificate(t *testing.T) {
	t.Setenv("NIX_CONF_DIR", t.TempDir())
	dir := t.TempDir()
	hostLine, _ := testKey(t, 5)
	caLine, _ := testKey(t, 6)
	os.WriteFile(filepath.Join(dir, "ssh_host_ed25519_key.pub"), []byte(hostLine+"\n"), 0o644)
	cfgPath := filepath.Join(dir, "n.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("user = \"nixgate-test-nobody\"\nlisten = [\"0.0.0.0:22\"]\nstate_dir = %q\n[[cas]]\nname = \"ci\"\nkey = %q\n[[cas.principals]]\nname = \"ci-x\"\nrole = \"build\"\n", dir, caLine)), 0o644)
	for _, tt := range []struct {
		args     []string
		want     []string
		required bool
	}{
		{[]string{"--key", "/root/.ssh/ci"}, nil, false},
		{[]string{"--key", "/root/.ssh/ci", "--certificate", "/root/.ssh/ci-cert.pub"}, []string{"\n  CertificateFile /root/.ssh/ci-cert.pub\n", "\n    CertificateFile /root/.ssh/ci-cert.pub\n"}, false},
		{[]string{"--key", "/root/.ssh/ci", "--certificate", "/run/ci/cert.pub"}, []string{"\n  CertificateFile /run/ci/cert.pub\n  IdentitiesOnly yes\n", "\n    CertificateFile /run/ci/cert.pub\n    IdentitiesOnly yes\n"}, true},
	} {
		var stdout, stderr bytes.Buffer
		if code := runClientConfig(append([]string{"--config", cfgPath, "--host", "b.example.org"}, tt.args...), &stdout, &stderr); code != exitOK {
			t.Fatalf("client-config %q = %d: %s", tt.args, code, stderr.String())
		}
		out := stdout.String()
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("client-config %q: no %q in\n%s", tt.args, w, out)
			}
		}
		if tt.want == nil && strings.Contains(out, "CertificateFile") {
			t.Errorf("client-config %q printed a CertificateFile:\n%s", tt.args, out)
		}
		if got := strings.Contains(out, "(required: the machines line names the key"); got != tt.required {
			t.Errorf("client-config %q: required note %v; want %v", tt.args, got, tt.required)
		}
	}
}
