package e2e

// Harness: the client side of a builder. Client keys, the Nix client and
// the OpenSSH client through the builder's ssh configuration,
// golang.org/x/crypto/ssh for what OpenSSH cannot send, the protocols'
// greetings, store paths and derivations to copy and build, and what
// every refusal must look like. The raw worker-protocol client is in
// builder_rawclient_test.go.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// clientKey is a client key pair on disk.
type clientKey struct {
	path      string // private key, 0600
	publicKey string // OpenSSH authorized_keys form, without comment
}

// newClientKey writes a new ed25519 key pair named name into dir.
func newClientKey(t testing.TB, dir, name string) clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, string(pem.EncodeToMemory(block)), 0o600)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{path: path, publicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}
}

// nix runs a Nix client program with the client environment.
func (b *builder) nix(t testing.TB, argv ...string) result {
	t.Helper()
	return run(t, b.clientEnv, nil, argv...)
}

// mustNix is nix that fails the test on a non-zero exit.
func (b *builder) mustNix(t testing.TB, argv ...string) result {
	t.Helper()
	r := b.nix(t, argv...)
	if r.code != 0 {
		t.Fatalf("%q failed: %s", argv, r)
	}
	return r
}

// startNix starts a Nix client command in its own process group without
// waiting for it.
func (b *builder) startNix(t testing.TB, argv ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), b.clientEnv...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd, &out
}

// ssh runs the OpenSSH client against the alias for key, with the
// command string sent as it is and stdin as input.
func (b *builder) ssh(t testing.TB, key, command string, stdin []byte) result {
	t.Helper()
	argv := []string{"ssh", "-F", b.sshConfig, b.Host(key)}
	if command != "" {
		argv = append(argv, "--", command)
	}
	return run(t, nil, stdin, argv...)
}

// sshWith runs the OpenSSH client for key with extra options before the
// host and the command after it.
func (b *builder) sshWith(t testing.TB, key string, opts []string, command string, stdin []byte) result {
	t.Helper()
	argv := append([]string{"ssh", "-F", b.sshConfig}, opts...)
	argv = append(argv, b.Host(key))
	if command != "" {
		argv = append(argv, "--", command)
	}
	return run(t, nil, stdin, argv...)
}

// greet runs command through ssh with the key, writes hello, and returns
// the first len(want) bytes the remote side answers, keeping stdin open
// until then: Nix takes a hang-up on stdin as an interrupt, so closing it
// early would race with the answer.
func (b *builder) greet(t testing.TB, key, command string, hello []byte, n int) (reply []byte, r result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	argv := append(append([]string{"-F", b.sshConfig}, b.sshExtra...), b.Host(key), "--", command)
	cmd := exec.CommandContext(ctx, "ssh", argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdin.Write(hello)
	reply = make([]byte, n)
	got, _ := io.ReadFull(stdout, reply)
	reply = reply[:got]
	stdin.Close()
	rest, _ := io.ReadAll(stdout)
	err = cmd.Wait()
	r = result{stdout: string(reply) + string(rest), stderr: stderr.String(), err: err, code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("%q timed out: %s", command, r)
	}
	return reply, r
}

// greetWith is greet with extra ssh options.
func (b *builder) greetWith(t testing.TB, key string, opts []string, command string, hello []byte, n int) ([]byte, result) {
	t.Helper()
	saved := b.sshExtra
	b.sshExtra = opts
	defer func() { b.sshExtra = saved }()
	return b.greet(t, key, command, hello, n)
}

// Protocol greetings: what a client sends first and what the server
// answers with, for nix-store --serve and nix-daemon --stdio.
var (
	serveHello  = u64s(0x390c9deb, 0x207)
	serveReply  = u64s(0x5452eecb)
	daemonHello = u64s(0x6e697863)
	daemonReply = u64s(0x6478696f)
)

// u64s encodes vs as the Nix protocols' little-endian 64-bit words.
func u64s(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// signerFor loads the client key of name.
func signerFor(t testing.TB, bd *builder, name string) ssh.Signer {
	t.Helper()
	data, err := os.ReadFile(bd.keys[name].path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dialKey connects to bd's server (sshd or nixgate serve) as the build
// account with signer, not checking the host key.
func dialKey(bd *builder, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", bd.port), &ssh.ClientConfig{
		User: bd.account.name, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 60 * time.Second,
	})
}

// mustDial connects with the key of name, closing the connection when
// the test ends.
func (b *builder) mustDial(t testing.TB, name string) *ssh.Client {
	t.Helper()
	c, err := dialKey(b, signerFor(t, b, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// greetOnce opens a connection, runs nix-store --serve --write and reads
// its greeting.
func greetOnce(bd *builder, signer ssh.Signer) error {
	c, err := dialKey(bd, signer)
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("nix-store --serve --write"); err != nil {
		return err
	}
	in.Write(serveHello)
	buf := make([]byte, len(serveReply))
	if _, err := io.ReadFull(out, buf); err != nil {
		return err
	}
	if string(buf) != string(serveReply) {
		return fmt.Errorf("bad greeting %x", buf)
	}
	in.Close()
	return nil
}

// burst runs n greetOnce at once and returns how many succeeded and their
// latencies.
func burst(t testing.TB, bd *builder, key string, n int) (int, []float64) {
	signer := signerFor(t, bd, key)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var lat []float64
	var firstErr error
	okN := 0
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			err := greetOnce(bd, signer)
			d := ms(time.Since(t0))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				okN++
				lat = append(lat, d)
			} else if firstErr == nil {
				firstErr = err
			}
		}()
	}
	close(start)
	wg.Wait()
	if firstErr != nil {
		t.Logf("%d of %d sessions failed; the first: %v", n-okN, n, firstErr)
	}
	return okN, lat
}

// offerOnly offers a key (the server accepts it as a candidate) but never
// proves it: it refuses to sign, as an agent refusing confirmation does.
// The x/crypto client asks it to sign only after the server accepted the
// offer, so asked records that the server did.
type offerOnly struct {
	ssh.Signer
	asked *bool
}

// Sign records that the server accepted the offer, and refuses.
func (o offerOnly) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	*o.asked = true
	return nil, errors.New("offer only")
}

// offerThenProve authenticates by offering first and proving second: one
// public key attempt each, in that order.
func offerThenProve(first, second ssh.Signer, accepted *bool) ssh.ClientAuthCallback {
	step := 0
	return func(*ssh.ClientAuthContext) (ssh.AuthMethod, error) {
		step++
		switch step {
		case 1:
			return ssh.PublicKeys(offerOnly{first, accepted}), nil
		case 2:
			return ssh.PublicKeys(second), nil
		}
		return nil, errors.New("no more keys")
	}
}

// mustStillServe checks that a well-behaved client still gets through.
func (b *builder) mustStillServe(t testing.TB) {
	t.Helper()
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
}

// checkRefused asserts what every refusal must look like.
func checkRefused(t *testing.T, b *builder, r result, command, reason string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("%q was not refused: %s", command, r)
	}
	if r.stdout != "" {
		t.Errorf("refusal of %q wrote to stdout: %q", command, r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "nixgate: ") {
		t.Errorf("refusal of %q: stderr is not one nixgate line: %q", command, r.stderr)
	}
	if !strings.Contains(r.stderr, reason) {
		t.Errorf("refusal of %q: stderr %q does not contain %q", command, r.stderr, reason)
	}
	waitCommandLog(t, b, command, "refused")
}

// addPath adds a file with the given content to the client store and
// returns its store path.
func (b *builder) addPath(t testing.TB, name, content string) string {
	t.Helper()
	dir := filepath.Join(b.root, "payload", fmt.Sprint(len(content)), name)
	writeFile(t, filepath.Join(dir, name), content, 0o644)
	r := b.mustNix(t, "nix-store", "--add", filepath.Join(dir, name))
	return strings.TrimSpace(r.stdout)
}

// addBigPath adds a path of size random bytes to the client store.
func (b *builder) addBigPath(t testing.TB, name string, size int) string {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	f := filepath.Join(b.root, "payload", name)
	writeFile(t, f, string(data), 0o644)
	r := b.mustNix(t, "nix-store", "--add", f)
	os.Remove(f)
	return strings.TrimSpace(r.stdout)
}

// inStore reports whether path is valid-looking in the store rooted at
// dir (the file exists there).
func inStore(dir, path string) bool {
	_, err := os.Lstat(filepath.Join(dir, path))
	return err == nil
}

// readStore returns the content of path in the store rooted at dir.
func readStore(t testing.TB, dir, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// writeDerivation writes a derivation that builds in a store of its own
// root (where /bin/sh is not visible) with a copy of busybox, and returns
// its file.
func writeDerivation(t testing.TB, root, nonce string) string {
	t.Helper()
	dir := filepath.Join(root, "drv-"+nonce)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "bb", "bin", "busybox"), string(bb), 0o755)
	expr := fmt.Sprintf(`let bb = builtins.path { path = %s; name = "busybox"; }; in
derivation {
  name = "nixgate-e2e-%s";
  system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "echo built remotely %s > $out" ];
}
`, filepath.Join(dir, "bb"), nonce, nonce)
	file := filepath.Join(dir, "t.nix")
	writeFile(t, file, expr, 0o644)
	return file
}

// writeSlowDerivation writes a derivation whose build sleeps for secs.
func writeSlowDerivation(t testing.TB, root, nonce string, secs int) string {
	t.Helper()
	file := writeDerivation(t, root, nonce)
	expr := readFile(t, file)
	expr = strings.Replace(expr, `"echo built remotely`, fmt.Sprintf(`"${bb}/bin/busybox sleep %d; echo built remotely`, secs), 1)
	writeFile(t, file, expr, 0o644)
	return file
}

// writeTimedDerivation writes a derivation that records in $out when it
// started and ended building, as seconds of /proc/uptime (busybox's date
// has no sub-second format), and sleeps secs seconds in between.
func writeTimedDerivation(t testing.TB, root, nonce string, secs int) string {
	t.Helper()
	file := writeDerivation(t, root, nonce)
	expr := readFile(t, file)
	old := fmt.Sprintf(`"echo built remotely %s > $out"`, nonce)
	if !strings.Contains(expr, old) {
		t.Fatalf("unexpected derivation:\n%s", expr)
	}
	expr = strings.Replace(expr, old, fmt.Sprintf(`"${bb}/bin/busybox cut -d' ' -f1 /proc/uptime > $out; ${bb}/bin/busybox sleep %d; ${bb}/bin/busybox cut -d' ' -f1 /proc/uptime >> $out; echo built remotely %s >> $out"`, secs, nonce), 1)
	writeFile(t, file, expr, 0o644)
	return file
}

// interval reads the start and end a timed derivation recorded.
func interval(t testing.TB, out string) (start, end float64) {
	t.Helper()
	f := strings.Fields(readFile(t, out))
	if len(f) < 2 {
		t.Fatalf("%s: %q; want a start and an end", out, f)
	}
	var err1, err2 error
	start, err1 = strconv.ParseFloat(f[0], 64)
	end, err2 = strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: %q; want two times", out, f)
	}
	return start, end
}
