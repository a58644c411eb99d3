package gateway

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// TestListenDualStack is the regression test for listen = ["0.0.0.0:P",
// "[::]:P"], which failed with "address already in use": both open, and
// each family reaches its own listener.
func TestListenDualStack(t *testing.T) {
	// The port is probed free, then bound: another program can take it
	// in between, so a port found taken is replaced, a bounded number
	// of times.
	var (
		port  int
		addrs []string
		ls    []net.Listener
		err   error
	)
	for try := 0; try < 20; try++ {
		probe, perr := net.Listen("tcp", "[::1]:0")
		if perr != nil {
			t.Skipf("no IPv6 loopback: %v", perr)
		}
		port = probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		addrs = []string{fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d", port)}
		if ls, err = Listen(addrs); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
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
