package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/policy"
)

// Generate writes a new ed25519 key pair without a passphrase: the
// private key to path (0600, OpenSSH format) and the public key to
// path.pub (0644), as ssh-keygen lays them out. It refuses to overwrite
// either file.
func Generate(path, comment string) (ssh.PublicKey, error) {
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("keys: %s exists; not overwriting it", p)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	line := AuthorizedKey(sp)
	if comment != "" {
		line += " " + comment
	}
	g, err := os.OpenFile(path+".pub", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("keys: %w", err)
	}
	g.WriteString(line + "\n")
	if err := g.Close(); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return sp, nil
}

// Grant is a key to authorize.
type Grant struct {
	Name    string
	Role    policy.Role
	From    []string
	Expires time.Time // zero: never
	Key     Entry     // the client's public key line, without options
}

// ParseGrantKey reads a client public key line for a Grant: exactly one
// key, without options.
func ParseGrantKey(line string) (Entry, error) {
	e, err := ParseLine(line)
	if err != nil {
		return Entry{}, err
	}
	if len(e.Options) > 0 {
		return Entry{}, errors.New("keys: give the bare public key (ssh-ed25519 AAAA… comment), without options")
	}
	return e, nil
}

func (g Grant) publicKey() string {
	s := AuthorizedKey(g.Key.Key)
	if g.Key.Comment != "" {
		s += " " + g.Key.Comment
	}
	return s
}

// KeysFileLine returns g as a line of nixgate's keys file.
func (g Grant) KeysFileLine() string {
	opts := []string{"name=" + strconv.Quote(g.Name), "role=" + strconv.Quote(string(g.Role))}
	if len(g.From) > 0 {
		opts = append(opts, "from="+strconv.Quote(strings.Join(g.From, ",")))
	}
	if !g.Expires.IsZero() {
		opts = append(opts, "expiry-time="+strconv.Quote(g.Expires.UTC().Format("20060102150405")+"Z"))
	}
	return strings.Join(opts, ",") + " " + g.publicKey()
}

// ForcedCommandLine returns the authorized_keys line that makes OpenSSH
// run `nixgate exec` for g's key.
func (g Grant) ForcedCommandLine(nixgate, config string) string {
	cmd := fmt.Sprintf("%s exec --config %s --key %s", shellQuote(nixgate), shellQuote(config), shellQuote(g.Name))
	return "restrict,command=" + quoteOption(cmd) + " " + g.publicKey()
}

// shellQuote returns w as one shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes.
func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./@%+=:,-") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// quoteOption writes v as OpenSSH reads an option value (see Option): in
// double quotes, with " as \". v must not end in a backslash, which would
// escape the closing quote; shellQuote's words never do.
func quoteOption(v string) string {
	return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
}

// AddToKeysFile appends g to the keys file at path unless its name or key
// is already among taken (the configuration's keys) or in the file.
func AddToKeysFile(path string, g Grant, taken []policy.Key) error {
	if err := g.Conflict(taken); err != nil {
		return err
	}
	fp := Fingerprint(g.Key.Key)
	return EditFile(path, 0o644, func(lines []string) ([]string, error) {
		specs, err := ParseFile(path, []byte(strings.Join(lines, "\n")))
		if err != nil {
			return nil, err
		}
		for _, s := range specs {
			if s.Name == g.Name {
				return nil, fmt.Errorf("keys: a key named %q exists already (%s:%d)", g.Name, path, s.Line)
			}
			if e, err := ParseLine(s.PublicKey); err == nil && Fingerprint(e.Key) == fp {
				return nil, fmt.Errorf("keys: key %s is authorized already as %q (%s:%d)", fp, s.Name, path, s.Line)
			}
		}
		return append(lines, g.KeysFileLine()), nil
	})
}

// Conflict reports whether g's name or key is taken by one of keys.
func (g Grant) Conflict(keys []policy.Key) error {
	fp := Fingerprint(g.Key.Key)
	for _, k := range keys {
		if k.Name == g.Name {
			return fmt.Errorf("keys: a key named %q exists already (%s:%d)", g.Name, k.Source, k.Line)
		}
		if e, err := ParseLine(k.PublicKey); err == nil && Fingerprint(e.Key) == fp {
			return fmt.Errorf("keys: key %s is authorized already as %q (%s:%d)", fp, k.Name, k.Source, k.Line)
		}
	}
	return nil
}

// Same returns the key of keys that g would add again: the same name and
// public key. It returns nil when there is none.
func (g Grant) Same(keys []policy.Key) *policy.Key {
	fp := Fingerprint(g.Key.Key)
	for i, k := range keys {
		if e, err := ParseLine(k.PublicKey); err == nil && k.Name == g.Name && Fingerprint(e.Key) == fp {
			return &keys[i]
		}
	}
	return nil
}

// ForcedCommandPresent reports whether the OpenSSH authorized_keys file
// at path holds g's key already as a restricted forced `nixgate exec
// --key NAME` for g's name, which AddForcedCommand keeps. Any other line
// with g's key is an error; a missing file holds nothing.
func ForcedCommandPresent(path string, g Grant) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keys: %w", err)
	}
	fp := Fingerprint(g.Key.Key)
	for i, l := range strings.Split(string(data), "\n") {
		e, err := ParseLine(l)
		if err != nil || Fingerprint(e.Key) != fp {
			continue
		}
		if e.ForcesNixgate() && e.Restricted() && LineName(e) == g.Name {
			return true, nil
		}
		return false, fmt.Errorf("keys: key %s is in %s already (line %d), but not as restricted nixgate exec --key %s: remove that line first (nixgate keys revoke --authorized-keys %s %s)", fp, path, i+1, g.Name, path, fp)
	}
	return false, nil
}

// AddForcedCommand appends g's forced-command line to an OpenSSH
// authorized_keys file unless ForcedCommandPresent. A missing file is
// created with mode 0644 (sshd reads it as the account, which must not
// write it), and a missing directory with mode 0755, both owned by the
// caller.
func AddForcedCommand(path string, g Grant, nixgate, config string) error {
	present, err := ForcedCommandPresent(path, g)
	if err != nil || present {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	fp := Fingerprint(g.Key.Key)
	return EditFile(path, 0o644, func(lines []string) ([]string, error) {
		for i, l := range lines {
			if e, err := ParseLine(l); err == nil && Fingerprint(e.Key) == fp {
				return nil, fmt.Errorf("keys: key %s is in %s already (line %d)", fp, path, i+1)
			}
		}
		return append(lines, g.ForcedCommandLine(nixgate, config)), nil
	})
}

// Revoke removes from the file at path every key line whose key has the
// fingerprint, or whose nixgate name (name= option, or --key of a forced
// nixgate exec command) is, what. It fails when nothing matches.
func Revoke(path, what string) (removed int, err error) {
	err = EditFile(path, 0o600, func(lines []string) ([]string, error) {
		var out []string
		for _, l := range lines {
			if e, err := ParseLine(l); err == nil && (Fingerprint(e.Key) == what || LineName(e) == what) {
				removed++
				continue
			}
			out = append(out, l)
		}
		if removed == 0 {
			return nil, fmt.Errorf("keys: no key named or with fingerprint %q in %s", what, path)
		}
		return out, nil
	})
	return removed, err
}

// Restricted reports whether e has the restrict option.
func (e Entry) Restricted() bool {
	for _, o := range e.Options {
		if strings.EqualFold(o, "restrict") {
			return true
		}
	}
	return false
}

// ForcesNixgate reports whether e's command= option runs exactly
// nixgate exec --key NAME and nothing else (see ParseForcedExec).
func (e Entry) ForcesNixgate() bool {
	_, err := e.ForcedExec()
	return err == nil
}

// LineName returns the nixgate name of a key line: its name= option, the
// --key of a forced `nixgate exec`, or else its comment.
func LineName(e Entry) string {
	if v, ok := e.Option("name"); ok {
		return v
	}
	if f, err := e.ForcedExec(); err == nil {
		return f.Key
	}
	return e.Comment
}

// KnownHostsLine returns the known_hosts line for host and key.
func KnownHostsLine(host string, k ssh.PublicKey) string {
	return host + " " + AuthorizedKey(k)
}

// MachinesHostKey returns the base64 publicHostKey field of Nix's machines
// file for k.
func MachinesHostKey(k ssh.PublicKey) string {
	return base64.StdEncoding.EncodeToString([]byte(AuthorizedKey(k) + "\n"))
}
