package gateway

import (
	"fmt"
	"net"
	"testing"
)

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
