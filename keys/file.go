package keys

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// A keys file is an OpenSSH authorized_keys file whose options carry
// nixgate's per-key settings:
//
//	name="ci",role="build",from="10.0.0.0/8",expiry-time="20270131",max-sessions="4" ssh-ed25519 AAAA… ci@example
//
// role is required. name defaults to the comment. from and expiry-time
// mean what they mean to OpenSSH. Values are read by OpenSSH's rules: in
// double quotes, where only \" is an escape; an option given twice is an
// error. restrict and the no-* options are
// accepted (nixgate refuses all of that anyway); any other option, such as
// command=, is an error rather than silently ignored.
//
// This package reads the file's syntax; whether a name, role or network
// is valid is policy's to say (package config hands it the FileKeys).

// FileKey is one key of a keys file, as written.
type FileKey struct {
	// Name is the name= option, or else the key's comment.
	Name string
	// Role is the role= option, as written.
	Role string
	// From are the from= option's comma-separated values, as written;
	// nil means anywhere.
	From []string
	// Expires is the expiry-time option; zero means never.
	Expires time.Time
	// MaxSessions is the max-sessions option; zero means no limit.
	MaxSessions int
	// Key is the public key, and Comment the text after it.
	Key     ssh.PublicKey
	Comment string
	// Line is the key's line in the file, from 1.
	Line int
}

// PublicKey returns the key without its options, as a [[keys]]
// public_key: type, base64 and comment.
func (k FileKey) PublicKey() string { return Entry{Key: k.Key, Comment: k.Comment}.String() }

// LoadFile reads the keys file at path and returns its keys. A missing
// file has no keys. Errors name the file and line.
func LoadFile(path string) ([]FileKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errorf("%w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses the keys file in data; name is used in messages.
func ParseFile(name string, data []byte) ([]FileKey, error) {
	var out []FileKey
	for _, l := range ParseAuthorizedKeys(data) {
		err := l.Err
		var k FileKey
		if err == nil {
			k, err = fileKey(l.Entry)
		}
		if err != nil {
			return nil, errorf("%s:%d: %w", name, l.Number, err)
		}
		k.Line = l.Number
		out = append(out, k)
	}
	return out, nil
}

// fileKey reads nixgate's options of e, a keys-file line.
func fileKey(e Entry) (FileKey, error) {
	k := FileKey{Name: e.Comment, Key: e.Key, Comment: e.Comment}
	opts, err := e.ParsedOptions()
	if err != nil {
		return FileKey{}, err
	}
	for _, o := range opts {
		name, value, hasValue := o.Name, o.Value, o.HasValue
		switch {
		case name == "name" && hasValue:
			k.Name = value
		case name == "role" && hasValue:
			k.Role = value
		case name == "from" && hasValue:
			k.From = strings.Split(value, ",")
		case name == "expiry-time" && hasValue:
			t, err := parseExpiryTime(value)
			if err != nil {
				return FileKey{}, err
			}
			k.Expires = t
		case name == "max-sessions" && hasValue:
			n, err := strconv.Atoi(value)
			if err != nil {
				return FileKey{}, fmt.Errorf("option max-sessions: %q is not a number", value)
			}
			k.MaxSessions = n
		case !hasValue && (name == "restrict" || strings.HasPrefix(name, "no-")):
		default:
			return FileKey{}, fmt.Errorf("option %q is not supported here (nixgate's options: name, role, from, expiry-time, max-sessions, restrict)", name)
		}
	}
	if k.Role == "" {
		return FileKey{}, fmt.Errorf("no role: start the line with role=\"build\" or role=\"substitute\"")
	}
	if k.Name == "" {
		return FileKey{}, fmt.Errorf("no name: add name=\"…\" or a comment after the key")
	}
	return k, nil
}

// parseExpiryTime reads OpenSSH's expiry-time (YYYYMMDD[HHMM[SS]], local
// time, or UTC with a Z suffix).
func parseExpiryTime(s string) (time.Time, error) {
	loc := time.Local
	if rest, ok := strings.CutSuffix(s, "Z"); ok {
		s, loc = rest, time.UTC
	}
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(s) == len(layout) {
			if t, err := time.ParseInLocation(layout, s, loc); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("option expiry-time: %q is not YYYYMMDD[HHMM[SS]][Z]", s)
}
