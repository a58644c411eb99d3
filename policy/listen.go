package policy

import "net"

// ListenNetwork returns the network that serve mode listens on for addr,
// one of the listen addresses all: "tcp4" for an IPv4 address, "tcp6"
// (which sets IPV6_V6ONLY) when ListenV6Only, and "tcp" otherwise. Go
// opens both 0.0.0.0 and [::] dual-stack, so listen = ["0.0.0.0:P",
// "[::]:P"] would otherwise fail with "address already in use"; alone,
// [::]:P stays dual-stack and serves both families. gateway.Listen
// listens this way, and nixgate check binds the addresses this way too.
func ListenNetwork(addr string, all []string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
			return "tcp4"
		}
	}
	if ListenV6Only(addr, all) {
		return "tcp6"
	}
	return "tcp"
}

// ListenV6Only reports whether serve mode opens addr IPv6-only: addr is
// an IPv6 wildcard ([::]:P, or :P, which Go also opens dual-stack) and
// all holds an IPv4 address on port P.
func ListenV6Only(addr string, all []string) bool {
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
