// Package gateway is nixgate's SSH server: a small sshd on
// github.com/gliderlabs/ssh and golang.org/x/crypto/ssh that accepts only
// the configured client keys, the OpenSSH user certificates of the
// configured CAs (package certauth) and the keys a key source answers
// (Options.KeySource), takes the client's identity from the key or
// certificate that completed authentication, decides every exec request through
// package session (policy's decision, and the Nix protocol filter of
// package nixproto), has package sandbox start what is allowed (the Nix
// commands, and a shell-role key's login shell, on a terminal when asked)
// and stops it the same way, and refuses everything else SSH offers
// (subsystems, agent and X11 forwarding, port and socket forwarding;
// shells and terminals but for a shell-role key) with one clear line and
// a log record. It starts no process itself.
//
// Its zero value is not usable; New returns a Server that fails closed.
package gateway
