package gateway

import (
	"net"

	"github.com/nixgate/nixgate/policy"
)

// Listen opens a TCP listener on each of addrs, in order, on the network
// policy.ListenNetwork chooses (an IPv6 wildcard IPv6-only when an IPv4
// address on its port is listed too), and closes the ones it opened when
// one fails.
func Listen(addrs []string) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		l, err := net.Listen(policy.ListenNetwork(a, addrs), a)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, errorf("listen %s: %w", a, err)
		}
		out = append(out, l)
	}
	return out, nil
}
