// Package certauth decides whether an OpenSSH user certificate may log
// in to a builder, and as which key: signed by a CA of the
// configuration's [[cas]], of type user, carrying exactly one principal
// that CA maps, valid now, not revoked, with no critical option but
// source-address (matched) and force-command (allowed by policy). It is
// serve mode's check, and exec mode's check of the certificate sshd
// already accepted. It holds no state and does no I/O but the revoked
// file's re-reading behind policy.CA.Revocation.
package certauth

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// ClockSkew is how far ahead of this builder's clock a certificate's
// valid-after may be for the certificate to be accepted: the issuer's
// clock may run a little ahead, and a CI job connects as soon as it has
// its certificate. It does not extend valid-before: a certificate is
// refused from the second it expires, as OpenSSH's sshd refuses it.
const ClockSkew = 60 * time.Second

// The critical options of OpenSSH user certificates that nixgate
// honours. A certificate with any other is refused.
const (
	OptForceCommand  = "force-command"
	OptSourceAddress = "source-address"
)

// Login is a certificate that Check accepted, and who it logs in as.
type Login struct {
	// Key is the key of the certificate's principal.
	Key *policy.Key
	// CA is the CA that signed the certificate.
	CA *policy.CA
	// Cert is the certificate.
	Cert *gossh.Certificate
}

// ForceCommand returns the certificate's force-command, and whether it
// has one.
func (l *Login) ForceCommand() (string, bool) {
	fc, ok := l.Cert.CriticalOptions[OptForceCommand]
	return fc, ok
}

// LogAttrs are the log attributes of an accepted certificate: what
// Attrs says of it, the principal, and the CA's name.
func (l *Login) LogAttrs() []any {
	return append(Attrs(l.Cert), "principal", l.Key.Name, "ca", l.CA.Name)
}

// Attrs are the log attributes of a certificate as presented,
// before it is trusted.
func Attrs(cert *gossh.Certificate) []any {
	attrs := []any{"cert_key_id", cert.KeyId, "cert_serial", cert.Serial, "cert_principals", cert.ValidPrincipals,
		"ca_fingerprint", keys.Fingerprint(cert.SignatureKey), "cert_valid", Window(cert)}
	if len(cert.CriticalOptions) > 0 {
		attrs = append(attrs, "cert_critical_options", cert.CriticalOptions)
	}
	return attrs
}

// Window describes a certificate's validity for the log.
func Window(cert *gossh.Certificate) string {
	at := func(t uint64) string {
		if t == 0 {
			return "always"
		}
		if t >= gossh.CertTimeInfinity || t > 1<<62 {
			return "forever"
		}
		return time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
	}
	return at(cert.ValidAfter) + " to " + at(cert.ValidBefore)
}

// Check decides whether cert may log in from remote at now under cfg,
// and as which key. The certificate must be a user certificate signed by a
// configured CA, not revoked, carry exactly one principal the CA maps,
// be valid now (ClockSkew allowed before valid-after), have no
// critical option but source-address (which remote must match)
// and force-command (which policy must allow for the principal's role),
// and x/crypto's CertChecker must accept it. The key it certifies is the
// one the client proves: x/crypto verifies the signature with the
// certificate's key.
func Check(cfg *policy.Config, cert *gossh.Certificate, remote netip.Addr, now time.Time) (*Login, error) {
	switch cert.CertType {
	case gossh.UserCert:
	case gossh.HostCert:
		return nil, errorf("a host certificate presented as a user certificate")
	default:
		return nil, errorf("a certificate of unknown type %d", cert.CertType)
	}
	signer := cert.SignatureKey.Marshal()
	var ca *policy.CA
	for i := range cfg.CAs {
		if a := &cfg.CAs[i]; a.Key != nil && bytes.Equal(a.Key, signer) {
			ca = a
			break
		}
	}
	if ca == nil {
		return nil, errorf("certificate signed by an unknown CA %s", keys.Fingerprint(cert.SignatureKey))
	}
	if ca.Revoked != "" && ca.Revocation == nil {
		return nil, errorf("CA %q: its revoked file %s was not read, so none of its certificates is accepted", ca.Name, ca.Revoked)
	}
	k, err := cfg.CertKey(ca.Name, cert.ValidPrincipals)
	if err != nil {
		return nil, errorf("%s", policy.Line(err))
	}
	var revoked string
	checker := &gossh.CertChecker{
		SupportedCriticalOptions: []string{OptForceCommand},
		IsUserAuthority: func(auth gossh.PublicKey) bool {
			return bytes.Equal(auth.Marshal(), ca.Key)
		},
		Clock: func() time.Time {
			// Up to ClockSkew before valid-after counts as
			// valid-after; valid-before is as the CA wrote it.
			after := time.Unix(int64(min(cert.ValidAfter, 1<<62)), 0)
			if now.Before(after) && after.Sub(now) <= ClockSkew {
				return after
			}
			return now
		},
		IsRevoked: func(cert *gossh.Certificate) bool {
			if ca.Revocation == nil {
				return false
			}
			revoked = ca.Revocation.Revoked(policy.CertID{Serial: cert.Serial, KeyID: cert.KeyId, Key: cert.Key.Marshal(), CAKey: signer})
			return revoked != ""
		},
	}
	// Authenticate checks the certificate for the principal, as sshd
	// does for a principal of AuthorizedPrincipalsFile.
	if _, err := checker.Authenticate(certConn{principal: k.Name}, cert); err != nil {
		switch msg := strings.TrimPrefix(err.Error(), "ssh: "); {
		case revoked != "":
			return nil, errorf("certificate revoked: %s", revoked)
		case strings.Contains(msg, "not yet valid"), strings.Contains(msg, "expired"):
			return nil, errorf("%s (valid %s; now %s, %v of clock skew allowed before valid-after)", msg, Window(cert), now.UTC().Format(time.RFC3339), ClockSkew)
		default:
			return nil, errorf("certificate refused: %s", msg)
		}
	}
	if sa, ok := cert.CriticalOptions[OptSourceAddress]; ok {
		if err := CheckSourceAddress(remote, sa); err != nil {
			return nil, err
		}
	}
	l := &Login{Key: k, CA: ca, Cert: cert}
	if fc, ok := l.ForceCommand(); ok {
		d := policy.NewEngine(cfg).Decide(policy.Request{Key: k.Name, Command: fc, Remote: remote, Now: now})
		if !d.Allow {
			return nil, errorf("the certificate's force-command %q is not allowed for principal %q: %s", fc, k.Name, d.Reason)
		}
	}
	return l, nil
}

// CheckSourceAddress reports whether remote is in list, a certificate's
// source-address option: addresses and CIDR networks separated by
// commas. An entry that is neither refuses the certificate wherever it
// is in the list, as does an unknown address.
func CheckSourceAddress(remote netip.Addr, list string) error {
	if !remote.IsValid() {
		return errorf("the certificate's source-address is %q and the client address is unknown", list)
	}
	var nets []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return errorf("the certificate's source-address %q has an entry that is no address or network: %q", list, s)
		}
		nets = append(nets, p.Masked())
	}
	for _, p := range nets {
		if p.Contains(remote.Unmap()) {
			return nil
		}
	}
	return errorf("the client address %s is not in the certificate's source-address %q", remote.Unmap(), list)
}

// certConn is the connection as CertChecker.Authenticate sees it: the
// user it checks the certificate's principals for is the principal
// nixgate mapped. Authenticate asks it nothing else.
type certConn struct{ principal string }

func (c certConn) User() string          { return c.principal }
func (c certConn) SessionID() []byte     { return nil }
func (c certConn) ClientVersion() []byte { return nil }
func (c certConn) ServerVersion() []byte { return nil }
func (c certConn) RemoteAddr() net.Addr  { return nil }
func (c certConn) LocalAddr() net.Addr   { return nil }

// errorf returns one of certauth's errors: "certauth: " and the reason,
// which is the line the log records (policy.Line).
func errorf(format string, a ...any) error { return policy.Errorf("certauth", format, a...) }
