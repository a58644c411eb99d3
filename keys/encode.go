package keys

import (
	"encoding/base64"

	"golang.org/x/crypto/ssh"
)

func encodeKey(e Entry) string { return base64.StdEncoding.EncodeToString(e.Key.Marshal()) }

// AuthorizedKey returns k in OpenSSH one-line form without a comment.
func AuthorizedKey(k ssh.PublicKey) string {
	return k.Type() + " " + base64.StdEncoding.EncodeToString(k.Marshal())
}
