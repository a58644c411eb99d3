package gateway

import (
	"fmt"
	"net"
	"testing"
)

func TestV6Only(t *testing.T) {
	for _, tt := range []struct {
		addr string
		all  []string
		want bool
	}{
		{"[::]:22", []string{"0.0.0.0:22", "[::]:22"}, true},
		{"[::]:22", []string{"[::]:22"}, false},
		{"[::]:22", []string{"0.0.0.0:2222", "[::]:22"}, false},
		{"[::]:22", []string{"127.0.0.1:22", "[::]:22"}, true},
		{":22", []string{"0.0.0.0:22", ":22"}, true},
		{"0.0.0.0:22", []string{"0.0.0.0:22", "[::]:22"}, false},
		{"[::1]:22", []string{"0.0.0.0:22", "[::1]:22"}, false},
		{"bad", []string{"0.0.0.0:22", "bad"}, false},
	} {
		if got := V6Only(tt.addr, tt.all); got != tt.want {
			t.Errorf("V6Only(%q, %q) = %v; want %v", tt.addr, tt.all, got, tt.want)
		}
	}
}

// TestListenDualStack is the regression test for listen = ["0.0.0.0:P",
// "[::]:P"], which failed with "address already in use": both open, and
// each family reaches its own listener.
func TestListenDualStack(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	addrs := []string{fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d", port)}
	ls, err := Listen(addrs)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addrs, err)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i, dial := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)} {
		c, err := net.Dial("tcp", dial)
		if err != nil {
			t.Fatalf("dial %s: %v", dial, err)
		}
		s, err := ls[i].Accept()
		if err != nil {
			t.Fatalf("accept on %s: %v", addrs[i], err)
		}
		s.Close()
		c.Close()
	}
}

func TestNetwork(t *testing.T) {
	all := []string{"0.0.0.0:22", "[::]:22", "[::]:23", "127.0.0.1:24", "[::1]:24", "host:25"}
	for addr, want := range map[string]string{"0.0.0.0:22": "tcp4", "[::]:22": "tcp6", "[::]:23": "tcp", "127.0.0.1:24": "tcp4", "[::1]:24": "tcp", "host:25": "tcp"} {
		if got := Network(addr, all); got != want {
			t.Errorf("Network(%q) = %q; want %q", addr, got, want)
		}
	}
}
