package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

func TestSecretKeyFiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("NIX_CONF_DIR", dir)
	tests := []struct {
		name, conf, nixConfig string
		want                  []string
	}{
		{"none", "sandbox = true\n", "", nil},
		{"nix.conf, the last setting", "secret-key-files = /a\nsecret-key-files = /b /c\n", "", []string{"/b", "/c"}},
		{"NIX_CONFIG after nix.conf", "secret-key-files = /a\n", "secret-key-files = /d", []string{"/d"}},
	}
	for _, tt := range tests {
		os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(tt.conf), 0o644)
		cfg := &policy.Config{Nix: policy.NixConfig{Env: map[string]string{"NIX_CONFIG": tt.nixConfig}}}
		if got := SecretKeyFiles(cfg); !slices.Equal(got, tt.want) {
			t.Errorf("%s: SecretKeyFiles = %q; want %q", tt.name, got, tt.want)
		}
	}
}
