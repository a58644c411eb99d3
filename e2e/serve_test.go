package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestServeAuthRefusals(t *testing.T) {
	b := newBuilder(t, modeServe)
	stranger := newClientKey(t, filepath.Join(b.root, "client", "keys"), "stranger")
	tests := []struct {
		name   string
		key    string
		opts   []string
		reason string
	}{
		{"expired key", "old", nil, `key "old" expired on 2020-01-01`},
		{"from mismatch", "lan", nil, `key "lan" may not connect from 127.0.0.1`},
		{"unknown key", "build", []string{"-o", "IdentityFile=" + stranger.path}, "is not configured"},
		{"key only in authorized_keys", "ghost", nil, "is not configured"},
		{"wrong user name", "build", []string{"-l", "root"}, `user "root" is not the build user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if tt.name == "unknown key" {
				// IdentityFile adds to the host's; use only the stranger.
				opts = append([]string{"-o", "IdentitiesOnly=yes", "-i", stranger.path, "-F", "/dev/null",
					"-o", "UserKnownHostsFile=" + filepath.Join(b.root, "client", "known_hosts"), "-o", "HostKeyAlias=nixgate-e2e-builder",
					"-o", "BatchMode=yes", "-p", fmt.Sprint(b.port), "-l", b.account.name}, opts[2:]...)
				r := run(t, nil, nil, append(append([]string{"ssh"}, opts...), "127.0.0.1", "--", "nix-store --serve --write")...)
				checkAuthRefused(t, b, r, tt.reason)
				return
			}
			r := b.sshWith(t, tt.key, opts, "nix-store --serve --write", nil)
			checkAuthRefused(t, b, r, tt.reason)
		})
	}
	t.Run("password attempt", func(t *testing.T) {
		r := b.sshWith(t, "build", []string{"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"}, "nix-store --serve --write", nil)
		if r.code != 255 || !strings.Contains(r.stderr, "Permission denied (publickey)") {
			t.Fatalf("password attempt: %s", r)
		}
	})
	b.mustStillServe(t)
}

func checkAuthRefused(t *testing.T, b *builder, r result, reason string) {
	t.Helper()
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Fatalf("not refused at authentication: %s", r)
	}
	waitLog(t, b, "public key refused", map[string]string{"reason": reason})
}

// TestServeForbiddenRequests drives the real OpenSSH client through every
// kind of request nixgate does not serve.
func TestServeForbiddenRequests(t *testing.T) {
	b := newBuilder(t, modeServe)
	t.Run("ssh from a terminal", func(t *testing.T) {
		// script(1) gives ssh a terminal, as a person typing has; ssh then
		// asks for a PTY and a shell.
		line := fmt.Sprintf("ssh -F %s %s", b.sshConfig, b.Host("build"))
		r := run(t, nil, nil, "script", "-qec", line, "/dev/null")
		if r.code == 0 || !strings.Contains(r.stdout, "nixgate: refused: no terminal here") || !strings.Contains(r.stdout, "nixgate: this account only serves Nix, there is no shell") {
			t.Fatalf("ssh from a terminal: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"request": "pty-req"})
		waitLog(t, b, "refused", map[string]string{"reason": "there is no shell"})
	})
	t.Run("ssh -t", func(t *testing.T) {
		// With -t, OpenSSH 9.2 gives up as soon as the PTY is refused, and
		// may exit before printing nixgate's line: its own must do.
		line := fmt.Sprintf("ssh -F %s -t %s", b.sshConfig, b.Host("build"))
		r := run(t, nil, nil, "script", "-qec", line, "/dev/null")
		if r.code == 0 || !strings.Contains(r.stdout, "PTY allocation request failed") {
			t.Fatalf("ssh -t: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"request": "pty-req"})
	})
	t.Run("ssh -s sftp", func(t *testing.T) {
		r := b.sshWith(t, "build", []string{"-s"}, "sftp", nil)
		if r.code == 0 || !strings.Contains(r.stderr, `nixgate: refused: subsystem "sftp" is not offered`) {
			t.Fatalf("ssh -s sftp: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"request": "subsystem"})
	})
	t.Run("ssh -W", func(t *testing.T) {
		r := b.sshWith(t, "build", []string{"-W", "127.0.0.1:9"}, "", nil)
		if r.code == 0 || !strings.Contains(r.stderr, "stdio forwarding failed") {
			t.Fatalf("ssh -W: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"channel": "direct-tcpip"})
	})
	t.Run("ssh -R", func(t *testing.T) {
		r := b.sshWith(t, "build", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9"}, "", nil)
		if r.code == 0 || !strings.Contains(r.stderr, "forwarding failed") {
			t.Fatalf("ssh -R: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"global_request": "tcpip-forward"})
	})
	t.Run("ssh -N -L", func(t *testing.T) {
		port := freePort(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", "-F", b.sshConfig, "-N", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:9", port), b.Host("build"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		waitPort(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 {
			t.Fatal("data came through a forwarded port")
		}
		waitLog(t, b, "refused", map[string]string{"channel": "direct-tcpip"})
	})
	t.Run("ssh -A", func(t *testing.T) {
		sock := filepath.Join(b.root, "agent.sock")
		agent := exec.Command("ssh-agent", "-D", "-a", sock)
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { agent.Process.Kill(); agent.Wait() }()
		waitSocket(t, sock)
		r := run(t, []string{"SSH_AUTH_SOCK=" + sock}, serveHello, "ssh", "-F", b.sshConfig, "-A", b.Host("build"), "--", "nix-store --serve --write")
		if !strings.Contains(r.stderr, "nixgate: refused: agent forwarding is not offered") {
			t.Fatalf("ssh -A: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"request": "auth-agent-req@openssh.com"})
	})
	t.Run("ssh -X", func(t *testing.T) {
		r := run(t, []string{"DISPLAY=127.0.0.1:99"}, serveHello, "ssh", "-F", b.sshConfig, "-X", b.Host("build"), "--", "nix-store --serve --write")
		if !strings.Contains(r.stderr, "nixgate: refused: X11 forwarding is not offered") {
			t.Fatalf("ssh -X: %s", r)
		}
		waitLog(t, b, "refused", map[string]string{"request": "x11-req"})
	})
	t.Run("SetEnv LD_PRELOAD", func(t *testing.T) {
		reply, r := b.greetWith(t, "build", []string{"-o", "SetEnv=LD_PRELOAD=/nonexistent/evil.so"}, "nix-store --serve --write", serveHello, len(serveReply))
		if !bytes.Equal(reply, serveReply) || strings.Contains(r.stderr, "ld.so") || strings.Contains(r.stderr, "evil.so") {
			t.Fatalf("with SetEnv LD_PRELOAD: %s", r)
		}
		waitLog(t, b, "env request ignored", map[string]string{"name": "LD_PRELOAD"})
	})
	b.mustStillServe(t)
}

// TestServeIdentityFromVerifiedKey is the regression test for the class
// of CVE-2024-45337: a client offers the build key (which the server
// accepts as a candidate) but proves only the substitute key. It must be
// the substitute key's owner, and nothing more.
func TestServeIdentityFromVerifiedKey(t *testing.T) {
	b := newBuilder(t, modeServe)
	offered, proved := signerFor(t, b, "build"), signerFor(t, b, "substitute")
	var buildOffered bool
	cfg := &ssh.ClientConfig{
		User:            b.account.name,
		AuthCallback:    offerThenProve(offered, proved, &buildOffered),
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	conn, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), cfg)
	if err != nil {
		data, _ := os.ReadFile(b.log)
		t.Fatalf("%v\n%s", err, data)
	}
	defer conn.Close()
	sess, err := conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// A build key may import; the substitute key's session is refused
	// the import, so the session is the substitute key's.
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	nar := narOf("x")
	sess.Stdin = bytes.NewReader(slices.Concat(u64s(0x390c9deb, 0x207),
		(&wopEnc{}).u64(9).str("/nix/store/00000000000000000000000000000000-x", "", "0000").strs().u64(0, uint64(len(nar)), 0).strs().str("").b, nar))
	err = sess.Run("nix-store --serve --write")
	if err == nil || !strings.Contains(stderr.String(), `key "substitute" (role substitute) is read-only: AddToStoreNar refused`) {
		t.Fatalf("offered build key, proved substitute key: err %v, stderr %q", err, stderr.String())
	}
	waitLog(t, b, "authenticated", map[string]string{"key": "substitute"})
	if !buildOffered {
		t.Fatal("the server never accepted the offered build key, so the test proved nothing")
	}

	// Offering a key and proving one that is not configured gets nowhere.
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	strangerSigner, _ := ssh.NewSignerFromKey(stranger)
	cfg.AuthCallback = offerThenProve(offered, strangerSigner, new(bool))
	if c, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), cfg); err == nil {
		c.Close()
		t.Fatal("offering the build key and proving an unknown key logged in")
	}
}

// TestServeRawCommands sends through a raw x/crypto client what OpenSSH
// cannot carry: the NUL byte case of the table, and a huge command.
func TestServeRawCommands(t *testing.T) {
	b := newBuilder(t, modeServe)
	signer := signerFor(t, b, "build")
	conn, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), &ssh.ClientConfig{
		User: b.account.name, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for cmd, reason := range map[string]string{
		"nix-store --serve --write\x00id":                       "NUL byte",
		"nix-store --serve --write " + strings.Repeat("a", 1e5): "limit",
	} {
		sess, err := conn.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		sess.Stdout, sess.Stderr = &stdout, &stderr
		err = sess.Run(cmd)
		var exitErr *ssh.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), reason) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%.40q: err %v, stdout %q, stderr %q", cmd, err, stdout.String(), stderr.String())
		}
	}
}
