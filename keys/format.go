package keys

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// The one place key lines are written: every line nixgate writes (a .pub
// file, a keys-file grant, a forced command, known_hosts, the machines
// file) is made here.

// AuthorizedKey returns k in OpenSSH one-line form without a comment.
func AuthorizedKey(k ssh.PublicKey) string {
	return k.Type() + " " + base64.StdEncoding.EncodeToString(k.Marshal())
}

// String returns e as one authorized_keys line: its options as written,
// the key, and its comment, each left out when empty.
func (e Entry) String() string {
	s := AuthorizedKey(e.Key)
	if len(e.Options) > 0 {
		s = strings.Join(e.Options, ",") + " " + s
	}
	if e.Comment != "" {
		s += " " + e.Comment
	}
	return s
}

// quoteOption writes name="v" as OpenSSH reads an option (see Option):
// v in double quotes, with " as \". v must not end in a backslash, which
// would escape the closing quote; shellQuote's words never do.
func quoteOption(name, v string) string {
	return name + `="` + strings.ReplaceAll(v, `"`, `\"`) + `"`
}

// shellQuote returns w as one shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes.
func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./@%+=:,-") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// KnownHostsName returns how known_hosts names host reached on port: the
// host alone for port 22 (or 0, unknown), else [host]:port.
func KnownHostsName(host string, port int) string {
	if port == 0 || port == 22 {
		return host
	}
	return fmt.Sprintf("[%s]:%d", host, port)
}

// KnownHostsLine returns the known_hosts line for k under names (one, or
// several separated by commas; see KnownHostsName).
func KnownHostsLine(names string, k ssh.PublicKey) string {
	return names + " " + AuthorizedKey(k)
}

// MachinesHostKey returns the base64 publicHostKey field of Nix's machines
// file for k.
func MachinesHostKey(k ssh.PublicKey) string {
	return base64.StdEncoding.EncodeToString([]byte(AuthorizedKey(k) + "\n"))
}
