package main

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/certauth"
	"github.com/nixgate/nixgate/policy"
)

// maxAuthInfo bounds what is read of sshd's SSH_USER_AUTH file: a line
// per authentication method, each at most a certificate.
const maxAuthInfo = 256 << 10

// execCert checks, in exec mode, the certificate that sshd accepted for
// the key k, a CA's principal: read from the file SSH_USER_AUTH names
// (sshd's ExposeAuthInfo yes), it must be one certauth.Check accepts
// now, as serve mode would, for exactly k. sshd checked its CA, its
// principal, its validity and its source-address already; this adds
// nixgate's revoked file and the certificate's key ID and serial for
// the records. Without SSH_USER_AUTH the session is refused: revocation
// could not be checked.
func execCert(cfg *policy.Config, k *policy.Key, authInfo string, remote netip.Addr, now time.Time) (*certauth.Login, error) {
	if authInfo == "" {
		return nil, fmt.Errorf("key %q is a principal of CA %q, and sshd did not say which certificate logged in: set ExposeAuthInfo yes in sshd_config", k.Name, k.CA)
	}
	f, err := os.Open(authInfo)
	if err != nil {
		return nil, fmt.Errorf("sshd's SSH_USER_AUTH file: %v", err)
	}
	defer f.Close()
	var first error
	sc := bufio.NewScanner(io.LimitReader(f, maxAuthInfo))
	sc.Buffer(make([]byte, 0, 64<<10), maxAuthInfo)
	for sc.Scan() {
		method, key, _ := strings.Cut(sc.Text(), " ")
		if method != "publickey" {
			continue
		}
		pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(key))
		if err != nil {
			continue
		}
		cert, ok := pk.(*gossh.Certificate)
		if !ok {
			continue
		}
		l, err := certauth.Check(cfg, cert, remote, now)
		if err == nil && l.Key.Name != k.Name {
			err = fmt.Errorf("the certificate (key ID %q) logs in as %q, not as %q, the key this authorized_keys line names", cert.KeyId, l.Key.Name, k.Name)
		}
		if err == nil {
			return l, nil
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("key %q is a principal of CA %q, and no certificate logged in (sshd's SSH_USER_AUTH names none)", k.Name, k.CA)
}
