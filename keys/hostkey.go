package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// GeneratedHostKeyName is the file name of the host key serve mode
// generates in its state directory when none is configured.
const GeneratedHostKeyName = "ssh_host_ed25519_key"

// LoadHostKeys loads the private host keys at paths. With no paths, it
// loads the ed25519 key in stateDir, generating it there (mode 0600, with
// a .pub beside it) the first time; it never returns an ephemeral key.
// Key files readable by group or others are refused, as OpenSSH does.
func LoadHostKeys(paths []string, stateDir string) (signers []ssh.Signer, generated bool, err error) {
	if len(paths) == 0 {
		p := filepath.Join(stateDir, GeneratedHostKeyName)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := generateHostKey(p); err != nil {
				return nil, false, err
			}
			generated = true
		}
		paths = []string{p}
	}
	for _, p := range paths {
		s, err := LoadHostKey(p)
		if err != nil {
			return nil, false, err
		}
		signers = append(signers, s)
	}
	return signers, generated, nil
}

// HostKeyModeError reports a private host key that group or others may
// read, which LoadHostKey refuses, as OpenSSH does. Its text is the line
// an operator sees; LoadHostKey returns it inside a keys error ("keys: "
// and the line).
type HostKeyModeError struct {
	// Path is the key file.
	Path string
	// Mode is its permission bits.
	Mode os.FileMode
}

func (e *HostKeyModeError) Error() string {
	return fmt.Sprintf("host key %s has mode %04o, readable by others; fix: chmod 600 %s", e.Path, e.Mode, e.Path)
}

// LoadHostKey loads the private host key at path, refusing a file that
// group or others may read (a *HostKeyModeError). An RSA key signs only
// with SHA-2.
func LoadHostKey(path string) (ssh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, errorf("host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, errorf("%w", &HostKeyModeError{Path: path, Mode: fi.Mode().Perm()})
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("host key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, errorf("host key %s: %w", path, err)
	}
	if s.PublicKey().Type() == ssh.KeyAlgoRSA {
		// Never sign with SHA-1 (ssh-rsa); only rsa-sha2-512 and -256.
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errorf("host key %s: RSA key cannot sign with SHA-2", path)
		}
		return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
	}
	return s, nil
}
