package keys

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nixgate/nixgate/policy"
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

// LoadFile reads the keys file at path and returns its keys. A missing
// file has no keys. Errors name the file and line.
func LoadFile(path string) ([]policy.KeySpec, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses the keys file in data; name is used in messages.
func ParseFile(name string, data []byte) ([]policy.KeySpec, error) {
	var specs []policy.KeySpec
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, err := parseKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("keys: %s:%d: %s", name, n, strings.TrimPrefix(err.Error(), "keys: "))
		}
		spec.Line = n
		specs = append(specs, spec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("keys: %s: %w", name, err)
	}
	return specs, nil
}

func parseKeyLine(line string) (policy.KeySpec, error) {
	e, err := ParseLine(line)
	if err != nil {
		return policy.KeySpec{}, err
	}
	spec := policy.KeySpec{Name: e.Comment}
	// The public key without options, as a [[keys]] public_key.
	spec.PublicKey = strings.TrimSpace(e.Key.Type() + " " + encodeKey(e) + " " + e.Comment)
	opts, err := e.ParsedOptions()
	if err != nil {
		return policy.KeySpec{}, err
	}
	for _, o := range opts {
		name, value, hasValue := o.Name, o.Value, o.HasValue
		switch {
		case name == "name" && hasValue:
			spec.Name = value
		case name == "role" && hasValue:
			spec.Role = policy.Role(value)
		case name == "from" && hasValue:
			spec.From = strings.Split(value, ",")
		case name == "expiry-time" && hasValue:
			t, err := parseExpiryTime(value)
			if err != nil {
				return policy.KeySpec{}, err
			}
			spec.Expires = t
		case name == "max-sessions" && hasValue:
			n, err := strconv.Atoi(value)
			if err != nil {
				return policy.KeySpec{}, fmt.Errorf("option max-sessions: %q is not a number", value)
			}
			spec.MaxSessions = n
		case !hasValue && (name == "restrict" || strings.HasPrefix(name, "no-")):
		default:
			return policy.KeySpec{}, fmt.Errorf("option %q is not supported here (nixgate's options: name, role, from, expiry-time, max-sessions, restrict)", name)
		}
	}
	if spec.Role == "" {
		return policy.KeySpec{}, fmt.Errorf("no role: start the line with role=\"build\" or role=\"substitute\"")
	}
	if spec.Name == "" {
		return policy.KeySpec{}, fmt.Errorf("no name: add name=\"…\" or a comment after the key")
	}
	return spec, nil
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
