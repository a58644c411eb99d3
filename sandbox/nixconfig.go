package sandbox

import "strings"

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
