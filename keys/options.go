package keys

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

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
		return Option{}, fmt.Errorf("keys: option %s: %w", o.Name, err)
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
			return nil, fmt.Errorf("keys: option %s is given more than once", o.Name)
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

// ForcedExec is the command= of an authorized_keys line that runs
// nixgate exec.
type ForcedExec struct {
	// Program is argv[0]: "nixgate" or an absolute path ending in
	// /nixgate.
	Program string
	// Config is the --config value; empty when the line gives none.
	Config string
	// Key is the --key value.
	Key string
}

// ParseForcedExec reads command, the value of a command= option, by the
// same shell-word rules as a client's command (policy.ParseCommand), and
// accepts exactly
//
//	[PATH/]nixgate exec [--config FILE] --key NAME
//
// with the two flags in either order and in any of the spellings Go's
// flag package takes (-key NAME, --key=NAME, …). Anything more, such as
// "; exec /bin/sh" after it, is an error: the line does not merely run
// nixgate.
func ParseForcedExec(command string) (ForcedExec, error) {
	argv, err := policy.ParseCommand(command)
	if err != nil {
		return ForcedExec{}, fmt.Errorf("keys: command=%q: %s", command, strings.TrimPrefix(err.Error(), "policy: "))
	}
	var f ForcedExec
	prog := argv[0]
	if filepath.Base(prog) != "nixgate" || (prog != "nixgate" && !filepath.IsAbs(prog)) {
		return ForcedExec{}, fmt.Errorf("keys: command=%q does not run nixgate (by name or absolute path)", command)
	}
	f.Program = prog
	if len(argv) < 2 || argv[1] != "exec" {
		return ForcedExec{}, fmt.Errorf("keys: command=%q does not run nixgate exec", command)
	}
	seen := map[string]bool{}
	for rest := argv[2:]; len(rest) > 0; {
		flag := rest[0]
		name, value, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(flag, "-"), "-"), "=")
		if !strings.HasPrefix(flag, "-") || (name != "config" && name != "key") || seen[name] {
			return ForcedExec{}, fmt.Errorf("keys: command=%q: %q is not one of nixgate exec's --config FILE and --key NAME", command, flag)
		}
		seen[name] = true
		rest = rest[1:]
		if !inline {
			if len(rest) == 0 {
				return ForcedExec{}, fmt.Errorf("keys: command=%q: %s needs a value", command, flag)
			}
			value, rest = rest[0], rest[1:]
		}
		if name == "config" {
			f.Config = value
		} else {
			f.Key = value
		}
	}
	if f.Key == "" {
		return ForcedExec{}, fmt.Errorf("keys: command=%q has no --key NAME", command)
	}
	return f, nil
}

// ForcedExec returns the nixgate exec that e's command= option runs. It
// fails when e has no command=, when its options are malformed or
// repeated (OpenSSH then refuses the key, or may read it otherwise), or
// when the command is anything but exactly nixgate exec (see
// ParseForcedExec).
func (e Entry) ForcedExec() (ForcedExec, error) {
	opts, err := e.ParsedOptions()
	if err != nil {
		return ForcedExec{}, err
	}
	for _, o := range opts {
		if o.Name == "command" && o.HasValue {
			return ParseForcedExec(o.Value)
		}
	}
	return ForcedExec{}, errors.New("keys: no command= option")
}
