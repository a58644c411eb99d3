package keys

import (
	"strings"
	"time"
)

// Grant is a key to authorize: a line to add to nixgate's keys file
// (KeysFileLine, AddToKeysFile) or, for exec mode, to the account's
// OpenSSH authorized_keys (ForcedCommandLine, AddForcedCommand).
type Grant struct {
	// Name is the key's nixgate name.
	Name string
	// Role is the key's role, as the configuration spells it ("build");
	// package policy says which roles there are.
	Role string
	// From are the networks the key may connect from; nil means anywhere.
	From    []string
	Expires time.Time // zero: never
	Key     Entry     // the client's public key line, without options
}

// ParseGrantKey reads a client public key line for a Grant: exactly one
// key, without options.
func ParseGrantKey(line string) (Entry, error) {
	e, err := ParseLine(line)
	if err != nil {
		return Entry{}, err
	}
	if len(e.Options) > 0 {
		return Entry{}, errorf("give the bare public key (ssh-ed25519 AAAA… comment), without options")
	}
	return e, nil
}

// KeysFileLine returns g as a line of nixgate's keys file.
func (g Grant) KeysFileLine() string {
	opts := []string{quoteOption("name", g.Name), quoteOption("role", g.Role)}
	if len(g.From) > 0 {
		opts = append(opts, quoteOption("from", strings.Join(g.From, ",")))
	}
	if !g.Expires.IsZero() {
		opts = append(opts, quoteOption("expiry-time", g.Expires.UTC().Format("20060102150405")+"Z"))
	}
	return Entry{Options: opts, Key: g.Key.Key, Comment: g.Key.Comment}.String()
}

// AddToKeysFile appends g to the keys file at path unless its name or
// key is in the file already. Whether the rest of the configuration has
// them is the caller's to check (config.CheckGrant).
func AddToKeysFile(path string, g Grant) error {
	fp := Fingerprint(g.Key.Key)
	return EditFile(path, 0o644, func(lines []string) ([]string, error) {
		specs, err := ParseFile(path, []byte(strings.Join(lines, "\n")))
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			if s.Name == g.Name {
				return nil, errorf("a key named %q exists already (%s:%d)", g.Name, path, s.Line)
			}
			if Fingerprint(s.Key) == fp {
				return nil, errorf("key %s is authorized already as %q (%s:%d)", fp, s.Name, path, s.Line)
			}
		}
		return append(lines, g.KeysFileLine()), nil
	})
}
