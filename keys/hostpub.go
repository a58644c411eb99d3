package keys

import (
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// OpenSSHHostKeys are the public host keys of the machine's OpenSSH sshd,
// which exec mode runs behind.
var OpenSSHHostKeys = []string{
	"/etc/ssh/ssh_host_ed25519_key.pub",
	"/etc/ssh/ssh_host_ecdsa_key.pub",
	"/etc/ssh/ssh_host_rsa_key.pub",
}

// PublicHostKeys returns the public halves of serve mode's host keys —
// the configured private keys (their .pub when readable), or the key
// generated in stateDir — without generating one.
func PublicHostKeys(paths []string, stateDir string) ([]ssh.PublicKey, error) {
	if len(paths) == 0 {
		paths = []string{filepath.Join(stateDir, GeneratedHostKeyName)}
	}
	var out []ssh.PublicKey
	for _, p := range paths {
		if k, err := readPublicKey(p + ".pub"); err == nil {
			out = append(out, k)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, errorf("host key: %w (has nixgate serve run once?)", err)
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, errorf("host key %s: %w", p, err)
		}
		out = append(out, s.PublicKey())
	}
	return out, nil
}

// PublicKeyFiles reads the public keys in files, skipping missing ones;
// it fails when none is found.
func PublicKeyFiles(files []string) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for _, f := range files {
		if k, err := readPublicKey(f); err == nil {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, errorf("no host key found in %v", files)
	}
	return out, nil
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	return k, err
}
