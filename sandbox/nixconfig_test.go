package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

func TestSecretKeyFiles(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string // in NIX_CONF_DIR, nix.conf among them; %d is the directory
		nixConfig string
		want      []string
	}{
		{"none", map[string]string{"nix.conf": "sandbox = true\n"}, "", nil},
		{"no nix.conf", nil, "", nil},
		{"nix.conf, the last setting", map[string]string{"nix.conf": "secret-key-files = /a\nsecret-key-files = /b /c\n"}, "", []string{"/b", "/c"}},
		{"NIX_CONFIG after nix.conf", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "secret-key-files = /d", []string{"/d"}},
		{"extra- adds", map[string]string{"nix.conf": "secret-key-files = /a\nextra-secret-key-files = /b /c\n"}, "", []string{"/a", "/b", "/c"}},
		{"extra- alone", map[string]string{"nix.conf": "extra-secret-key-files = /b\n"}, "", []string{"/b"}},
		{"extra- in NIX_CONFIG adds to nix.conf", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "extra-secret-key-files = /b", []string{"/a", "/b"}},
		{"a later setting replaces extra-", map[string]string{"nix.conf": "extra-secret-key-files = /b\nsecret-key-files = /c\n"}, "", []string{"/c"}},
		{"emptied later", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "secret-key-files =", nil},
		{"a comment after the value", map[string]string{"nix.conf": "secret-key-files = /a # the 2024 key\n"}, "", []string{"/a"}},
		{"commented out", map[string]string{"nix.conf": "# secret-key-files = /a\n"}, "", nil},
		{"no blanks around = (Nix refuses the line)", map[string]string{"nix.conf": "secret-key-files=/a\n"}, "", nil},
		{"another setting's extra-", map[string]string{"nix.conf": "extra-trusted-public-keys = k:abc\n"}, "", nil},
		{"include, relative", map[string]string{"nix.conf": "secret-key-files = /a\ninclude signing.conf\n", "signing.conf": "extra-secret-key-files = /i\n"}, "", []string{"/a", "/i"}},
		{"!include, then a later setting", map[string]string{"nix.conf": "!include nix.custom.conf\nextra-secret-key-files = /b\n", "nix.custom.conf": "secret-key-files = /i\n"}, "", []string{"/i", "/b"}},
		{"!include of a missing file", map[string]string{"nix.conf": "secret-key-files = /a\n!include missing.conf\n"}, "", []string{"/a"}},
		{"include in NIX_CONFIG, absolute", map[string]string{"signing.conf": "secret-key-files = /i\n"}, "include %d/signing.conf", []string{"/i"}},
		{"include in NIX_CONFIG, relative: not followed", map[string]string{"signing.conf": "secret-key-files = /i\n"}, "include signing.conf", nil},
		{"an include loop ends", map[string]string{"nix.conf": "include nix.conf\n"}, "", nil},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		t.Setenv("NIX_CONF_DIR", dir)
		for name, text := range tt.files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		nixConfig := strings.ReplaceAll(tt.nixConfig, "%d", dir)
		cfg := &policy.Config{Nix: policy.NixConfig{Env: map[string]string{"NIX_CONFIG": nixConfig}}}
		if got := SecretKeyFiles(cfg); !slices.Equal(got, tt.want) || (got != nil && len(got) == 0) {
			t.Errorf("%s: SecretKeyFiles = %q; want %q", tt.name, got, tt.want)
		}
	}
}
