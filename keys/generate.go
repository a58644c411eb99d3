package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// newKeyPair returns a new ed25519 key: the private key in OpenSSH's PEM
// form, with comment, and the public key. Its errors have no prefix.
func newKeyPair(comment string) (private []byte, public ssh.PublicKey, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), sp, nil
}

// Generate writes a new ed25519 key pair without a passphrase: the
// private key to path (0600, OpenSSH format) and the public key to
// path.pub (0644), as ssh-keygen lays them out. It refuses to overwrite
// either file.
func Generate(path, comment string) (ssh.PublicKey, error) {
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, errorf("%s exists; not overwriting it", p)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errorf("%w", err)
	}
	priv, pub, err := newKeyPair(comment)
	if err != nil {
		return nil, errorf("%w", err)
	}
	if err := writeNew(path, priv, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(path+".pub", []byte(Entry{Key: pub, Comment: comment}.String()+"\n"), 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

// writeNew writes data to path, which must not exist yet; on error it
// leaves no file behind.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return errorf("%w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return errorf("%w", err)
	}
	return nil
}

// generateHostKey writes a new ed25519 host key to path, atomically: the
// key appears whole or not at all.
func generateHostKey(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return errorf("host key: %w", err)
	}
	priv, pub, err := newKeyPair("nixgate host key")
	if err != nil {
		return errorf("host key: %w", err)
	}
	if err := writeAtomic(path, priv, 0o600); err != nil {
		return err
	}
	return writeAtomic(path+".pub", []byte(Entry{Key: pub, Comment: "nixgate host key"}.String()+"\n"), 0o644)
}
