// Package keys reads SSH public keys in OpenSSH's one-line form, keeping
// their options, and checks the keys of a nixgate configuration.
package keys

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/policy"
)

// Entry is one authorized_keys line.
type Entry struct {
	// Options are the line's options (restrict, command="…", from="…"),
	// as written; nil when there are none.
	Options []string
	// Key is the public key.
	Key ssh.PublicKey
	// Comment is the text after the key; empty when there is none.
	Comment string
}

// ParseLine parses one authorized_keys line, options included. Unlike a
// bare ssh.ParseAuthorizedKey call, it keeps the options, and it refuses a
// line with anything after the entry.
func ParseLine(line string) (Entry, error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return Entry{}, errors.New("keys: no key on the line")
	}
	pub, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Entry{}, fmt.Errorf("keys: not an OpenSSH public key line: %w", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return Entry{}, errors.New("keys: more than one key on the line")
	}
	return Entry{Options: opts, Key: pub, Comment: comment}, nil
}

// Fingerprint returns the key's SHA256 fingerprint as OpenSSH prints it.
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// CheckConfig checks that every public_key in cfg is one valid OpenSSH
// public key without options, and that no key is listed twice. Errors
// name the file and the line of the key's [[keys]] entry.
func CheckConfig(cfg *policy.Config) error {
	seen := map[string]string{}
	for _, k := range cfg.Keys {
		if k.PublicKey == "" {
			continue
		}
		e, err := ParseLine(k.PublicKey)
		if err == nil && len(e.Options) > 0 {
			err = errors.New("keys: options belong in the [[keys]] entry (from, expires), not in public_key")
		}
		if err != nil {
			return fmt.Errorf("keys: %s:%d: key %q: public_key: %s", k.Source, k.Line, k.Name, strings.TrimPrefix(err.Error(), "keys: "))
		}
		fp := Fingerprint(e.Key)
		if other, dup := seen[fp]; dup {
			return fmt.Errorf("keys: %s:%d: key %q: public_key %s is also the key of %q", k.Source, k.Line, k.Name, fp, other)
		}
		seen[fp] = k.Name
	}
	return nil
}
