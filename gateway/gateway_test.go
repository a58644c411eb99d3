package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// These tests drive the gateway with a real x/crypto client over
// loopback, with a stand-in nix-store script whose behaviour the test
// chooses: they test the gateway's own limits and process handling. The
// real Nix through real OpenSSH is in package e2e.

// fakeNixStore is a shell script installed as nix-store; FAKE_MODE in
// the configuration's [nix] env picks what it does. "cat" answers the
// serve protocol's hello (version 2.8), then echoes what it is sent.
const fakeNixStore = `#!/bin/sh
case "$FAKE_MODE" in
exit3) echo out; echo err >&2; exit 3 ;;
term) kill -TERM $$ ;;
sleep) sleep 1000 & echo $! > "$FAKE_DIR/child.pid"; echo $$ > "$FAKE_DIR/self.pid"; echo started; wait ;;
args) echo "$@" ;;
cat) printf '\313\356\122\124\000\000\000\000\010\002\000\000\000\000\000\000'; exec cat ;;
esac
`

type testServer struct {
	srv    *Server
	addr   string
	dir    string
	client gossh.Signer
	logs   *bytes.Buffer
	mu     *sync.Mutex
}

func newTestServer(t testing.TB, mode, extra string) *testServer {
	t.Helper()
	return newTestServerRole(t, mode, policy.RoleBuild, extra)
}

// newTestServerRole is newTestServer with a key of the given role.
func newTestServerRole(t testing.TB, mode string, role policy.Role, extra string) *testServer {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "nix-store"), []byte(fakeNixStore), 0o755); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	client, _ := gossh.NewSignerFromKey(priv)
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	doc := fmt.Sprintf(`user = "builder"
[nix]
bin_dirs = [%q]
store = "local?root=%s/store"
env = { FAKE_MODE = %q, FAKE_DIR = %q }
[[keys]]
name = "ci"
role = %q
public_key = %q
%s
`, bin, dir, mode, dir, role, keys.AuthorizedKey(client.PublicKey()), extra)
	cfg, err := config.Parse("test.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &mu}, nil))
	srv, err := New(Options{Config: cfg, HostSigners: []gossh.Signer{host}, Account: sandbox.Account{Name: "builder", Home: dir}, Logger: log, KillGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &testServer{srv: srv, addr: l.Addr().String(), dir: dir, client: client, logs: &logs, mu: &mu}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (ts *testServer) log() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.logs.String()
}

func (ts *testServer) dial(t *testing.T) *gossh.Client {
	t.Helper()
	return ts.dialAddr(t, ts.addr)
}

// dialAddr is dial through addr, a path to the server.
func (ts *testServer) dialAddr(t *testing.T, addr string) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "builder", Auth: []gossh.AuthMethod{gossh.PublicKeys(ts.client)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func runCmd(t *testing.T, c *gossh.Client, cmd string) (stdout, stderr string, err error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr = &o, &e
	err = s.Run(cmd)
	return o.String(), e.String(), err
}

// eventually polls cond, bounded in count and time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within 5s", what)
}

func TestExitStatusAndOutput(t *testing.T) {
	ts := newTestServer(t, "exit3", "")
	out, errOut, err := runCmd(t, ts.dial(t), "nix-store --serve --write")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 || out != "out\n" || errOut != "err\n" {
		t.Fatalf("got %q %q %v; want out, err, exit 3", out, errOut, err)
	}
	if !strings.Contains(ts.log(), `"msg":"session ended"`) || !strings.Contains(ts.log(), `"exit_status":3`) {
		t.Errorf("no session record with the exit status:\n%s", ts.log())
	}
}

func TestExitSignal(t *testing.T) {
	ts := newTestServer(t, "term", "")
	_, _, err := runCmd(t, ts.dial(t), "nix-store --serve --write")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Fatalf("err = %v; want exit signal TERM", err)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, "pid file "+path, func() bool {
		data, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	})
	return pid
}

func TestProcessGroupKilledWhenClientGoesAway(t *testing.T) {
	ts := newTestServer(t, "sleep", "")
	c := ts.dial(t)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	self, child := readPid(t, filepath.Join(ts.dir, "self.pid")), readPid(t, filepath.Join(ts.dir, "child.pid"))
	c.Close()
	for _, pid := range []int{self, child} {
		eventually(t, fmt.Sprintf("process %d to go away", pid), func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		})
	}
	eventually(t, "the session record", func() bool { return strings.Contains(ts.log(), `"signal":"SIGTERM"`) })
}

func TestMaxSessionsPerKey(t *testing.T) {
	ts := newTestServer(t, "sleep", "max_sessions = 1")
	c := ts.dial(t)
	s, _ := c.NewSession()
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	readPid(t, filepath.Join(ts.dir, "self.pid"))
	_, errOut, err := runCmd(t, ts.dial(t), "nix-store --serve --write")
	if err == nil || !strings.Contains(errOut, `nixgate: refused: key "ci" already has 1 sessions running (max_sessions)`) {
		t.Fatalf("second session: %v %q", err, errOut)
	}
}

func TestMaxSessionsPerConnection(t *testing.T) {
	ts := newTestServer(t, "sleep", "[limits]\nmax_sessions_per_connection = 1")
	c := ts.dial(t)
	s, _ := c.NewSession()
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	readPid(t, filepath.Join(ts.dir, "self.pid"))
	_, errOut, err := runCmd(t, c, "nix-store --serve --write")
	if err == nil || !strings.Contains(errOut, "at most 1 sessions per connection") {
		t.Fatalf("second session on the connection: %v %q", err, errOut)
	}
}

// closedWithin reports whether the server closes conn within d.
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestLoginGraceTime(t *testing.T) {
	ts := newTestServer(t, "cat", "[limits]\nlogin_grace_time = \"300ms\"")
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !closedWithin(conn, 5*time.Second) {
		t.Fatal("a connection that never authenticated was not closed")
	}
	eventually(t, "the log record", func() bool { return strings.Contains(ts.log(), "login grace time exceeded") })
}

func TestMaxStartups(t *testing.T) {
	ts := newTestServer(t, "cat", "[limits]\nmax_startups = 2\nper_source_max_startups = 2")
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		c.Read(make([]byte, 1)) // the server's version line: it is tracked now
	}
	// A third from the same address is over the per-source limit.
	third, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if !closedWithin(third, 5*time.Second) {
		t.Fatal("a third unauthenticated connection from one address was kept")
	}
	if !strings.Contains(ts.log(), "too many unauthenticated connections from this address") {
		t.Errorf("no log record:\n%s", ts.log())
	}
}

func TestMaxStartupsEvictsTheOldest(t *testing.T) {
	ts := newTestServer(t, "cat", "[limits]\nmax_startups = 2\nper_source_max_startups = 8")
	first, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Read(make([]byte, 1))
	second, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.Read(make([]byte, 1))
	// The server is full of idle connections; a real client still gets in,
	// and the oldest idle one goes.
	c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{User: "builder", Auth: []gossh.AuthMethod{gossh.PublicKeys(ts.client)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("a client was locked out by idle connections: %v", err)
	}
	c.Close()
	if !closedWithin(first, 5*time.Second) {
		t.Error("the oldest idle connection was kept")
	}
	if !strings.Contains(ts.log(), "this one waited longest") {
		t.Errorf("no log record:\n%s", ts.log())
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := newTestServer(t, "cat", "[limits]\nidle_timeout = \"300ms\"")
	c := ts.dial(t)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle authenticated connection was not closed")
	}
}

func TestShutdownDrains(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	c := ts.dial(t)
	s, _ := c.NewSession()
	stdin, _ := s.StdinPipe()
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Start("nix-store --serve --write"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the command to start", func() bool { return ts.srv.Running() == 1 })
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- ts.srv.Shutdown(ctx)
	}()
	eventually(t, "the listener to close", func() bool {
		conn, err := net.DialTimeout("tcp", ts.addr, 100*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	// The running session still works, and ends when its client is done:
	// the fake nix-store echoes the hello and a QueryPathInfos.
	request := binary.LittleEndian.AppendUint64(nil, nixproto.ServeMagicClient)
	request = binary.LittleEndian.AppendUint64(request, nixproto.ServeMaxVersion)
	request = binary.LittleEndian.AppendUint64(request, 2) // QueryPathInfos
	request = binary.LittleEndian.AppendUint64(request, 1)
	request = binary.LittleEndian.AppendUint64(request, 56)
	request = append(request, "/nix/store/00000000000000000000000000000000-stillrunning"...)
	stdin.Write(request)
	stdin.Close()
	hello := binary.LittleEndian.AppendUint64(nil, nixproto.ServeMagicServer)
	hello = binary.LittleEndian.AppendUint64(hello, nixproto.ServeMaxVersion)
	if err := s.Wait(); err != nil || !bytes.Equal(out.Bytes(), append(hello, request...)) {
		t.Fatalf("session during shutdown: %v %q", err, out.String())
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

func TestNewFailsClosed(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := gossh.NewSignerFromKey(hostPriv)
	// policy.Parse alone does not parse the public keys.
	unparsed, err := policy.Parse("t.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\npublic_key = \""+keys.AuthorizedKey(host.PublicKey())+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"nil config":          {HostSigners: []gossh.Signer{host}},
		"no host key":         {Config: cfg},
		"no login key":        {Config: cfg, HostSigners: []gossh.Signer{host}},
		"public key unparsed": {Config: unparsed, HostSigners: []gossh.Signer{host}},
	} {
		if _, err := New(o); err == nil || !strings.HasPrefix(err.Error(), "gateway: ") {
			t.Errorf("New(%s) = %v; want a gateway: error", name, err)
		}
	}
}

func TestSourceLimiter(t *testing.T) {
	l := newSourceLimiter()
	a, b := netipMust("192.0.2.1"), netipMust("192.0.2.2")
	allowed := 0
	for i := 0; i < 100; i++ {
		if l.allow(a, 60) {
			allowed++
		}
	}
	// 60 a minute allows a burst of 30, and maybe one more refilled.
	if allowed < 30 || allowed > 31 {
		t.Errorf("a burst of 100 connections at 60/min let %d through; want 30", allowed)
	}
	if !l.allow(b, 60) {
		t.Error("another source was limited too")
	}
	// A reload with a higher rate applies to known sources at once.
	l.allow(a, 6000)
	if lim := l.sources[a]; lim.Limit() != 100 || lim.Burst() != 3000 {
		t.Errorf("after raising the rate to 6000/min: limit %v, burst %d; want 100/s, 3000", lim.Limit(), lim.Burst())
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestPickCiphers(t *testing.T) {
	if got := pickCiphers(true); len(got) != 2 || got[0] != gossh.CipherAES128GCM {
		t.Errorf("with AES hardware: %q", got)
	}
	if got := pickCiphers(false); got[0] != gossh.CipherChaCha20Poly1305 {
		t.Errorf("without AES hardware: %q", got)
	}
}

// TestReloadToNoKeys: revoking the last key takes effect; a broken
// configuration does not.
func TestReloadToNoKeys(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	logsIn := func() bool {
		t.Helper()
		c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{User: "builder", Auth: []gossh.AuthMethod{gossh.PublicKeys(ts.client)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	// Broken: no configuration, and one whose public keys were never
	// parsed (not from config.Load), which would let nobody in.
	unparsed := *ts.srv.Config()
	unparsed.Keys = slices.Clone(unparsed.Keys)
	unparsed.Keys[0].Fingerprint = ""
	for name, broken := range map[string]*policy.Config{"nil": nil, "unparsed public key": &unparsed} {
		if err := ts.srv.Reload(broken); err == nil || !strings.HasPrefix(err.Error(), "gateway: ") {
			t.Errorf("Reload(%s) = %v; want a gateway: error", name, err)
		}
		if ts.srv.Config().Source != "test.toml" || !logsIn() {
			t.Fatalf("after Reload(%s) failed, the configuration in force is %q and the key logs in: %v; want the old one kept", name, ts.srv.Config().Source, logsIn())
		}
	}
	none, err := config.Parse("none.toml", []byte("user = \"builder\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(none); err != nil {
		t.Fatalf("Reload to no login key = %v", err)
	}
	if logsIn() {
		t.Fatal("the revoked key still logs in")
	}
}

// TestShutdownWithIdleConnections is the regression test for a deadlock:
// Shutdown closed idle connections while holding the lock that closing
// a connection takes.
func TestShutdownWithIdleConnections(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Read(make([]byte, 1)) // admitted and tracked
	}
	ts.dial(t) // and an authenticated one without sessions
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown hung")
	}
}

// TestClientStderrDiscarded: what a client sends on its stderr (extended
// data) is read and dropped, so a client can send more than the channel's
// window there without the session holding it (unread, its write would
// block once the 2 MiB window was used up).
func TestClientStderrDiscarded(t *testing.T) {
	ts := newTestServer(t, "cat", "")
	c := ts.dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go gossh.DiscardRequests(reqs)
	defer ch.Close()
	if ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"nix-store --serve --write"})); !ok || err != nil {
		t.Fatalf("exec refused: %v %v", ok, err)
	}
	sent := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for i := 0; i < (8<<20)/len(chunk); i++ {
			if _, err := ch.Stderr().Write(chunk); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("8 MiB sent on the client's stderr did not go through in a minute: the session does not read it, and the window ran out")
	}
}
