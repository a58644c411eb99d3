package gateway

import (
	"fmt"
	"net"
)

// Listen opens a TCP listener on each of addrs, in order, and closes the
// ones it opened when one fails. An IPv4 address is opened IPv4-only, and
// an IPv6 wildcard ([::]:P) IPv6-only when addrs also holds an IPv4
// address on port P (see Network): Go opens both 0.0.0.0 and [::]
// dual-stack, so listen = ["0.0.0.0:P", "[::]:P"] would otherwise fail
// with "address already in use". Alone, [::]:P stays dual-stack and
// serves both families.
func Listen(addrs []string) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		l, err := ListenAddr(a, addrs)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// ListenAddr opens the listener for addr the way Listen does when addr is
// one of all.
func ListenAddr(addr string, all []string) (net.Listener, error) {
	l, err := net.Listen(Network(addr, all), addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	return l, nil
}

// Network returns the network Listen uses for addr, one of all: "tcp4"
// for an IPv4 address, "tcp6" (which sets IPV6_V6ONLY) when V6Only, and
// "tcp" otherwise.
func Network(addr string, all []string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
			return "tcp4"
		}
	}
	if V6Only(addr, all) {
		return "tcp6"
	}
	return "tcp"
}

// V6Only reports whether Listen opens addr IPv6-only: addr is an IPv6
// wildcard ([::]:P, or :P, which Go also opens dual-stack) and all holds
// an IPv4 address on port P.
func V6Only(addr string, all []string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || ip.To4() != nil || !ip.IsUnspecified()) {
		return false
	}
	for _, o := range all {
		h, p, err := net.SplitHostPort(o)
		if err != nil || p != port {
			continue
		}
		if ip := net.ParseIP(h); ip != nil && ip.To4() != nil {
			return true
		}
	}
	return false
}
