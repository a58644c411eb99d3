package keys

import (
	"errors"
	"fmt"
	"strings"
)

// The one place options are read: ParseOption reads one by OpenSSH's
// rules, ParsedOptions all of a line's, and everything else (Option,
// Restricted, ForcedExec, a line's name, the keys file) reads them
// through these two. The lines of a file are read in one place too:
// ParseAuthorizedKeys (authorized.go).

// Option is one option of an authorized_keys line, read by OpenSSH's
// rules (auth-options.c): the name is matched without regard to case, and
// a value is written in double quotes, inside which `\"` stands for `"`
// and every other byte, a backslash included, stands for itself. There is
// no other unquoting: `\x2c` is four bytes, not a comma.
type Option struct {
	// Name is the option's name in lower case.
	Name string
	// Value is the unquoted value; empty when HasValue is false.
	Value string
	// HasValue is set for name="value" options.
	HasValue bool
}

// ParseOption reads one option as x/crypto/ssh split it off the line
// (restrict, or name="value").
func ParseOption(opt string) (Option, error) {
	name, raw, hasValue := strings.Cut(opt, "=")
	o := Option{Name: strings.ToLower(name), HasValue: hasValue}
	if !hasValue {
		return o, nil
	}
	v, err := dequote(raw)
	if err != nil {
		return Option{}, errorf("option %s: %w", o.Name, err)
	}
	o.Value = v
	return o, nil
}

// dequote is OpenSSH's opt_dequote: a leading ", then everything up to
// the next " that is not preceded by a backslash, with `\"` read as ".
// Nothing may follow the closing quote.
func dequote(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", errors.New("value must be in double quotes")
	}
	var b strings.Builder
	i := 1
	for ; i < len(s) && s[i] != '"'; i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == '"' {
			i++
		}
		b.WriteByte(s[i])
	}
	if i >= len(s) {
		return "", errors.New("value lacks its closing double quote")
	}
	if i != len(s)-1 {
		return "", fmt.Errorf("text %q after the closing double quote", s[i+1:])
	}
	return b.String(), nil
}

// ParsedOptions returns e's options parsed by OpenSSH's rules. An option given
// twice is an error: OpenSSH refuses the line for some options
// (command=, from=) and quietly combines others, and nixgate would rather
// not guess which of two values was meant.
func (e Entry) ParsedOptions() ([]Option, error) {
	var out []Option
	seen := map[string]bool{}
	for _, raw := range e.Options {
		o, err := ParseOption(raw)
		if err != nil {
			return nil, err
		}
		if seen[o.Name] {
			return nil, errorf("option %s is given more than once", o.Name)
		}
		seen[o.Name] = true
		out = append(out, o)
	}
	return out, nil
}

// Option returns the unquoted value of e's option name (from,
// expiry-time, …). ok is false when e lacks it, or when e's options are
// malformed or repeated, which OpenSSH may refuse.
func (e Entry) Option(name string) (value string, ok bool) {
	opts, err := e.ParsedOptions()
	if err != nil {
		return "", false
	}
	for _, o := range opts {
		if o.Name == strings.ToLower(name) && o.HasValue {
			return o.Value, true
		}
	}
	return "", false
}

// Restricted reports whether e has the restrict option (given once or
// more: OpenSSH restricts the key either way).
func (e Entry) Restricted() bool {
	for _, raw := range e.Options {
		if o, err := ParseOption(raw); err == nil && o.Name == "restrict" && !o.HasValue {
			return true
		}
	}
	return false
}

// lineName returns the nixgate name of a key line, e, whose ForcedExec
// is f, err: its name= option, the --key of a forced `nixgate exec`, or
// else its comment.
func lineName(e Entry, f ForcedExec, err error) string {
	if v, ok := e.Option("name"); ok {
		return v
	}
	if err == nil {
		return f.Key
	}
	return e.Comment
}
