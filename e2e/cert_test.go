package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// certEnv is a serve-mode builder that trusts a CA made with ssh-keygen,
// "ci", whose principals ci-build (role build) and ci-cache (role
// substitute) log in; the client logs in with certificates ssh-keygen -s
// signs, through the real OpenSSH client and the real Nix.
type certEnv struct {
	b       *builder
	dir     string // the CAs' keys, the client keys and their certificates
	revoked string // the CA's revoked file
}

func newCertEnv(t *testing.T) *certEnv {
	t.Helper()
	return newCertEnvIn(t, modeServe)
}

// newCertEnvIn is newCertEnv for mode: in exec mode, nixgate keys
// authorize --ca writes the CA's cert-authority lines into the build
// account's authorized_keys, and sshd checks the certificates first.
func newCertEnvIn(t *testing.T, mode string) *certEnv {
	t.Helper()
	b := newBuilder(t, mode)
	e := &certEnv{b: b, dir: filepath.Join(b.root, "client", "certs"), revoked: filepath.Join(b.root, "etc", "ci.revoked")}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ca := range []string{"ca", "other-ca"} {
		mustRun(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", ca, "-f", filepath.Join(e.dir, ca))
	}
	writeFile(t, e.revoked, "", 0o644)
	doc := readFile(t, b.config) + fmt.Sprintf(`
[[cas]]
name = "ci"
key = %q
revoked = %q

[[cas.principals]]
name = "ci-build"
role = "build"

[[cas.principals]]
name = "ci-cache"
role = "substitute"
`, filepath.Join(e.dir, "ca.pub"), e.revoked)
	writeFile(t, b.config, doc, 0o644)
	if mode == modeServe {
		b.waitReload(t)
		return e
	}
	ak := filepath.Join(b.account.home, ".ssh", "authorized_keys")
	r := mustRun(t, nil, nixgateBin, "keys", "authorize", "--config", b.config, "--ca", "ci", "--exec", ak)
	if !strings.Contains(r.stdout, "certificates of CA ci for principal ci-build: cert-authority line in "+ak) {
		t.Fatalf("keys authorize --ca: %s", r)
	}
	return e
}

// issue makes a client key pair named name and a certificate of it that
// ssh-keygen -s signs with the CA's key ca ("ca" or "other-ca") and the
// options opts (-I, -n, -V, -z, -O, -h), and adds the ssh host alias
// b.Host(name), which logs in with that certificate.
func (e *certEnv) issue(t *testing.T, name, ca string, opts ...string) string {
	t.Helper()
	key := newClientKey(t, e.dir, name)
	writeFile(t, key.path+".pub", key.publicKey+" "+name+"\n", 0o644)
	argv := append(append([]string{"ssh-keygen", "-q", "-s", filepath.Join(e.dir, ca)}, opts...), key.path+".pub")
	mustRun(t, nil, argv...)
	f, err := os.OpenFile(e.b.sshConfig, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, `Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  CertificateFile %s
  IdentitiesOnly yes
  HostKeyAlias nixgate-e2e-builder
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
  ControlMaster no

`, e.b.Host(name), e.b.port, e.b.account.name, key.path, key.path+"-cert.pub", filepath.Join(e.b.root, "client", "known_hosts"))
	return name
}

// certOf returns the certificate issue made for name.
func (e *certEnv) certOf(t *testing.T, name string) *ssh.Certificate {
	t.Helper()
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(readFile(t, filepath.Join(e.dir, name+"-cert.pub"))))
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s-cert.pub is no certificate", name)
	}
	return cert
}

// signerOf returns the private key issue made for name.
func (e *certEnv) signerOf(t *testing.T, name string) ssh.Signer {
	t.Helper()
	s, err := ssh.ParsePrivateKey([]byte(readFile(t, filepath.Join(e.dir, name))))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused checks that the certificate of name is refused at
// authentication, as any key is (the client can be told no more), and
// that the log says why in one record.
func (e *certEnv) refused(t *testing.T, name, reason string) map[string]any {
	t.Helper()
	r := e.b.ssh(t, name, "nix-store --serve --write", nil)
	if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "Permission denied (publickey)") {
		t.Fatalf("the certificate of %s was not refused at authentication: %s", name, r)
	}
	return waitLog(t, e.b, "certificate refused", map[string]string{"reason": reason})
}

// TestCertServe drives real ssh-keygen certificates through the real
// OpenSSH client and the real Nix to nixgate serve: the valid ones work
// with their principal's role, each kind of bad one is refused with its
// reason logged, and revocation takes effect without a restart.
func TestCertServe(t *testing.T) {
	e := newCertEnv(t)
	b := e.b
	pid := b.serve.Process.Pid
	e.issue(t, "cert-build", "ca", "-I", "ci-repo-x-run-1", "-n", "ci-build", "-V", "-5m:+15m", "-z", "11")

	t.Run("valid build certificate", func(t *testing.T) {
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			url := scheme + "://" + b.Host("cert-build")
			if r := b.mustNix(t, "nix", "store", "ping", "--store", url); !strings.Contains(r.stderr, "Store URL: "+url) {
				t.Errorf("nix store ping %s: %s", scheme, r)
			}
			content := "copied with a certificate over " + scheme + "\n"
			p := b.addPath(t, "cert-"+scheme, content)
			b.mustNix(t, "nix", "copy", "--to", url, p)
			if got := readStore(t, b.storeDir, p); got != content {
				t.Fatalf("builder store has %q", got)
			}
			rec := auditRecord(t, b, "ci-build", "imported", p)
			if rec == nil {
				t.Fatalf("no session record of ci-build imports %s", p)
			}
			certRecordNames(t, e, rec, "ci-build", "ci-repo-x-run-1", "11")
		}
	})

	t.Run("usage counted by principal", func(t *testing.T) {
		// A session is counted as it ends, which may be after its
		// client has gone: wait for the four, bounded.
		deadline := time.Now().Add(logWait)
		for {
			r := mustRun(t, nil, nixgateBin, "usage", "--json", "--since", "1h", "--config", b.config)
			var rep usageReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("nixgate usage --json: %v\n%s", err, r.stdout)
			}
			u := rep.Keys["ci-build"]
			if u.Sessions >= 4 && u.PathsImported >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("usage of ci-build = %+v; want the 4 sessions and 2 paths above\n%s", u, r.stdout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("force-command of Nix's", func(t *testing.T) {
		// The certificate's command runs, read-only here, whatever the
		// client sends.
		e.issue(t, "cert-forced", "ca", "-I", "forced", "-n", "ci-build", "-V", "-5m:+15m", "-O", "force-command=nix-store --serve")
		url := "ssh://" + b.Host("cert-forced")
		b.mustNix(t, "nix", "store", "ping", "--store", url)
		q := b.addPath(t, "from-cert-forced", "must not reach the builder\n")
		if r := b.nix(t, "nix", "copy", "--to", url, q); r.code == 0 || inStore(b.storeDir, q) {
			t.Fatalf("copy --to through a read-only force-command: %s", r)
		}
		rec := waitLog(t, b, "allowed", map[string]string{"cert_key_id": "forced", "client_command": "nix-store --serve --write"})
		if rec["command"] != "nix-store --serve" || strings.Contains(fmt.Sprint(rec["argv"]), "--write") {
			t.Errorf("the forced session ran %v (argv %v); want nix-store --serve", rec["command"], rec["argv"])
		}
	})

	t.Run("substitute principal cannot write", func(t *testing.T) {
		e.issue(t, "cert-cache", "ca", "-I", "cache-1", "-n", "ci-cache", "-V", "-5m:+15m")
		url := "ssh://" + b.Host("cert-cache")
		b.mustNix(t, "nix", "store", "ping", "--store", url)
		q := b.addPath(t, "from-cert-cache", "must not reach the builder\n")
		r := b.nix(t, "nix", "copy", "--to", url, q)
		if r.code == 0 || inStore(b.storeDir, q) {
			t.Fatalf("copy --to with the substitute principal's certificate: %s", r)
		}
		if !strings.Contains(r.stderr, `nixgate: key "ci-cache" (role substitute) is read-only:`) {
			t.Errorf("copy --to refusal is not nixgate's line: %s", r)
		}
	})

	refusals := []struct {
		name   string
		ca     string
		opts   []string
		reason string
	}{
		{"expired", "ca", []string{"-n", "ci-build", "-V", "20200101:20200102"}, "cert has expired"},
		{"not yet valid", "ca", []string{"-n", "ci-build", "-V", "+1h:+2h"}, "cert is not yet valid"},
		{"wrong principal", "ca", []string{"-n", "someone-else", "-V", "-5m:+15m"}, `none of the certificate's principals ["someone-else"] is mapped by CA "ci"`},
		{"unknown CA", "other-ca", []string{"-n", "ci-build", "-V", "-5m:+15m"}, "certificate signed by an unknown CA SHA256:"},
		{"source-address mismatch", "ca", []string{"-n", "ci-build", "-V", "-5m:+15m", "-O", "source-address=10.9.9.9/32"}, `the client address 127.0.0.1 is not in the certificate's source-address "10.9.9.9/32"`},
		{"force-command other than Nix's", "ca", []string{"-n", "ci-build", "-V", "-5m:+15m", "-O", "force-command=/bin/sh -c id"}, `the certificate's force-command "/bin/sh -c id" is not allowed for principal "ci-build"`},
	}
	for i, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("cert-bad-%d", i)
			e.issue(t, name, tt.ca, append([]string{"-I", name}, tt.opts...)...)
			rec := e.refused(t, name, tt.reason)
			if rec["cert_key_id"] != name {
				t.Errorf("the refusal record does not name the certificate: %v", rec)
			}
		})
	}

	t.Run("host certificate", func(t *testing.T) {
		// OpenSSH's client offers no host certificate as a user's;
		// x/crypto's offers what it is given.
		e.issue(t, "cert-host", "ca", "-h", "-I", "cert-host", "-n", "ci-build", "-V", "-5m:+15m")
		cert := e.certOf(t, "cert-host")
		if cert.CertType != ssh.HostCert {
			t.Fatalf("ssh-keygen -h made a certificate of type %d", cert.CertType)
		}
		signer, err := ssh.NewCertSigner(cert, e.signerOf(t, "cert-host"))
		if err != nil {
			t.Fatal(err)
		}
		if c, err := dialKey(b, signer); err == nil {
			c.Close()
			t.Fatal("logged in with a host certificate")
		}
		waitLog(t, b, "certificate refused", map[string]string{"reason": "a host certificate presented as a user certificate", "cert_key_id": "cert-host"})
		// The control: the same client with a user certificate.
		e.issue(t, "cert-user", "ca", "-I", "cert-user", "-n", "ci-build", "-V", "-5m:+15m")
		user, err := ssh.NewCertSigner(e.certOf(t, "cert-user"), e.signerOf(t, "cert-user"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialKey(b, user)
		if err != nil {
			t.Fatalf("a user certificate through the same client: %v", err)
		}
		c.Close()
	})

	t.Run("revoked without a restart", func(t *testing.T) {
		e.issue(t, "cert-serial", "ca", "-I", "run-serial", "-n", "ci-build", "-V", "-5m:+15m", "-z", "21")
		e.issue(t, "cert-id", "ca", "-I", "run-by-id", "-n", "ci-build", "-V", "-5m:+15m", "-z", "22")
		for _, name := range []string{"cert-serial", "cert-id"} {
			b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host(name))
		}
		// By serial, in the plain list, with nixgate keys revoke.
		r := mustRun(t, nil, nixgateBin, "keys", "revoke", "--config", b.config, "--ca", "ci", "--serial", "21")
		if !strings.Contains(r.stdout, "revoked serial:21 of CA ci") {
			t.Errorf("keys revoke: %s", r)
		}
		e.refused(t, "cert-serial", "certificate revoked: serial 21 is revoked ("+e.revoked+":1)")
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("cert-id"))
		// By key ID, in an OpenSSH KRL that replaces the list.
		spec := filepath.Join(e.dir, "krl-spec")
		writeFile(t, spec, "serial: 21\nid: run-by-id\n", 0o644)
		mustRun(t, nil, "ssh-keygen", "-k", "-f", e.revoked, "-s", filepath.Join(e.dir, "ca.pub"), spec)
		e.refused(t, "cert-id", `certificate revoked: key ID "run-by-id" is revoked (`+e.revoked+")")
		e.refused(t, "cert-serial", "certificate revoked: serial 21 is revoked ("+e.revoked+")")
		// The control: an unrevoked certificate still works, and it is
		// the same nixgate serve.
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("cert-build"))
		if b.serve.Process.Pid != pid || b.serve.ProcessState != nil {
			t.Fatal("nixgate serve was restarted")
		}
	})

	t.Run("certificate for another key", func(t *testing.T) {
		// OpenSSH's client will not sign with a key the certificate
		// does not certify; x/crypto's will.
		cert := e.certOf(t, "cert-build")
		other := signerFor(t, b, "build") // a key of the builder's own, not the certified one
		before := len(logRecords(t, b.log))
		_, err := dialKey(b, anotherKeySigner{cert: cert, signer: other})
		if err == nil {
			t.Fatal("logged in with a certificate whose key the client does not hold")
		}
		for _, r := range logRecords(t, b.log)[before:] {
			if r["msg"] == "authenticated" {
				t.Fatalf("authenticated: %v", r)
			}
		}
		// The control: the same certificate with its own key.
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("cert-build"))
	})
	b.mustStillServe(t)
}

// anotherKeySigner offers a certificate and signs with a key other than
// the one it certifies.
type anotherKeySigner struct {
	cert   *ssh.Certificate
	signer ssh.Signer
}

func (a anotherKeySigner) PublicKey() ssh.PublicKey { return a.cert }

func (a anotherKeySigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return a.signer.Sign(r, data)
}

// TestCertExec: the same certificates behind OpenSSH's sshd, with the
// cert-authority lines nixgate keys authorize --ca writes. sshd checks
// the CA, the principal, the validity and the source-address, and logs
// its refusals; nixgate exec checks the certificate sshd accepted
// against the CA's revoked file, and names it in its records.
func TestCertExec(t *testing.T) {
	e := newCertEnvIn(t, modeExec)
	b := e.b
	e.issue(t, "cert-build", "ca", "-I", "exec-run-1", "-n", "ci-build", "-V", "-5m:+15m", "-z", "31")

	t.Run("valid build certificate", func(t *testing.T) {
		url := "ssh-ng://" + b.Host("cert-build")
		content := "copied with a certificate through sshd\n"
		p := b.addPath(t, "cert-exec", content)
		b.mustNix(t, "nix", "copy", "--to", url, p)
		if got := readStore(t, b.storeDir, p); got != content {
			t.Fatalf("builder store has %q", got)
		}
		rec := auditRecord(t, b, "ci-build", "imported", p)
		if rec == nil {
			t.Fatalf("no session record of ci-build imports %s", p)
		}
		certRecordNames(t, e, rec, "ci-build", "exec-run-1", "31")
	})

	t.Run("substitute principal cannot write", func(t *testing.T) {
		e.issue(t, "cert-cache", "ca", "-I", "exec-cache-1", "-n", "ci-cache", "-V", "-5m:+15m")
		url := "ssh://" + b.Host("cert-cache")
		b.mustNix(t, "nix", "store", "ping", "--store", url)
		q := b.addPath(t, "from-cert-cache-exec", "must not reach the builder\n")
		if r := b.nix(t, "nix", "copy", "--to", url, q); r.code == 0 || inStore(b.storeDir, q) || !strings.Contains(r.stderr, `nixgate: key "ci-cache" (role substitute) is read-only:`) {
			t.Fatalf("copy --to with the substitute principal's certificate: %s", r)
		}
	})

	// sshd refuses these before nixgate runs, and says why in its log.
	for i, tt := range []struct {
		name   string
		ca     string
		opts   []string
		sshdIs string
	}{
		{"expired", "ca", []string{"-n", "ci-build", "-V", "20200101:20200102"}, "Certificate invalid: expired"},
		{"not yet valid", "ca", []string{"-n", "ci-build", "-V", "+1h:+2h"}, "Certificate invalid: not yet valid"},
		{"wrong principal", "ca", []string{"-n", "someone-else", "-V", "-5m:+15m"}, "Certificate does not contain an authorized principal"},
		{"unknown CA", "other-ca", []string{"-n", "ci-build", "-V", "-5m:+15m"}, ""},
		{"source-address mismatch", "ca", []string{"-n", "ci-build", "-V", "-5m:+15m", "-O", "source-address=10.9.9.9/32"}, "not from a permitted source address (127.0.0.1)"},
		{"force-command other than Nix's", "ca", []string{"-n", "ci-build", "-V", "-5m:+15m", "-O", "force-command=/bin/sh -c id"}, "forced command options do not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("cert-exec-bad-%d", i)
			e.issue(t, name, tt.ca, append([]string{"-I", name}, tt.opts...)...)
			r := b.ssh(t, name, "nix-store --serve --write", nil)
			if r.code == 0 || r.stdout != "" {
				t.Fatalf("the certificate of %s was not refused: %s", name, r)
			}
			// sshd's record of the refusal names the certificate; its
			// reason comes on lines before it.
			failed := "ssh2: ED25519-CERT "
			deadline := time.Now().Add(logWait)
			for {
				log := readFile(t, b.sshdLog)
				i := strings.Index(log, " ID "+name+" (serial ")
				if i >= 0 && strings.Contains(log[strings.LastIndex(log[:i], "\n")+1:i], "Failed publickey") && strings.Contains(log[:i], failed) && strings.Contains(log[:i], tt.sshdIs) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sshd's log has no refusal of %s saying %q:\n%s", name, tt.sshdIs, log)
				}
				time.Sleep(logPoll)
			}
		})
	}

	t.Run("host certificate and certificate for another key", func(t *testing.T) {
		// The x/crypto client, which sends what OpenSSH's will not.
		e.issue(t, "cert-exec-host", "ca", "-h", "-I", "cert-exec-host", "-n", "ci-build", "-V", "-5m:+15m")
		host, err := ssh.NewCertSigner(e.certOf(t, "cert-exec-host"), e.signerOf(t, "cert-exec-host"))
		if err != nil {
			t.Fatal(err)
		}
		for name, signer := range map[string]ssh.Signer{
			"host certificate":         host,
			"certificate of other key": anotherKeySigner{cert: e.certOf(t, "cert-build"), signer: signerFor(t, b, "build")},
		} {
			if c, err := dialKey(b, signer); err == nil {
				c.Close()
				t.Errorf("%s: logged in", name)
			}
		}
		// The control: the client and certificate with its own key.
		user, err := ssh.NewCertSigner(e.certOf(t, "cert-build"), e.signerOf(t, "cert-build"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dialKey(b, user)
		if err != nil {
			t.Fatalf("the valid certificate through the same client: %v", err)
		}
		c.Close()
	})

	t.Run("check", func(t *testing.T) {
		// Only the cert-authority lines keys authorize --ca wrote (the
		// builder's file has deliberately plain lines too).
		ak := filepath.Join(b.account.home, ".ssh", "authorized_keys")
		var lines []string
		for _, l := range strings.Split(readFile(t, ak), "\n") {
			if strings.HasPrefix(l, "cert-authority,") {
				lines = append(lines, l)
			}
		}
		only := filepath.Join(b.root, "authorized_keys.cas")
		writeFile(t, only, strings.Join(lines, "\n")+"\n", 0o644)
		sshdConfig := filepath.Join(b.root, "sshd", "sshd_config")
		rs, code := runCheck(t, "--config", b.config, "--mode", "exec", "--authorized-keys", only, "--sshd-config", sshdConfig)
		noFailures(t, rs, code)
		finding(t, rs, "sshd", "ok", "sshd sets SSH_USER_AUTH itself (ExposeAuthInfo yes)", "")
		// The control: a client allowed to send SSH_USER_AUTH could name
		// another certificate's file.
		open := filepath.Join(b.root, "sshd_config.acceptenv")
		writeFile(t, open, readFile(t, sshdConfig)+"AcceptEnv SSH_*\n", 0o644)
		rs, code = runCheck(t, "--config", b.config, "--mode", "exec", "--authorized-keys", only, "--sshd-config", open)
		finding(t, rs, "sshd", "fail", `sshd's AcceptEnv "SSH_*" lets a client send SSH_USER_AUTH`, "narrow AcceptEnv")
		if code != 1 {
			t.Errorf("check with AcceptEnv SSH_*: exit %d; want 1", code)
		}
		finding(t, rs, "authorized_keys", "ok", "2 key(s) in "+only+", each restricted to nixgate exec", "")
		finding(t, rs, "files", "ok", "CA ci's revoked file "+e.revoked+" cannot be changed by "+b.account.name, "")
		finding(t, rs, "files", "ok", "CA ci's key file "+filepath.Join(e.dir, "ca.pub")+" cannot be changed by "+b.account.name, "")
	})

	t.Run("revoked by nixgate's revoked file", func(t *testing.T) {
		e.issue(t, "cert-exec-serial", "ca", "-I", "exec-serial", "-n", "ci-build", "-V", "-5m:+15m", "-z", "41")
		e.issue(t, "cert-exec-id", "ca", "-I", "exec-by-id", "-n", "ci-build", "-V", "-5m:+15m", "-z", "42")
		for _, name := range []string{"cert-exec-serial", "cert-exec-id"} {
			b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host(name))
		}
		mustRun(t, nil, nixgateBin, "keys", "revoke", "--config", b.config, "--ca", "ci", "--serial", "41")
		checkCertRevoked(t, b, "cert-exec-serial", "certificate revoked: serial 41 is revoked ("+e.revoked+":1)")
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("cert-exec-id"))
		spec := filepath.Join(e.dir, "krl-spec-exec")
		writeFile(t, spec, "id: exec-by-id\n", 0o644)
		mustRun(t, nil, "ssh-keygen", "-k", "-f", e.revoked, "-s", filepath.Join(e.dir, "ca.pub"), spec)
		checkCertRevoked(t, b, "cert-exec-id", `certificate revoked: key ID "exec-by-id" is revoked (`+e.revoked+")")
		// The control.
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("cert-build"))
	})
}

// checkCertRevoked checks that sshd let the certificate of name in and
// nixgate exec refused it, with one line for the client and the reason
// in its log.
func checkCertRevoked(t *testing.T, b *builder, name, detail string) {
	t.Helper()
	r := b.ssh(t, name, "nix-store --serve --write", nil)
	if r.code == 0 || r.stdout != "" || strings.TrimSpace(r.stderr) != "nixgate: refused: the certificate is not accepted here" {
		t.Fatalf("the revoked certificate of %s: %s", name, r)
	}
	waitLog(t, b, "refused", map[string]string{"detail": detail})
}

// certRecordNames checks that a session record names the certificate
// that logged in: its principal, key ID, serial, and e's CA by name and
// fingerprint (as ssh-keygen -l prints it).
func certRecordNames(t *testing.T, e *certEnv, rec map[string]any, principal, keyID, serial string) {
	t.Helper()
	caFP := strings.Fields(mustRun(t, nil, "ssh-keygen", "-l", "-f", filepath.Join(e.dir, "ca.pub")).stdout)[1]
	for k, want := range map[string]string{"principal": principal, "cert_key_id": keyID, "cert_serial": serial, "ca": "ci", "ca_fingerprint": caFP} {
		if fmt.Sprint(rec[k]) != want {
			t.Errorf("session record %s = %v; want %s (%v)", k, rec[k], want, rec)
		}
	}
}
