package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// The embedded default: what `nixgate serve` (make run) starts on when
// there is no configuration file, and the client key it makes for itself.

// embeddedSource names the embedded default configuration in messages.
const embeddedSource = "(embedded default)"

// embeddedDefault is the configuration `nixgate serve` starts with when
// there is none: loopback, a high port, state and keys under
// ./.state/serve, and a store of its own there. Nix runs as the calling
// user, or as nobody when nixgate runs as root.
func embeddedDefault() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	state := filepath.Join(wd, ".state", "serve")
	name := "nobody"
	if os.Geteuid() == 0 {
		// Nix runs as nobody, in a store under state: nobody must get there.
		for d := state; ; d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				return "", fmt.Errorf("the embedded default runs Nix as nobody when started by root, and nobody cannot enter %s: start it from a directory others may enter, or as an ordinary user (or chmod o+x %s)", d, d)
			}
			if d == "/" {
				break
			}
		}
	} else {
		u, err := user.Current()
		if err != nil {
			return "", err
		}
		name = u.Username
	}
	return fmt.Sprintf(`user = %q
listen = ["127.0.0.1:2222"]
state_dir = %q
authorized_keys = %q

[nix]
store = %q
env = { NIX_CONFIG = "substituters =" }
`, name, state, filepath.Join(state, "authorized_keys"), "local?root="+filepath.Join(state, "store")), nil
}

// embeddedClientKeyName is the file name, in the embedded default's
// state_dir, of the client key pair serve generates when no key may log in.
const embeddedClientKeyName = "client_ed25519"

// embeddedClientKeyComment is the comment of that key.
const embeddedClientKeyComment = "nixgate-embedded-default"

// embeddedClientKey returns the private key file of the client key the
// embedded default uses. When no key may log in yet, it generates that key
// pair into state_dir (or keeps the one there), authorizes it with role
// build and says so on stderr. It returns "" when other keys were added
// instead of it.
func embeddedClientKey(cfg *policy.Config, stderr io.Writer) (string, error) {
	priv := filepath.Join(cfg.Serve.StateDir, embeddedClientKeyName)
	if hasLoginKey(cfg) {
		if !fileExists(priv) {
			return "", nil
		}
		return priv, nil
	}
	what := "generated"
	var entry keys.Entry
	if data, err := os.ReadFile(priv + ".pub"); err == nil && fileExists(priv) {
		what = "kept"
		if entry, err = keys.ParseGrantKey(strings.TrimSpace(string(data))); err != nil {
			return "", err
		}
	} else {
		pub, err := keys.Generate(priv, embeddedClientKeyComment)
		if err != nil {
			return "", err
		}
		entry = keys.Entry{Key: pub, Comment: embeddedClientKeyComment}
	}
	g := keys.Grant{Name: "local", Role: string(policy.RoleBuild), Key: entry}
	if err := config.CheckGrant(cfg, g); err != nil {
		return "", err
	}
	if err := keys.AddToKeysFile(cfg.AuthorizedKeys, g); err != nil {
		return "", err
	}
	fmt.Fprintf(stderr, "nixgate serve: no key could log in, so this client key was %s and authorized (role build) in %s: %s\n", what, cfg.AuthorizedKeys, priv)
	return priv, nil
}

// hasLoginKey reports whether some key of cfg may log in to serve mode:
// one with a public key.
func hasLoginKey(cfg *policy.Config) bool {
	for _, k := range cfg.Keys {
		if k.Fingerprint != "" {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
