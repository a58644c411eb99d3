package gateway

import (
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// Only modern algorithms are offered.
var (
	keyExchanges = []string{
		gossh.KeyExchangeMLKEM768X25519,
		gossh.KeyExchangeCurve25519,
		"curve25519-sha256@libssh.org",
	}
	// ciphers are AEAD only. Where the CPU has AES instructions, only
	// AES-GCM is offered: Go runs it several times faster than
	// ChaCha20-Poly1305 (which x/crypto has no amd64 assembly for), and a
	// client that prefers ChaCha20, as OpenSSH's does, would otherwise pick
	// the slow one. nix copy of 256 MiB took 1.0 s instead of 1.4 s.
	ciphers = pickCiphers(hasAESHardware())
	// MACs are only used with ciphers that are not AEAD; none of the
	// offered ciphers needs one, but the list must not be empty.
	macs = []string{
		gossh.HMACSHA256ETM,
		gossh.HMACSHA512ETM,
	}
	publicKeyAuthAlgorithms = []string{
		gossh.KeyAlgoED25519,
		gossh.KeyAlgoSKED25519,
		gossh.KeyAlgoECDSA256,
		gossh.KeyAlgoECDSA384,
		gossh.KeyAlgoECDSA521,
		gossh.KeyAlgoSKECDSA256,
		gossh.KeyAlgoRSASHA512,
		gossh.KeyAlgoRSASHA256,
	}
)

func hasAESHardware() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)
}

func pickCiphers(aesHardware bool) []string {
	if aesHardware {
		return []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}
	}
	return []string{gossh.CipherChaCha20Poly1305, gossh.CipherAES256GCM, gossh.CipherAES128GCM}
}
