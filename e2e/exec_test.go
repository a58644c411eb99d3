package e2e

import (
	"testing"
)

func TestExecStorePing(t *testing.T) {
	b := newBuilder(t)
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		r := b.mustNix(t, "nix", "store", "ping", "--store", scheme+"://"+b.Host("build"))
		t.Logf("%s: %s", scheme, r)
	}
}
