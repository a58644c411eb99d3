package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/certauth"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// The Permissions extensions that carry the identity of the key that
// completed authentication.
const (
	extKey         = "nixgate-key"
	extFingerprint = "nixgate-fingerprint"
)

// checkKey decides whether key, a plain key or a certificate, may log in
// as user from c under st, and as which configured key.
func (st *state) checkKey(user string, key gossh.PublicKey, c *connState) (*login, error) {
	if user != st.cfg.User {
		return nil, fmt.Errorf("user %q is not the build user %q", user, st.cfg.User)
	}
	now := time.Now()
	var l *login
	if cert, ok := key.(*gossh.Certificate); ok {
		var remote netip.Addr
		if c != nil {
			remote = c.remote
		}
		cl, err := certauth.Check(st.cfg, cert, remote, now)
		if err != nil {
			return nil, errors.New(policy.Line(err))
		}
		l = &login{key: cl.Key, fingerprint: keys.Fingerprint(cert.Key), cert: cl}
	} else {
		fp := keys.Fingerprint(key)
		k := st.byFP[fp]
		sourced := false
		if k == nil && st.source != nil {
			var err error
			if k, err = st.source.Lookup(user, key); err != nil {
				return nil, fmt.Errorf("key %s: %s", fp, policy.Line(err))
			}
			sourced = true
		}
		if k == nil {
			if st.source != nil {
				return nil, fmt.Errorf("key %s is not configured, and the key source answered no line for it", fp)
			}
			return nil, fmt.Errorf("key %s is not configured", fp)
		}
		l = &login{key: k, fingerprint: fp}
		if sourced {
			l.sourced = key
		}
	}
	k := l.key
	if k.Expired(now) {
		return nil, fmt.Errorf("key %q expired on %s", k.Name, k.Expires.UTC().Format(time.RFC3339))
	}
	if c != nil && !k.AllowsFrom(c.remote) {
		return nil, fmt.Errorf("key %q may not connect from %s", k.Name, c.remote)
	}
	return l, nil
}

// refusedAttrs are the log attributes of a key refused at
// authentication: its fingerprint, and what a certificate says of
// itself.
func refusedAttrs(user string, key gossh.PublicKey, err error) []any {
	attrs := []any{"user", user, "fingerprint", keys.Fingerprint(key), "reason", err.Error()}
	if cert, ok := key.(*gossh.Certificate); ok {
		attrs[3] = keys.Fingerprint(cert.Key)
		attrs = append(attrs, certauth.Attrs(cert)...)
	}
	return attrs
}

// publicKeyHandler answers whether an offered key would be accepted. It
// records nothing about identity: a key offered here may never be used.
func (s *Server) publicKeyHandler(ctx gliderssh.Context, key gliderssh.PublicKey) bool {
	c := connOf(ctx)
	if c == nil {
		return false
	}
	_, err := s.state.Load().checkKey(ctx.User(), key, c)
	if err != nil {
		msg := "public key refused"
		if _, ok := key.(*gossh.Certificate); ok {
			msg = "certificate refused"
		}
		c.log.Info(msg, refusedAttrs(ctx.User(), key, err)...)
		s.metrics.auth("refused")
		return false
	}
	return true
}

// serverConfig returns the x/crypto configuration of one connection:
// modern algorithms only, public key authentication only, and identity
// taken in VerifiedPublicKeyCallback from the key whose signature was
// verified.
func (s *Server) serverConfig(ctx gliderssh.Context) *gossh.ServerConfig {
	c := connOf(ctx)
	return &gossh.ServerConfig{
		Config:                  gossh.Config{KeyExchanges: keyExchanges, Ciphers: ciphers, MACs: macs},
		MaxAuthTries:            s.Config().Serve.Limits.MaxAuthTries,
		PublicKeyAuthAlgorithms: publicKeyAuthAlgorithms,
		VerifiedPublicKeyCallback: func(meta gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, alg string) (*gossh.Permissions, error) {
			if c == nil {
				return nil, errorf("connection not tracked")
			}
			l, err := s.state.Load().checkKey(meta.User(), key, c)
			if err != nil {
				c.log.Warn("authentication refused", refusedAttrs(meta.User(), key, err)...)
				return nil, err
			}
			s.authenticated(c, l.key.Role, l.certificate(), l.sourced)
			c.log.Info("authenticated", append([]any{"user", meta.User()}, append(l.logAttrs(), "algorithm", alg, "client", string(meta.ClientVersion()))...)...)
			s.metrics.auth("accepted")
			// A new object: nothing shared with what an offered key saw.
			return l.permissions(), nil
		},
		AuthLogCallback: func(meta gossh.ConnMetadata, method string, err error) {
			if c != nil && err != nil && method != "none" && method != "publickey" {
				c.log.Warn("authentication refused", "user", meta.User(), "method", method, "reason", "only public keys are accepted")
			}
		},
	}
}

func (s *Server) connectionFailed(conn net.Conn, err error) {
	s.log.Info("connection failed", "remote", conn.RemoteAddr().String(), "reason", err.Error())
}

// verifiedPermissions returns the Permissions that the verified key's
// callback returned for the connection; nil when it has none. They are
// read from the x/crypto connection, never from gliderlabs' context,
// whose Permissions every offered key's callback shares.
func verifiedPermissions(ctx gliderssh.Context) *gossh.Permissions {
	sc, _ := ctx.Value(gliderssh.ContextKeyConn).(*gossh.ServerConn)
	if sc == nil {
		return nil
	}
	return sc.Permissions
}

// identity returns the key name and fingerprint from the verified key's
// Permissions; ok is false when the connection has none.
func identity(ctx gliderssh.Context) (name, fp string, ok bool) {
	p := verifiedPermissions(ctx)
	if p == nil {
		return "", "", false
	}
	name, ok = p.Extensions[extKey]
	return name, p.Extensions[extFingerprint], ok && name != ""
}

// certOf returns the log attributes of the verified certificate, and its
// force-command (hasForce says whether it has one); no attributes when
// the connection logged in with a plain key.
func certOf(ctx gliderssh.Context) (attrs []any, force string, hasForce bool) {
	p := verifiedPermissions(ctx)
	if p == nil {
		return nil, "", false
	}
	e := p.Extensions
	if _, ok := e[extCA]; !ok {
		return nil, "", false
	}
	attrs = []any{"cert_key_id", e[extCertKeyID], "cert_serial", e[extCertSerial], "principal", e[extKey], "ca", e[extCA], "ca_fingerprint", e[extCAFingerprint]}
	return attrs, e[extForceCommand], e[extHasForceCommand] == "yes"
}
