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

// The key's build limits (policy.BuildLimits.NixSettings: timeout,
// max-silent-time, max-build-log-size, cores, max-jobs) are appended to
// NIX_CONFIG in every mode, after the operator's, so that they are the
// settings Nix starts with whatever the client asks or leaves out:
//
//   - a Nix that opens the store itself (the sandbox modes, a local
//     store) builds with them unless a client's build options or
//     SetOptions, which nixgate caps, say less;
//   - nix-store --serve against a daemon hands its settings to the daemon
//     when it connects (RemoteStore::setOptions): the daemon takes
//     max-jobs, max-silent-time and cores from anyone, timeout from
//     anyone, max-build-log-size only from a trusted user. (The build
//     options of a serve build are not passed on to a daemon at all:
//     Nix's own FIXME in nix-store.cc.)
//   - nix-daemon --stdio against a daemon only relays bytes: there the
//     limits come from the SetOptions nixgate sends (see nixproto).

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
// with, read as Nix reads its configuration: $NIX_CONF_DIR/nix.conf
// (default /etc/nix) with the files it includes, then NIX_CONFIG of
// [nix] env, which the commands nixgate runs get. A later
// "secret-key-files =" replaces the list, "extra-secret-key-files ="
// adds to it. Where the daemon's store is used (build account a's Nix
// does not build or add paths itself), the daemon signs with its own
// nix.conf, and NIX_CONFIG does not count. None (nil) means the builder
// does not sign what it builds.
func SecretKeyFiles(cfg *policy.Config, a Account) []string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	var files []string
	set := func(name, value string) {
		switch name {
		case "secret-key-files":
			files = strings.Fields(value)
		case "extra-secret-key-files":
			files = append(files, strings.Fields(value)...)
		}
	}
	path := filepath.Join(dir, "nix.conf")
	if data, err := os.ReadFile(path); err == nil {
		applyNixConf(string(data), path, set, 0)
	}
	if _, _, own := accountStore(cfg, a); own {
		applyNixConf(cfg.Nix.Env["NIX_CONFIG"], "", set, 0)
	}
	if len(files) == 0 {
		return nil
	}
	return files
}

// maxNixConfIncludes bounds how deep applyNixConf follows includes (Nix
// itself would loop on a file that includes itself).
const maxNixConfIncludes = 16

// applyNixConf calls set for each setting of text, Nix configuration
// read from path (empty for NIX_CONFIG), in order, following "include
// FILE" and "!include FILE" (relative to path's directory; in NIX_CONFIG
// only absolute paths) where the file exists. '#' starts a comment; a
// line is NAME = VALUE, with blanks around '=' as Nix requires. Lines
// Nix would refuse are skipped: Nix itself then fails to start, which
// nixgate check finds when it runs Nix.
func applyNixConf(text, path string, set func(name, value string), depth int) {
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		tokens := strings.Fields(line)
		switch {
		case len(tokens) == 2 && (tokens[0] == "include" || tokens[0] == "!include"):
			inc := tokens[1]
			if !filepath.IsAbs(inc) {
				if path == "" {
					continue
				}
				inc = filepath.Join(filepath.Dir(path), inc)
			}
			if depth >= maxNixConfIncludes {
				continue
			}
			if data, err := os.ReadFile(inc); err == nil {
				applyNixConf(string(data), inc, set, depth+1)
			}
		case len(tokens) >= 2 && tokens[1] == "=":
			set(tokens[0], strings.Join(tokens[2:], " "))
		}
	}
}
