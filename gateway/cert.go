package gateway

import (
	"strconv"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/certauth"
	"github.com/nixgate/nixgate/policy"
)

// CertClockSkew is certauth.ClockSkew: how far ahead of this builder's
// clock a certificate's valid-after may be.
const CertClockSkew = certauth.ClockSkew

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
	// cert is what certauth said of the certificate; nil for a plain
	// key.
	cert *certauth.Login
	// sourced is the public key when the key source answered the key;
	// nil for a key of the configuration's.
	sourced gossh.PublicKey
}

// certificate returns the login's certificate; nil for a plain key.
func (l *login) certificate() *gossh.Certificate {
	if l.cert == nil {
		return nil
	}
	return l.cert.Cert
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
	cert := l.cert.Cert
	p.Extensions[extCertKeyID] = cert.KeyId
	p.Extensions[extCertSerial] = strconv.FormatUint(cert.Serial, 10)
	p.Extensions[extCA] = l.cert.CA.Name
	p.Extensions[extCAFingerprint] = l.cert.CA.Fingerprint
	if fc, ok := l.cert.ForceCommand(); ok {
		p.Extensions[extForceCommand] = fc
		p.Extensions[extHasForceCommand] = "yes"
	}
	if sa, ok := cert.CriticalOptions[certauth.OptSourceAddress]; ok {
		p.CriticalOptions = map[string]string{certauth.OptSourceAddress: sa}
	}
	return p
}

// logAttrs are the log attributes of a login: the certificate's when
// there is one.
func (l *login) logAttrs() []any {
	attrs := []any{"key", l.key.Name, "fingerprint", l.fingerprint}
	if l.sourced != nil {
		attrs = append(attrs, "key_source", true)
	}
	if l.cert != nil {
		attrs = append(attrs, l.cert.LogAttrs()...)
	}
	return attrs
}
