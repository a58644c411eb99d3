package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialFrom connects to the server from a given loopback address.
func dialFrom(t testing.TB, b *builder, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port))
}

// TestAdversarial attacks nixgate serve in bounded rounds; after each it
// must still serve a well-behaved client, and its goroutines and file
// descriptors must come back down.
func TestAdversarial(t *testing.T) {
	b := newBuilder(t, modeServe)
	cfg := readFile(t, b.config)
	writeFile(t, b.config, strings.Replace(cfg, "[limits]\n", "[limits]\nlogin_grace_time = \"2s\"\n", 1), 0o644)
	b.waitReload(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve log:\n%s", readFile(t, b.log))
		}
	})
	b.mustStillServe(t)
	g0, f0 := b.metric(t, "go_goroutines"), b.openFDs(t)
	heap0 := b.metric(t, "go_memstats_heap_inuse_bytes")

	t.Run("flood of unauthenticated connections", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < 300; i++ {
			c, err := dialFrom(t, b, fmt.Sprintf("127.0.%d.%d", 1+i/200, 2+i%200))
			if err == nil {
				conns = append(conns, c)
				c.Read(make([]byte, 1)) // admitted and tracked
			}
		}
		b.mustStillServe(t) // from 127.0.0.1, while the flood holds its slots
		waitLog(t, b, "connection closed", map[string]string{"reason": "waited longest"})
	})
	t.Run("one source floods", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < 50; i++ {
			if c, err := dialFrom(t, b, "127.0.0.9"); err == nil {
				conns = append(conns, c)
			}
		}
		b.mustStillServe(t)
		waitLog(t, b, "connection refused", map[string]string{"reason": "from this address"})
	})
	t.Run("slow handshakes", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := dialFrom(t, b, fmt.Sprintf("127.0.3.%d", i+2))
				if err != nil {
					return
				}
				defer c.Close()
				// A byte a second: the login grace time must cut it off.
				for j := 0; j < 30; j++ {
					if _, err := c.Write([]byte("S")); err != nil {
						return
					}
					time.Sleep(time.Second)
				}
			}(i)
		}
		b.mustStillServe(t)
		wg.Wait()
		waitLog(t, b, "connection closed", map[string]string{"reason": "login grace time exceeded"})
	})
	t.Run("malformed and oversized packets", func(t *testing.T) {
		for i, junk := range [][]byte{
			[]byte("SSH-2.0-evil\r\n\xff\xff\xff\xff" + strings.Repeat("A", 1024)),
			[]byte("SSH-2.0-evil\r\n\x00\x00\x00\x0c\x04" + strings.Repeat("\x00", 11)),
			[]byte(strings.Repeat("not ssh at all\r\n", 4096)),
			append([]byte("SSH-2.0-evil\r\n"), binary.BigEndian.AppendUint32(nil, 40000)...),
		} {
			c, err := dialFrom(t, b, fmt.Sprintf("127.0.4.%d", i+2))
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(junk)
			io.Copy(io.Discard, c) // until the server closes it
			c.Close()
		}
		b.mustStillServe(t)
	})
	t.Run("many channels on one connection", func(t *testing.T) {
		c := b.mustDial(t, "build")
		// Past max_sessions_per_connection (10), sessions are refused when
		// they start; channels beyond x/crypto's own limit fail to open.
		var sessions []*ssh.Session
		for i := 0; i < 200; i++ {
			s, err := c.NewSession()
			if err != nil {
				continue
			}
			sessions = append(sessions, s)
			s.Start("nix-store --serve --write")
		}
		for _, s := range sessions {
			s.Close()
		}
		waitLog(t, b, "refused", map[string]string{"reason": "sessions per connection"})
		b.mustStillServe(t)
	})
	t.Run("huge commands and request floods", func(t *testing.T) {
		c := b.mustDial(t, "build")
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Run("nix-store --serve " + strings.Repeat("x", 200000)); err == nil {
			t.Error("a 200 kB command ran")
		}
		for i := 0; i < 150; i++ {
			if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
				break // closed for flooding: as it should
			}
		}
		waitLog(t, b, "connection closed", map[string]string{"reason": "too many global requests"})
		for _, kind := range []string{"direct-streamlocal@openssh.com", "x11", "auth-agent@openssh.com"} {
			c2 := b.mustDial(t, "build")
			if ch, _, err := c2.OpenChannel(kind, nil); err == nil {
				ch.Close()
				t.Errorf("channel %s was opened", kind)
			}
			if ok, _, _ := c2.SendRequest("streamlocal-forward@openssh.com", true, ssh.Marshal(&struct{ Path string }{"/tmp/x.sock"})); ok {
				t.Error("streamlocal forwarding was granted")
			}
			c2.Close()
		}
		b.mustStillServe(t)
	})
	t.Run("offered keys never proved", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			cfg := &ssh.ClientConfig{User: b.account.name, AuthCallback: offerThenProve(signerFor(t, b, "build"), signerFor(t, b, "lan"), new(bool)),
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
			if c, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), cfg); err == nil {
				c.Close()
				t.Fatal("offering one key and proving a refused one logged in")
			}
		}
		b.mustStillServe(t)
	})

	b.settles(t, g0, f0)
	t.Logf("heap in use: %.1f MiB before, %.1f MiB after", heap0/(1<<20), b.metric(t, "go_memstats_heap_inuse_bytes")/(1<<20))
}

// TestSoak runs 2,000 sequential and 200 parallel sessions through nixgate
// serve, sampling descriptors, goroutines and memory: they must not grow.
// NIXGATE_SOAK_SHORT=1 makes it 200 and 50.
func TestSoak(t *testing.T) {
	b := newBuilder(t, modeServe)
	cfg := readFile(t, b.config)
	writeFile(t, b.config, strings.Replace(cfg, "[limits]\n", "[limits]\nmax_startups = 512\nper_source_max_startups = 512\nper_source_rate = 1000000\n", 1), 0o644)
	b.waitReload(t)
	seq, par := 2000, 200
	if os.Getenv("NIXGATE_SOAK_SHORT") != "" {
		seq, par = 200, 50
	}
	signer := signerFor(t, b, "build")
	for i := 0; i < 20; i++ { // warm up
		if err := greetOnce(b, signer); err != nil {
			t.Fatal(err)
		}
	}
	g0, f0, rss0 := b.metric(t, "go_goroutines"), b.openFDs(t), vmRSS(b.serve.Process.Pid)
	deadline := time.Now().Add(10 * time.Minute)
	var samples []int64 // RSS after each quarter
	for i := 0; i < seq && time.Now().Before(deadline); i++ {
		if err := greetOnce(b, signer); err != nil {
			t.Fatalf("sequential session %d: %v", i, err)
		}
		if (i+1)%(seq/4) == 0 {
			samples = append(samples, vmRSS(b.serve.Process.Pid))
		}
	}
	t.Logf("RSS after each quarter of the sequential sessions: %v", samples)
	// Memory may grow to a working size early on, then must stay there.
	// Under the race detector, which keeps its own records of every
	// goroutine that ever ran, RSS says nothing: make test runs this test
	// without it too.
	checkRSS := !raceEnabled
	if checkRSS && len(samples) == 4 && samples[3] > samples[0]+16<<20 {
		t.Errorf("RSS kept growing: %v", samples)
	}
	ok, _ := burst(t, b, "build", par)
	if ok != par {
		t.Errorf("%d of %d parallel sessions succeeded", ok, par)
	}
	b.settles(t, g0, f0)
	rss1 := vmRSS(b.serve.Process.Pid)
	t.Logf("after %d sequential and %d parallel sessions: RSS %.1f → %.1f MiB", seq, par, float64(rss0)/(1<<20), float64(rss1)/(1<<20))
	if checkRSS && rss1 > rss0+64<<20 {
		t.Errorf("RSS grew from %d to %d bytes", rss0, rss1)
	}
}
