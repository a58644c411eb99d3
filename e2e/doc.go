// Package e2e holds the end-to-end tests: real Nix clients, a real OpenSSH
// client and, for exec mode, a real OpenSSH sshd started by the tests on
// 127.0.0.1 with their own configuration, keys, build account and builder
// store. They need root (to create the account and run sshd) and the
// Debian packages nix-bin, openssh-server, openssh-client and
// busybox-static; `make test` installs those.
package e2e
