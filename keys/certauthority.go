package keys

import (
	"fmt"
	"os"
	"path/filepath"
)

// Exec mode's lines for certificates, in the build account's OpenSSH
// authorized_keys file, one per principal of a CA:
//
//	cert-authority,principals="ci-repo-x",restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci-repo-x" ssh-ed25519 AAAA… ci-ca
//
// sshd accepts a user certificate the CA signed that carries the
// principal (in its validity window, honouring its source-address) and
// runs nixgate exec for the principal's key; sshd tries the lines in
// order, so a certificate carrying two principals logs in by the first
// line that names one of them.

// CertAuthorityLine returns the line for certificates of the CA whose
// public key is ca carrying principal: nixgate is the program's path,
// config the configuration file's.
func CertAuthorityLine(ca Entry, principal, nixgate, config string) string {
	cmd := fmt.Sprintf("%s exec --config %s --key %s", shellQuote(nixgate), shellQuote(config), shellQuote(principal))
	opts := []string{"cert-authority", quoteOption("principals", principal), "restrict", quoteOption("command", cmd)}
	return Entry{Options: opts, Key: ca.Key, Comment: ca.Comment}.String()
}

// AddCertAuthority appends CertAuthorityLine to the OpenSSH
// authorized_keys file at path, unless a line of the CA's key for that
// principal forcing nixgate exec --key principal is there already (added
// is false). Another line of the CA's key naming the principal, or
// forcing something else, is an error. A missing file is created with
// mode 0644, and a missing directory with mode 0755, as AddForcedCommand
// does.
func AddCertAuthority(path string, ca Entry, principal, nixgate, config string) (added bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, errorf("%w", err)
	}
	fp := Fingerprint(ca.Key)
	err = EditFile(path, 0o644, func(lines []string) ([]string, error) {
		for _, l := range authorizedLines(lines) {
			if l.Err != nil || Fingerprint(l.Key) != fp {
				continue
			}
			if !l.certAuthority() {
				return nil, errorf("the CA's key %s is in %s already (line %d) as a user's key: remove that line first", fp, path, l.Number)
			}
			if p, _ := l.Option("principals"); p != principal {
				continue
			}
			if l.ForcesNixgate() && l.Restricted() && l.Forced.Key == principal {
				return lines, nil
			}
			return nil, errorf("%s line %d trusts the CA's key %s for principal %q already, but not as restricted nixgate exec --key %s: remove that line first", path, l.Number, fp, principal, principal)
		}
		added = true
		return append(lines, CertAuthorityLine(ca, principal, nixgate, config)), nil
	})
	return added, err
}

// certAuthority reports whether e has the cert-authority option.
func (e Entry) certAuthority() bool {
	for _, raw := range e.Options {
		if o, err := ParseOption(raw); err == nil && o.Name == "cert-authority" && !o.HasValue {
			return true
		}
	}
	return false
}
