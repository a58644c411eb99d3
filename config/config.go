// Package config builds nixgate's complete configuration, the one every
// command runs on: the TOML file, read and validated by policy; the keys
// of the authorized_keys file it names, read by keys and validated by
// policy; and every public key, parsed once and checked.
//
// It sits above both: policy and keys import nothing of nixgate's, and
// this is where what keys reads becomes policy's types.
package config

import (
	"errors"
	"slices"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// Load reads the configuration file at path and returns it complete:
// validated, with the keys of its authorized_keys file added to Keys,
// every public key parsed and checked (one OpenSSH key without options,
// no key listed twice), and each CA's key parsed and its revoked file
// read. Every error names the file and, where it can,
// the line.
func Load(path string) (*policy.Config, error) {
	cfg, err := policy.Load(path)
	if err != nil {
		return nil, err
	}
	return complete(cfg)
}

// Parse is Load for the configuration text in data, named name in
// messages (the embedded default). Its authorized_keys file is read from
// disk.
func Parse(name string, data []byte) (*policy.Config, error) {
	cfg, err := policy.Parse(name, data)
	if err != nil {
		return nil, err
	}
	return complete(cfg)
}

// complete adds the keys of cfg's authorized_keys file, checks every
// public key, and reads the CAs' keys and revoked files.
func complete(cfg *policy.Config) (*policy.Config, error) {
	if cfg.AuthorizedKeys != "" {
		fks, err := keys.LoadFile(cfg.AuthorizedKeys)
		if err != nil {
			return nil, err
		}
		if err := cfg.AddKeys(cfg.AuthorizedKeys, keySpecs(fks)); err != nil {
			return nil, err
		}
	}
	if err := parsePublicKeys(cfg); err != nil {
		return nil, err
	}
	if err := loadCAs(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// keySpecs turns the keys of a keys file into policy's key specs, for
// policy to validate.
func keySpecs(fks []keys.FileKey) []policy.KeySpec {
	specs := make([]policy.KeySpec, len(fks))
	for i, k := range fks {
		specs[i] = policy.KeySpec{Name: k.Name, PublicKey: k.PublicKey(), KeySettings: policy.KeySettings{Role: policy.Role(k.Role), From: k.From, MaxSessions: k.MaxSessions}, Line: k.Line}
		if !k.Expires.IsZero() {
			specs[i].Expires = k.Expires
		}
	}
	return specs
}

// parsePublicKeys parses every public_key in cfg, which must be one
// valid OpenSSH public key without options, and sets the key's
// Fingerprint; no key may be listed twice. Errors name the file and the
// line of the key's entry.
func parsePublicKeys(cfg *policy.Config) error {
	seen := map[string]string{}
	for i := range cfg.Keys {
		k := &cfg.Keys[i]
		if k.PublicKey == "" {
			continue
		}
		e, err := keys.ParseLine(k.PublicKey)
		if err == nil && len(e.Options) > 0 {
			err = errors.New("options belong in the [[keys]] entry (from, expires), not in public_key")
		}
		if err != nil {
			return errorf("%s:%d: key %q: public_key: %s", k.Source, k.Line, k.Name, policy.Line(err))
		}
		fp := keys.Fingerprint(e.Key)
		if other, dup := seen[fp]; dup {
			return errorf("%s:%d: key %q: public_key %s is also the key of %q", k.Source, k.Line, k.Name, fp, other)
		}
		seen[fp] = k.Name
		k.Fingerprint = fp
	}
	return nil
}

// CheckGrant checks g before it is written to cfg's keys file: neither
// its name nor its key may be one of cfg's keys already, and its line
// must read back as a valid key, as Load would read it.
func CheckGrant(cfg *policy.Config, g keys.Grant) error {
	fp := keys.Fingerprint(g.Key.Key)
	for i := range cfg.Keys {
		k := &cfg.Keys[i]
		if k.Name == g.Name {
			return errorf("a key named %q exists already (%s:%d)", g.Name, k.Source, k.Line)
		}
		if k.Fingerprint == fp {
			return errorf("key %s is authorized already as %q (%s:%d)", fp, k.Name, k.Source, k.Line)
		}
	}
	fks, err := keys.ParseFile("(new key)", []byte(g.KeysFileLine()))
	if err != nil {
		return err
	}
	probe := *cfg
	probe.Keys = slices.Clone(cfg.Keys)
	return probe.AddKeys("(new key)", keySpecs(fks))
}

// Granted returns the key of cfg that g would add again, the same name
// with the same public key; nil when there is none.
func Granted(cfg *policy.Config, g keys.Grant) *policy.Key {
	fp := keys.Fingerprint(g.Key.Key)
	for i := range cfg.Keys {
		if k := &cfg.Keys[i]; k.Name == g.Name && k.Fingerprint == fp {
			return k
		}
	}
	return nil
}

// AnswerKey returns the key of cfg's key source answer data (keys-file
// lines, as the [key_source] command prints them; named source in
// messages) whose public key has fingerprint fp, validated as a keys
// file's key is: its name may be none of cfg's keys'. Nil when no line
// has that key; the first line that has it counts, as in OpenSSH. Any
// line that does not parse is an error: the answer is not used.
func AnswerKey(cfg *policy.Config, source string, data []byte, fp string) (*policy.Key, error) {
	fks, err := keys.ParseFile(source, data)
	if err != nil {
		return nil, err
	}
	for _, fk := range fks {
		if keys.Fingerprint(fk.Key) != fp {
			continue
		}
		probe := &policy.Config{Keys: slices.Clone(cfg.Keys), CAs: cfg.CAs}
		if err := probe.AddKeys(source, keySpecs([]keys.FileKey{fk})); err != nil {
			return nil, err
		}
		k := probe.Keys[len(probe.Keys)-1]
		k.Fingerprint = fp
		return &k, nil
	}
	return nil, nil
}
