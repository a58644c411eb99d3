// Package keys reads and writes SSH keys in OpenSSH's forms: one-line
// public keys with their options kept (authorized_keys lines, nixgate's
// keys file), the forced `nixgate exec` command of exec mode, host keys,
// and the known_hosts and machines-file lines clients pin them with. It
// imports nothing of nixgate's: what a key may do is policy's, and
// package config turns what keys reads into policy's types.
package keys

import (
	"strings"

	"golang.org/x/crypto/ssh"
)

// Entry is one authorized_keys line.
type Entry struct {
	// Options are the line's options (restrict, command="…", from="…"),
	// as written; nil when there are none. Read them with ParsedOptions.
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
		return Entry{}, errorf("no key on the line")
	}
	pub, comment, opts, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return Entry{}, errorf("not an OpenSSH public key line: %w", err)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return Entry{}, errorf("more than one key on the line")
	}
	return Entry{Options: opts, Key: pub, Comment: comment}, nil
}

// Fingerprint returns the key's SHA256 fingerprint as OpenSSH prints it.
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }
