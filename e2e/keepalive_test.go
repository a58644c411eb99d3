package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idleDropProxy forwards TCP connections to a builder and drops any that
// carried nothing either way for idle, closing both ends, as a NAT or
// firewall that forgets idle connections leaves them. Once stalled it
// forwards nothing and closes nothing: a client whose machine vanished.
type idleDropProxy struct {
	port    int
	idle    time.Duration
	dropped atomic.Int32
	stalled atomic.Bool
}

func newIdleDropProxy(t *testing.T, to string, idle time.Duration) *idleDropProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleDropProxy{port: l.Addr().(*net.TCPAddr).Port, idle: idle}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			var last atomic.Int64
			last.Store(time.Now().UnixNano())
			var ended atomic.Bool
			// A side's end is passed on, as TCP passes a FIN or RST:
			// both connections close.
			forward := func(dst, src net.Conn) {
				defer func() {
					ended.Store(true)
					in.Close()
					out.Close()
				}()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !p.stalled.Load() {
						last.Store(time.Now().UnixNano())
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go forward(out, in)
			go forward(in, out)
			go func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
					}
					if ended.Load() {
						return
					}
					if !p.stalled.Load() && time.Since(time.Unix(0, last.Load())) > idle {
						p.dropped.Add(1)
						in.Close()
						out.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

// proxiedHost adds an ssh_config alias for key that reaches the builder
// through the proxy on port.
func (b *builder) proxiedHost(t *testing.T, key string, port int) string {
	t.Helper()
	cfg := readFile(t, b.sshConfig)
	head := "Host " + b.Host(key) + "\n"
	i := strings.Index(cfg, head)
	if i < 0 {
		t.Fatalf("no %q in %s", head, b.sshConfig)
	}
	block, _, _ := strings.Cut(cfg[i+len(head):], "\n\n")
	alias := b.Host(key) + "-proxied"
	block = strings.Replace(block, fmt.Sprintf("  Port %d\n", b.port), fmt.Sprintf("  Port %d\n", port), 1)
	writeFile(t, b.sshConfig, cfg+"Host "+alias+"\n"+block+"\n\n", 0o644)
	return alias
}

// setKeepalive sets serve's [limits] keepalive settings and waits for
// the reload.
func (b *builder) setKeepalive(t *testing.T, settings string) {
	t.Helper()
	cfg := readFile(t, b.config)
	if i := strings.Index(cfg, "\nkeepalive_interval"); i >= 0 {
		j := strings.Index(cfg[i:], "\n[")
		cfg = cfg[:i] + cfg[i+j:]
	}
	if !strings.Contains(cfg, "[limits]\n") {
		t.Fatalf("no [limits] in:\n%s", cfg)
	}
	writeFile(t, b.config, strings.Replace(cfg, "[limits]\n", "[limits]\n"+settings, 1), 0o644)
	b.waitReload(t)
}

// TestKeepaliveThroughIdleDrop: behind a path that drops a connection
// idle for 3 seconds, a remote build silent for 8 seconds succeeds over
// ssh:// and ssh-ng:// because serve's keepalives (every second) carry
// traffic, and fails with keepalives off (the control). A client that
// vanishes mid-build (the path forwards nothing and closes nothing) has
// its connection closed after keepalive_count_max unanswered keepalives,
// its Nix stopped and its build slot given back.
func TestKeepaliveThroughIdleDrop(t *testing.T) {
	requireTools(t)
	b := newBuilder(t, modeServe)
	b.limitBuildKey(t, "max_builds = 1\n")
	p := newIdleDropProxy(t, fmt.Sprintf("127.0.0.1:%d", b.port), 3*time.Second)
	host := b.proxiedHost(t, "build", p.port)
	build := func(scheme string, secs int) result {
		drv := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), secs)
		return b.nix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", scheme+"://"+host+" x86_64-linux - 1")
	}

	b.setKeepalive(t, "keepalive_interval = \"1s\"\n")
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		if r := build(scheme, 8); r.code != 0 {
			t.Errorf("via %s, a build silent for 8 s behind a path that drops idle connections after 3 s, with keepalives every second: %s", scheme, r)
		}
	}
	if n := p.dropped.Load(); n != 0 {
		t.Errorf("the path dropped %d connections with keepalives on:\n%s", n, readFile(t, b.log))
	}

	b.setKeepalive(t, "keepalive_interval = \"0\"\n")
	if r := build("ssh", 8); r.code == 0 || p.dropped.Load() == 0 {
		t.Errorf("with keepalives off, the silent build: %s, %d connections dropped; want the path to drop it (else this test proves nothing)", r, p.dropped.Load())
	}

	b.setKeepalive(t, "keepalive_interval = \"1s\"\nkeepalive_count_max = 2\n")
	start := time.Now()
	drv := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 300)
	b.startNix(t, "nix-build", drv, "--no-out-link", "-j0", "--builders", "ssh://"+host+" x86_64-linux - 1")
	waitFor(t, "the build to take its slot", 60*time.Second, func() bool { return b.metric(t, "nixgate_builds_running") == 1 })
	p.stalled.Store(true)
	stalled := time.Now()
	waitRecord(t, b, "the connection closed for unanswered keepalives", func(r map[string]any) bool {
		return r["msg"] == "connection closed" && r["reason"] == "the client answered no keepalive" && !recordTime(r).Before(start)
	})
	waitFor(t, "the build slot to be given back and Nix stopped", 30*time.Second, func() bool {
		return b.metric(t, "nixgate_builds_running") == 0 && b.metric(t, "nixgate_sessions_running") == 0
	})
	t.Logf("the vanished client's Nix stopped and its slot given back %v after the path went dark", time.Since(stalled).Round(100*time.Millisecond))
	if b.metric(t, "nixgate_keepalive_timeouts_total") != 1 {
		t.Errorf("nixgate_keepalive_timeouts_total = %v; want 1", b.metric(t, "nixgate_keepalive_timeouts_total"))
	}
}

// waitFor polls cond every 100 ms until it holds or within has passed.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
	}
}
