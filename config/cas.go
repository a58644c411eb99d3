package config

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/krl"
	"github.com/nixgate/nixgate/policy"
)

// maxRevokedSize bounds a revoked file: a KRL of millions of serials
// fits, and a file that is not one cannot take the memory.
const maxRevokedSize = 64 << 20

// loadCAs reads and parses each CA's key (written in the configuration,
// or in the .pub file it names) and reads its revoked file; no CA key
// may be listed twice. Errors name the configuration's file and the
// line of the CA's [[cas]] entry.
func loadCAs(cfg *policy.Config) error {
	seen := map[string]string{}
	for i := range cfg.CAs {
		ca := &cfg.CAs[i]
		at := fmt.Sprintf("%s:%d: CA %q", ca.Source, ca.Line, ca.Name)
		text := ca.PublicKey
		if strings.HasPrefix(text, "/") {
			data, err := os.ReadFile(text)
			if err != nil {
				return errorf("%s: key: %v", at, err)
			}
			text = strings.TrimSpace(string(data))
		}
		e, err := keys.ParseLine(text)
		switch {
		case err != nil:
			return errorf("%s: key: %s", at, policy.Line(err))
		case len(e.Options) > 0:
			return errorf("%s: key: a CA's key has no options: give its .pub line alone", at)
		}
		if _, ok := e.Key.(*gossh.Certificate); ok {
			return errorf("%s: key: a certificate cannot be a CA: give the CA's own public key", at)
		}
		fp := keys.Fingerprint(e.Key)
		if other, dup := seen[fp]; dup {
			return errorf("%s: key %s is also the key of CA %q", at, fp, other)
		}
		seen[fp] = ca.Name
		ca.Key, ca.Fingerprint = e.Key.Marshal(), fp
		if ca.Revoked != "" {
			f := &revokedFile{path: ca.Revoked}
			if err := f.load(); err != nil {
				return errorf("%s: revoked: %v", at, err)
			}
			ca.Revocation = f
		}
	}
	return nil
}

// revokedFile is a CA's revoked file, an OpenSSH KRL or nixgate's plain
// list (keys.ParseRevoked), read again whenever it has changed (its
// size, modification time or inode) when a certificate is checked. While it cannot be read or parsed, every certificate is
// revoked: it fails closed.
type revokedFile struct {
	path string

	mu      sync.Mutex
	stamp   fileStamp
	revoked func(policy.CertID) string // what the file revokes; nil until read
	err     error                      // why the file as it is cannot be used
}

// fileStamp is what tells that a file has changed.
type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func stampOf(f *os.File) (fileStamp, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st, nil
}

func statPath(path string) (fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileStamp{}, err
	}
	defer f.Close()
	return stampOf(f)
}

// load reads the file; on error f revokes everything until a load
// succeeds.
func (f *revokedFile) load() error {
	f.revoked, f.err = nil, nil
	st, rev, err := readRevoked(f.path)
	f.stamp = st
	if err != nil {
		f.err = err
		return err
	}
	f.revoked = rev
	return nil
}

// Revoked implements policy.Revocation.
func (f *revokedFile) Revoked(id policy.CertID) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, err := statPath(f.path); err != nil || st != f.stamp || f.revoked == nil {
		if err != nil {
			f.revoked, f.err, f.stamp = nil, err, fileStamp{}
		} else {
			f.load()
		}
	}
	if f.err != nil {
		return fmt.Sprintf("the CA's revoked file cannot be used, so every certificate of the CA is refused until it is fixed: %v", f.err)
	}
	return f.revoked(id)
}

// readRevoked reads and parses the revoked file at path, and returns its
// stamp as read.
func readRevoked(path string) (fileStamp, func(policy.CertID) string, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileStamp{}, nil, fmt.Errorf("%s does not exist: create it empty (touch %s), or remove revoked =", path, path)
	}
	if err != nil {
		return fileStamp{}, nil, err
	}
	defer fh.Close()
	st, err := stampOf(fh)
	if err != nil {
		return fileStamp{}, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxRevokedSize+1))
	if err != nil {
		return st, nil, err
	}
	if len(data) > maxRevokedSize {
		return st, nil, fmt.Errorf("%s is larger than %d MiB", path, maxRevokedSize>>20)
	}
	if krl.IsKRL(data) {
		k, err := krl.Parse(data)
		if err != nil {
			return st, nil, fmt.Errorf("%s: %v", path, err)
		}
		return st, func(id policy.CertID) string {
			if why := k.Revoked(krl.Cert{Serial: id.Serial, KeyID: id.KeyID, Key: id.Key, CAKey: id.CAKey}); why != "" {
				return why + " (" + path + ")"
			}
			return ""
		}, nil
	}
	l, err := keys.ParseRevoked(path, data)
	if err != nil {
		return st, nil, errors.New(policy.Line(err))
	}
	return st, func(id policy.CertID) string {
		return l.Revoked(id.Serial, id.KeyID, fingerprint(id.Key), fingerprint(id.CAKey))
	}, nil
}

// fingerprint is keys.Fingerprint of a key in wire form.
func fingerprint(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
