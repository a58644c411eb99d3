package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// CertClockSkew is how far ahead of this builder's clock a certificate's
// valid-after may be for the certificate to be accepted: the issuer's
// clock may run a little ahead, and a CI job connects as soon as it has
// its certificate. It does not extend valid-before: a certificate is
// refused from the second it expires, as OpenSSH's sshd refuses it.
const CertClockSkew = 60 * time.Second

// The critical options of OpenSSH user certificates that nixgate
// honours. A certificate with any other is refused.
const (
	optForceCommand  = "force-command"
	optSourceAddress = "source-address"
)

// The Permissions extensions that carry what a verified certificate
// says, for the session's records.
const (
	extCertKeyID       = "nixgate-cert-key-id"
	extCertSerial      = "nixgate-cert-serial"
	extCA              = "nixgate-ca"
	extCAFingerprint   = "nixgate-ca-fingerprint"
	extForceCommand    = "nixgate-force-command"
	extHasForceCommand = "nixgate-has-force-command"
)

// login is who a verified key or certificate logs in as.
type login struct {
	// key is the configured key: a [[keys]] entry, or for a certificate
	// the key of its principal.
	key *policy.Key
	// fingerprint is the fingerprint of the key proved in the handshake:
	// for a certificate, of the key it certifies.
	fingerprint string
	// cert and ca are the certificate and the CA that signed it; nil
	// for a plain key.
	cert *gossh.Certificate
	ca   *policy.CA
}

// forceCommand returns the certificate's force-command, and whether it
// has one.
func (l *login) forceCommand() (string, bool) {
	if l.cert == nil {
		return "", false
	}
	fc, ok := l.cert.CriticalOptions[optForceCommand]
	return fc, ok
}

// permissions returns the connection's Permissions: a new object naming
// the key, and what the certificate says, and nothing of what the client
// sent. A certificate's own extensions (permit-pty and the like) are not
// copied: they grant nothing here. Its source-address is, so that
// x/crypto enforces it too.
func (l *login) permissions() *gossh.Permissions {
	p := &gossh.Permissions{Extensions: map[string]string{extKey: l.key.Name, extFingerprint: l.fingerprint}}
	if l.cert == nil {
		return p
	}
	p.Extensions[extCertKeyID] = l.cert.KeyId
	p.Extensions[extCertSerial] = strconv.FormatUint(l.cert.Serial, 10)
	p.Extensions[extCA] = l.ca.Name
	p.Extensions[extCAFingerprint] = l.ca.Fingerprint
	if fc, ok := l.forceCommand(); ok {
		p.Extensions[extForceCommand] = fc
		p.Extensions[extHasForceCommand] = "yes"
	}
	if sa, ok := l.cert.CriticalOptions[optSourceAddress]; ok {
		p.CriticalOptions = map[string]string{optSourceAddress: sa}
	}
	return p
}

// logAttrs are the log attributes of a login: the certificate's when
// there is one.
func (l *login) logAttrs() []any {
	attrs := []any{"key", l.key.Name, "fingerprint", l.fingerprint}
	if l.cert != nil {
		attrs = append(attrs, certAttrs(l.cert)...)
		attrs = append(attrs, "principal", l.key.Name, "ca", l.ca.Name)
	}
	return attrs
}

// certAttrs are the log attributes of a certificate as presented,
// before it is trusted.
func certAttrs(cert *gossh.Certificate) []any {
	attrs := []any{"cert_key_id", cert.KeyId, "cert_serial", cert.Serial, "cert_principals", cert.ValidPrincipals,
		"ca_fingerprint", keys.Fingerprint(cert.SignatureKey), "cert_valid", certWindow(cert)}
	if len(cert.CriticalOptions) > 0 {
		attrs = append(attrs, "cert_critical_options", cert.CriticalOptions)
	}
	return attrs
}

// certWindow describes a certificate's validity for the log.
func certWindow(cert *gossh.Certificate) string {
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

// checkCert decides whether cert may log in from c under st, and as
// which key. The certificate must be a user certificate signed by a
// configured CA, not revoked, carry exactly one principal the CA maps,
// be valid now (CertClockSkew allowed before valid-after), have no
// critical option but source-address (which c's address must match)
// and force-command (which policy must allow for the principal's role),
// and x/crypto's CertChecker must accept it. The key it certifies is the
// one the client proves: x/crypto verifies the signature with the
// certificate's key.
func (st *state) checkCert(cert *gossh.Certificate, c *connState, now time.Time) (*login, error) {
	switch cert.CertType {
	case gossh.UserCert:
	case gossh.HostCert:
		return nil, fmt.Errorf("a host certificate presented as a user certificate")
	default:
		return nil, fmt.Errorf("a certificate of unknown type %d", cert.CertType)
	}
	signer := cert.SignatureKey.Marshal()
	var ca *policy.CA
	for i := range st.cfg.CAs {
		if a := &st.cfg.CAs[i]; a.Key != nil && bytes.Equal(a.Key, signer) {
			ca = a
			break
		}
	}
	if ca == nil {
		return nil, fmt.Errorf("certificate signed by an unknown CA %s", keys.Fingerprint(cert.SignatureKey))
	}
	if ca.Revoked != "" && ca.Revocation == nil {
		return nil, fmt.Errorf("CA %q: its revoked file %s was not read, so none of its certificates is accepted", ca.Name, ca.Revoked)
	}
	k, err := st.cfg.CertKey(ca.Name, cert.ValidPrincipals)
	if err != nil {
		return nil, fmt.Errorf("%s", policy.Line(err))
	}
	var revoked string
	checker := &gossh.CertChecker{
		SupportedCriticalOptions: []string{optForceCommand},
		IsUserAuthority: func(auth gossh.PublicKey) bool {
			return bytes.Equal(auth.Marshal(), ca.Key)
		},
		Clock: func() time.Time {
			// Up to CertClockSkew before valid-after counts as
			// valid-after; valid-before is as the CA wrote it.
			after := time.Unix(int64(min(cert.ValidAfter, 1<<62)), 0)
			if now.Before(after) && after.Sub(now) <= CertClockSkew {
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
			return nil, fmt.Errorf("certificate revoked: %s", revoked)
		case strings.Contains(msg, "not yet valid"), strings.Contains(msg, "expired"):
			return nil, fmt.Errorf("%s (valid %s; now %s, %v of clock skew allowed before valid-after)", msg, certWindow(cert), now.UTC().Format(time.RFC3339), CertClockSkew)
		default:
			return nil, fmt.Errorf("certificate refused: %s", msg)
		}
	}
	if sa, ok := cert.CriticalOptions[optSourceAddress]; ok {
		if err := checkSourceAddress(c.remote, sa); err != nil {
			return nil, err
		}
	}
	l := &login{key: k, fingerprint: keys.Fingerprint(cert.Key), cert: cert, ca: ca}
	if fc, ok := l.forceCommand(); ok {
		d := st.engine.Decide(policy.Request{Key: k.Name, Command: fc, Remote: c.remote, Now: now})
		if !d.Allow {
			return nil, fmt.Errorf("the certificate's force-command %q is not allowed for principal %q: %s", fc, k.Name, d.Reason)
		}
	}
	return l, nil
}

// checkSourceAddress reports whether remote is in list, a certificate's
// source-address option: addresses and CIDR networks separated by
// commas. An entry that is neither refuses the certificate wherever it
// is in the list, as does an unknown address.
func checkSourceAddress(remote netip.Addr, list string) error {
	if !remote.IsValid() {
		return fmt.Errorf("the certificate's source-address is %q and the client address is unknown", list)
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
			return fmt.Errorf("the certificate's source-address %q has an entry that is no address or network: %q", list, s)
		}
		nets = append(nets, p.Masked())
	}
	for _, p := range nets {
		if p.Contains(remote.Unmap()) {
			return nil
		}
	}
	return fmt.Errorf("the client address %s is not in the certificate's source-address %q", remote.Unmap(), list)
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
