package sandbox

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// BuildSandboxSettings are the Nix settings nixgate gives a Nix that
// builds as the account itself (the userns and nix-user-chroot modes):
// builds run in Nix's own build sandbox — a nested user namespace that
// shows them only their inputs, /build, /dev, /proc and /tmp — and fail
// rather than run outside it. build-users-group is empty because the
// account has no build users to switch to. nixgate appends them to the
// operator's NIX_CONFIG, so they win over it, and no client can set them
// (SetOptions never passes them: see policy's client_settings).
var BuildSandboxSettings = []string{
	"sandbox = true",
	"sandbox-fallback = false",
	"build-users-group =",
}

// withNixConfig returns env with lines appended to its NIX_CONFIG (added
// when there is none): later lines of NIX_CONFIG override earlier ones.
func withNixConfig(env []string, lines []string) []string {
	add := strings.Join(lines, "\n")
	out := make([]string, 0, len(env)+1)
	done := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "NIX_CONFIG="); ok && !done {
			if v != "" && !strings.HasSuffix(v, "\n") {
				v += "\n"
			}
			kv, done = "NIX_CONFIG="+v+add, true
		}
		out = append(out, kv)
	}
	if !done {
		out = append(out, "NIX_CONFIG="+add)
	}
	return out
}

// SecretKeyFiles lists the secret-key-files Nix on the builder signs
// with: the last setting in $NIX_CONF_DIR/nix.conf (default /etc/nix),
// then in NIX_CONFIG of [nix] env, which the commands nixgate runs get.
// None (nil) means the builder does not sign what it builds.
func SecretKeyFiles(cfg *policy.Config) []string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	var text string
	if data, err := os.ReadFile(filepath.Join(dir, "nix.conf")); err == nil {
		text = string(data)
	}
	text += "\n" + cfg.Nix.Env["NIX_CONFIG"]
	var files []string
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "secret-key-files" {
			files = strings.Fields(v)
		}
	}
	return files
}
