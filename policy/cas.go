package policy

import (
	"fmt"
	"slices"
	"strings"
)

// CASpec is a [[cas]] entry as written, before validation.
type CASpec struct {
	Name       string          `toml:"name"`
	Key        string          `toml:"key"`
	Revoked    string          `toml:"revoked"`
	Principals []PrincipalSpec `toml:"principals"`
}

// PrincipalSpec is a [[cas.principals]] entry as written: a principal
// that the CA's certificates may carry, and the settings of the key it
// logs in as. Its Name is the principal and the key's name.
type PrincipalSpec struct {
	Name string `toml:"name"`
	KeySettings
}

// CA is a certificate authority whose OpenSSH user certificates log in:
// one validated [[cas]] entry. A certificate it signed logs in as the key
// named by the one principal of the certificate that the CA maps (see
// Config.CertKey).
type CA struct {
	// Name identifies the CA in logs and in nixgate keys revoke --ca.
	Name string
	// PublicKey is the CA's key as written: an OpenSSH one-line public
	// key ("ssh-ed25519 AAAA… comment"), or the absolute path of a file
	// holding one (the CA's .pub), which config.Load reads.
	PublicKey string
	// Key is the CA's public key in SSH wire form; a certificate's
	// signature key must be exactly these bytes. config.Load sets it.
	// Nil (a Config that did not come from config.Load) means no
	// certificate of this CA is accepted.
	Key []byte
	// Fingerprint is Key's SHA256 fingerprint as OpenSSH prints it, set
	// with Key; it names the CA in the audit log.
	Fingerprint string
	// Revoked is the path of the CA's revocation file: an OpenSSH KRL
	// (ssh-keygen -k) or nixgate's plain list (nixgate keys revoke
	// --ca). Empty means the CA has none.
	Revoked string
	// Revocation is the Revoked file as config.Load read it. Nil with a
	// Revoked file set (a Config not from config.Load) means no
	// certificate of this CA is accepted: the file was never read.
	Revocation Revocation
	// Principals are the principals the CA's certificates may log in
	// with: each the name of a key in Config.Keys whose CA is Name.
	Principals []string

	// Source and Line say where the CA is written, for messages.
	Source string
	Line   int
}

// CertID is what a revocation list looks at in a certificate.
type CertID struct {
	// Serial is the certificate's serial number.
	Serial uint64
	// KeyID is the certificate's key ID (ssh-keygen -I).
	KeyID string
	// Key is the certified key, and CAKey the key that signed the
	// certificate, each in SSH wire form.
	Key, CAKey []byte
}

// A Revocation says which certificates are revoked. Revoked returns why
// id is revoked, one line naming the list and the entry ("serial 7 is
// revoked (/etc/nixgate/ci.revoked:3)"), or "" when it is not.
type Revocation interface {
	Revoked(id CertID) string
}

// CA returns the CA named name, or nil when there is none.
func (c *Config) CA(name string) *CA {
	if c == nil {
		return nil
	}
	for i := range c.CAs {
		if c.CAs[i].Name == name {
			return &c.CAs[i]
		}
	}
	return nil
}

// CertKey returns the key that a certificate signed by the CA named ca
// logs in as, given the certificate's principals: the one key of that CA
// whose name is among them. It fails when the CA is unknown, when none of
// the principals is one the CA maps, and when more than one is: a
// certificate logs in as one identity, which the certificate, not the
// client, decides. Principals are compared byte for byte.
func (c *Config) CertKey(ca string, principals []string) (*Key, error) {
	a := c.CA(ca)
	if a == nil {
		return nil, errorf("no certificate authority %q", ca)
	}
	var found *Key
	for _, p := range principals {
		if !slices.Contains(a.Principals, p) {
			continue
		}
		k := c.Key(p)
		if k == nil || k.CA != a.Name {
			continue
		}
		if found != nil && found != k {
			return nil, errorf("the certificate carries more than one principal that CA %q maps (%q and %q): it must name one", a.Name, found.Name, k.Name)
		}
		found = k
	}
	if found == nil {
		return nil, errorf("none of the certificate's principals %q is mapped by CA %q (its principals: %s)", principals, a.Name, strings.Join(a.Principals, ", "))
	}
	return found, nil
}

// ca validates a [[cas]] entry and adds the keys of its principals to
// cfg. seenKeys holds the key names taken so far, seenCAs the CA names.
func (v *validator) ca(at string, fc CASpec, cfg *Config, seenKeys, seenCAs map[string]bool) CA {
	a := CA{Name: fc.Name, PublicKey: strings.TrimSpace(fc.Key), Revoked: fc.Revoked, Source: v.name, Line: v.line(at)}
	switch {
	case fc.Name == "":
		v.fail(at+".name", "missing: name the CA, for the log and for nixgate keys revoke --ca")
	case !keyNameRE.MatchString(fc.Name):
		v.fail(at+".name", "%q: use letters, digits, '.', '_', '-' and '@' (at most 64)", fc.Name)
	case seenCAs[fc.Name]:
		v.fail(at+".name", "%q is used by another CA", fc.Name)
	}
	seenCAs[fc.Name] = true
	if why := caKeyRefusal(a.PublicKey); why != "" {
		v.fail(at+".key", "%s", why)
	}
	if fc.Revoked != "" && !strings.HasPrefix(fc.Revoked, "/") {
		v.fail(at+".revoked", "%q must be an absolute path", fc.Revoked)
	}
	if len(fc.Principals) == 0 {
		v.fail(at+".principals", "none: add a [[cas.principals]] entry (name = the principal, role = …), or no certificate of the CA can log in")
	}
	for j, p := range fc.Principals {
		pat := fmt.Sprintf("%s.principals[%d]", at, j)
		k := v.key(pat, KeySpec{Name: p.Name, KeySettings: p.KeySettings, Line: v.line(pat)}, seenKeys)
		k.CA = fc.Name
		cfg.Keys = append(cfg.Keys, k)
		a.Principals = append(a.Principals, p.Name)
	}
	return a
}

// caKeyRefusal says what is wrong with a CA's key as written, or "" when
// it has the shape of a public key line or an absolute path; config.Load
// reads and parses it.
func caKeyRefusal(key string) string {
	fields := strings.Fields(key)
	switch {
	case key == "":
		return `missing: the CA's public key ("ssh-ed25519 AAAA…") or the absolute path of its .pub file`
	case strings.HasPrefix(key, "/"):
		return ""
	case len(fields) < 2:
		return fmt.Sprintf("%q is neither a public key line (\"ssh-ed25519 AAAA…\") nor an absolute path", key)
	case strings.Contains(fields[0], "-cert-"):
		return "a certificate cannot be a CA: give the CA's own public key"
	}
	return ""
}
