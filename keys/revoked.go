package keys

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A revoked-certificates list is nixgate's plain list of what a CA's
// certificates may no longer log in with, one entry a line:
//
//	serial:7                 the CA's certificate with serial 7
//	id:ci-repo-x-run-1234    every certificate of the CA with this key ID
//	SHA256:Jp3k…             the key with this fingerprint: every
//	                         certificate of it, or the CA's own key
//
// '#' starts a comment line; blank lines are ignored. Anything else is
// an error, so that a mistyped entry is never silently no revocation. A
// key ID runs to the end of the line, spaces and all; it may not be
// empty. Serial 0 (ssh-keygen's default without -z) cannot be revoked by
// serial, as in OpenSSH's KRLs: revoke by key ID or key.

// RevokedList is a parsed revoked-certificates list. The zero
// RevokedList revokes nothing.
type RevokedList struct {
	// Name is the list's file, for reasons.
	Name    string
	serials map[uint64]int // serial -> line
	ids     map[string]int // key ID -> line
	fps     map[string]int // SHA256 fingerprint -> line
}

// RevokedEntry returns the line that revokes what: a serial (kind
// "serial"), a key ID ("id") or a key's SHA256 fingerprint
// ("fingerprint"), checked as ParseRevoked checks a line.
func RevokedEntry(kind, what string) (string, error) {
	var line string
	switch kind {
	case "serial":
		line = "serial:" + what
	case "id":
		line = "id:" + what
	case "fingerprint":
		line = what
	default:
		return "", errorf("no kind of revocation %q (serial, id or fingerprint)", kind)
	}
	if strings.ContainsAny(line, "\n\r") {
		return "", errorf("%q: an entry is one line", what)
	}
	if err := (&RevokedList{}).add(line, 0); err != nil {
		return "", errorf("%w", err)
	}
	return line, nil
}

// ParseRevoked parses a revoked-certificates list; name is used in
// messages, which name the line at fault.
func ParseRevoked(name string, data []byte) (*RevokedList, error) {
	l := &RevokedList{Name: name, serials: map[uint64]int{}, ids: map[string]int{}, fps: map[string]int{}}
	for i, text := range strings.Split(string(data), "\n") {
		n := i + 1
		text = strings.TrimSuffix(text, "\r")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if err := l.add(text, n); err != nil {
			return nil, errorf("%s:%d: %w", name, n, err)
		}
	}
	return l, nil
}

// add adds the entry written on line n, text, to l.
func (l *RevokedList) add(text string, n int) error {
	if l.serials == nil {
		l.serials, l.ids, l.fps = map[uint64]int{}, map[string]int{}, map[string]int{}
	}
	if strings.ContainsRune(text, 0) {
		return fmt.Errorf("a NUL byte")
	}
	switch {
	case strings.HasPrefix(text, "serial:"):
		s := strings.TrimPrefix(text, "serial:")
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || s != strconv.FormatUint(v, 10) {
			return fmt.Errorf("serial %q is not a decimal number", s)
		}
		if v == 0 {
			return fmt.Errorf("serial 0 is every certificate signed without -z: revoke by id: or SHA256: instead")
		}
		l.serials[v] = n
	case strings.HasPrefix(text, "id:"):
		id := strings.TrimPrefix(text, "id:")
		if id == "" {
			return fmt.Errorf("an empty key ID")
		}
		if strings.TrimSpace(id) != id {
			// A space an editor left would revoke another key ID than
			// the one meant, silently: refused (a KRL revokes such IDs).
			return fmt.Errorf("key ID %q starts or ends with white space: write the ID alone (for an ID that really does, use a KRL: ssh-keygen -k)", id)
		}
		l.ids[id] = n
	case strings.HasPrefix(text, "SHA256:"):
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(text, "SHA256:"))
		if err != nil || len(b) != 32 {
			return fmt.Errorf("%q is not a SHA256 fingerprint as ssh-keygen -l prints it", text)
		}
		l.fps[text] = n
	default:
		return fmt.Errorf("%q: want serial:N, id:KEY-ID or SHA256:FINGERPRINT", text)
	}
	return nil
}

// Revoked returns why a certificate with serial and keyID, certifying
// the key with fingerprint keyFP and signed by the CA whose key has
// fingerprint caFP, is revoked by l ("serial 7 is revoked
// (/etc/nixgate/ci.revoked:3)"); "" when it is not. A nil list revokes
// nothing.
func (l *RevokedList) Revoked(serial uint64, keyID, keyFP, caFP string) string {
	if l == nil {
		return ""
	}
	at := func(n int) string { return fmt.Sprintf("(%s:%d)", l.Name, n) }
	if n, ok := l.serials[serial]; ok && serial != 0 {
		return fmt.Sprintf("serial %d is revoked %s", serial, at(n))
	}
	if n, ok := l.ids[keyID]; ok {
		return fmt.Sprintf("key ID %q is revoked %s", keyID, at(n))
	}
	if n, ok := l.fps[keyFP]; ok {
		return fmt.Sprintf("key %s is revoked %s", keyFP, at(n))
	}
	if n, ok := l.fps[caFP]; ok {
		return fmt.Sprintf("the CA's key %s is revoked %s", caFP, at(n))
	}
	return ""
}

// AddRevoked appends entry, a line RevokedEntry returned, to the list at
// path, creating it (mode 0644) when it does not exist; an entry already
// listed is not added again (added is false). The file is checked first:
// a list that does not parse is not written to.
func AddRevoked(path, entry string) (added bool, err error) {
	err = EditFile(path, 0o644, func(lines []string) ([]string, error) {
		if _, err := ParseRevoked(path, []byte(strings.Join(lines, "\n"))); err != nil {
			return nil, err
		}
		if slices.Contains(lines, entry) {
			return lines, nil
		}
		added = true
		return append(lines, entry), nil
	})
	return added, err
}
