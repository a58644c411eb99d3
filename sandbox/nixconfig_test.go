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
		daemon    bool // the store is the daemon's, which signs by its nix.conf alone
	}{
		{"none", map[string]string{"nix.conf": "sandbox = true\n"}, "", nil, false},
		{"no nix.conf", nil, "", nil, false},
		{"nix.conf, the last setting", map[string]string{"nix.conf": "secret-key-files = /a\nsecret-key-files = /b /c\n"}, "", []string{"/b", "/c"}, false},
		{"NIX_CONFIG after nix.conf", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "secret-key-files = /d", []string{"/d"}, false},
		{"extra- adds", map[string]string{"nix.conf": "secret-key-files = /a\nextra-secret-key-files = /b /c\n"}, "", []string{"/a", "/b", "/c"}, false},
		{"extra- alone", map[string]string{"nix.conf": "extra-secret-key-files = /b\n"}, "", []string{"/b"}, false},
		{"extra- in NIX_CONFIG adds to nix.conf", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "extra-secret-key-files = /b", []string{"/a", "/b"}, false},
		{"a later setting replaces extra-", map[string]string{"nix.conf": "extra-secret-key-files = /b\nsecret-key-files = /c\n"}, "", []string{"/c"}, false},
		{"emptied later", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "secret-key-files =", nil, false},
		{"a comment after the value", map[string]string{"nix.conf": "secret-key-files = /a # the 2024 key\n"}, "", []string{"/a"}, false},
		{"commented out", map[string]string{"nix.conf": "# secret-key-files = /a\n"}, "", nil, false},
		{"no blanks around = (Nix refuses the line)", map[string]string{"nix.conf": "secret-key-files=/a\n"}, "", nil, false},
		{"another setting's extra-", map[string]string{"nix.conf": "extra-trusted-public-keys = k:abc\n"}, "", nil, false},
		{"include, relative", map[string]string{"nix.conf": "secret-key-files = /a\ninclude signing.conf\n", "signing.conf": "extra-secret-key-files = /i\n"}, "", []string{"/a", "/i"}, false},
		{"!include, then a later setting", map[string]string{"nix.conf": "!include nix.custom.conf\nextra-secret-key-files = /b\n", "nix.custom.conf": "secret-key-files = /i\n"}, "", []string{"/i", "/b"}, false},
		{"!include of a missing file", map[string]string{"nix.conf": "secret-key-files = /a\n!include missing.conf\n"}, "", []string{"/a"}, false},
		{"include in NIX_CONFIG, absolute", map[string]string{"signing.conf": "secret-key-files = /i\n"}, "include %d/signing.conf", []string{"/i"}, false},
		{"include in NIX_CONFIG, relative: not followed", map[string]string{"signing.conf": "secret-key-files = /i\n"}, "include signing.conf", nil, false},
		{"an include loop ends", map[string]string{"nix.conf": "include nix.conf\n"}, "", nil, false},
		{"the daemon's store: NIX_CONFIG does not count", map[string]string{"nix.conf": "sandbox = true\n"}, "secret-key-files = /d", nil, true},
		{"the daemon's store: its nix.conf", map[string]string{"nix.conf": "secret-key-files = /a\n"}, "secret-key-files = /d", []string{"/a"}, true},
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
		cfg := &policy.Config{Nix: policy.NixConfig{Store: "local", Env: map[string]string{"NIX_CONFIG": nixConfig}}}
		if tt.daemon {
			cfg.Nix.Store = "daemon"
		}
		if got := SecretKeyFiles(cfg, Account{Name: "nixremote", Home: "/home/nixremote"}); !slices.Equal(got, tt.want) || (got != nil && len(got) == 0) {
			t.Errorf("%s: SecretKeyFiles = %q; want %q", tt.name, got, tt.want)
		}
	}
}
