package check

import (
	"fmt"
	"os"
	"strings"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// checkReach says what a build key's builds can reach in cfg's mode: who
// builds, and what keeps them in (docs/SECURITY.md has the table).
func checkReach(cfg *policy.Config) []Result {
	builds := false
	for _, k := range cfg.Keys {
		if k.Role == policy.RoleBuild {
			builds = true
		}
	}
	if !builds {
		return []Result{{"builds", OK, "no build key: nothing builds here", ""}}
	}
	switch cfg.Sandbox.Mode {
	case policy.SandboxUserNS, policy.SandboxNixUserChroot:
		return []Result{{"builds", OK, fmt.Sprintf("builds run as %s in Nix's build sandbox (sandbox = true, no fallback), nested in sandbox.mode %s: they see their inputs, /build, /dev, /etc, /proc and /tmp; Nix itself sees no home, no nixgate file, a private /tmp, only the session's processes, and holds no capability", cfg.User, cfg.Sandbox.Mode), ""}}
	case policy.SandboxProot:
		return []Result{{"builds", Warn, fmt.Sprintf("sandbox.mode proot cannot contain a build: it runs as %s, can kill its tracer, and then reaches everything %s owns (the keys file included)", cfg.User, cfg.User), `give build keys to a builder with user namespaces (sandbox.mode = "userns"), or keep only substitute keys here (build keys work in proot only with [sandbox] proot_build_keys = "same-uid-not-contained")`}}
	}
	args := []string{}
	if cfg.Nix.Store != "" {
		args = []string{"--store", cfg.Nix.Store}
	}
	if sandbox.LocalStore(args) {
		return []Result{{"builds", OK, fmt.Sprintf("builds run as %s in Nix's build sandbox (the store %s is the account's own; nixgate sets sandbox = true for it)", cfg.User, cfg.Nix.Store), ""}}
	}
	store := "Nix's default store"
	if cfg.Nix.Store != "" {
		store = cfg.Nix.Store
	}
	setting, off := daemonSandbox()
	if off {
		return []Result{{"builds", Warn, fmt.Sprintf("builds run in the daemon of %s, as its build users, without Nix's build sandbox (%s): a build key's build reads and changes what those users may, and reaches the network", store, setting),
			"set sandbox = true in the daemon's nix.conf and restart nix-daemon: nixgate does not change the daemon's settings, and no client can"}}
	}
	return []Result{{"builds", OK, fmt.Sprintf("builds run in the daemon of %s, as its build users, in Nix's build sandbox (%s): nixgate does not change the daemon's settings, and no client can", store, setting), ""}}
}

// daemonSandbox reads the sandbox setting of the machine's nix.conf, and
// reports whether it turns Nix's build sandbox off (false, or relaxed).
func daemonSandbox() (setting string, off bool) {
	raw, err := os.ReadFile("/etc/nix/nix.conf")
	if err != nil {
		return "nix.conf unreadable; Nix's default is sandbox = true on Linux", false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "sandbox" {
			v = strings.TrimSpace(v)
			return "/etc/nix/nix.conf: sandbox = " + v, v == "false" || v == "relaxed"
		}
	}
	return "/etc/nix/nix.conf sets no sandbox: Nix's default, true on Linux", false
}
