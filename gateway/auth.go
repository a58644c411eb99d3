package gateway

import (
	"fmt"
	"net"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// The Permissions extensions that carry the identity of the key that
// completed authentication.
const (
	extKey         = "nixgate-key"
	extFingerprint = "nixgate-fingerprint"
)

// checkKey decides whether key may log in as user from remote under st.
func (st *state) checkKey(user string, key gossh.PublicKey, c *connState) (*policy.Key, error) {
	fp := keys.Fingerprint(key)
	if user != st.cfg.User {
		return nil, fmt.Errorf("user %q is not the build user %q", user, st.cfg.User)
	}
	k := st.byFP[fp]
	if k == nil {
		return nil, fmt.Errorf("key %s is not configured", fp)
	}
	if k.Expired(time.Now()) {
		return nil, fmt.Errorf("key %q expired on %s", k.Name, k.Expires.UTC().Format(time.RFC3339))
	}
	if c != nil && !k.AllowsFrom(c.remote) {
		return nil, fmt.Errorf("key %q may not connect from %s", k.Name, c.remote)
	}
	return k, nil
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
		c.log.Info("public key refused", "user", ctx.User(), "fingerprint", keys.Fingerprint(key), "reason", err.Error())
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
			k, err := s.state.Load().checkKey(meta.User(), key, c)
			if err != nil {
				c.log.Warn("authentication refused", "user", meta.User(), "fingerprint", keys.Fingerprint(key), "reason", err.Error())
				return nil, err
			}
			s.authenticated(c, k.Role)
			fp := keys.Fingerprint(key)
			c.log.Info("authenticated", "user", meta.User(), "key", k.Name, "fingerprint", fp, "algorithm", alg, "client", string(meta.ClientVersion()))
			s.metrics.auth("accepted")
			// A new object: nothing shared with what an offered key saw.
			return &gossh.Permissions{Extensions: map[string]string{extKey: k.Name, extFingerprint: fp}}, nil
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

// identity returns the key name and fingerprint from the verified key's
// Permissions; ok is false when the connection has none.
func identity(ctx gliderssh.Context) (name, fp string, ok bool) {
	sc, _ := ctx.Value(gliderssh.ContextKeyConn).(*gossh.ServerConn)
	if sc == nil || sc.Permissions == nil {
		return "", "", false
	}
	name, ok = sc.Permissions.Extensions[extKey]
	return name, sc.Permissions.Extensions[extFingerprint], ok && name != ""
}
