package certauth

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckSourceAddress(t *testing.T) {
	tests := []struct {
		remote, list string
		want         string // part of the error; empty when allowed
	}{
		{"127.0.0.1", "127.0.0.1", ""},
		{"127.0.0.1", "10.0.0.0/8,127.0.0.0/8", ""},
		{"::ffff:127.0.0.1", "127.0.0.1/32", ""},
		{"2001:db8::1", "2001:db8::/32", ""},
		{"10.1.2.3", "10.0.0.0/8", ""},
		{"10.1.2.3", "10.9.9.9/32", `the client address 10.1.2.3 is not in the certificate's source-address "10.9.9.9/32"`},
		{"10.1.2.3", "10.1.2.3,bogus", `an entry that is no address or network: "bogus"`},
		{"10.1.2.3", "", `an entry that is no address or network: ""`},
		{"10.1.2.3", "10.1.2.3, 10.0.0.1", `an entry that is no address or network: " 10.0.0.1"`},
		{"10.1.2.3", "10.0.0.0/33", "no address or network"},
		{"", "10.0.0.0/8", "the client address is unknown"},
	}
	for _, tt := range tests {
		var remote netip.Addr
		if tt.remote != "" {
			remote = netip.MustParseAddr(tt.remote)
		}
		err := CheckSourceAddress(remote, tt.list)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckSourceAddress(%s, %q) = %v; want %q", tt.remote, tt.list, err, tt.want)
		}
	}
}
