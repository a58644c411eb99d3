//go:build !linux

package sandbox

import (
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestSandboxModesRefuse checks that, off Linux, each sandbox mode is
// refused with the reason and the way out, and direct mode still works.
func TestSandboxModesRefuse(t *testing.T) {
	d := policy.Decision{Allow: true, Program: policy.NixStore, Args: []string{"--serve"}}
	for _, mode := range []policy.SandboxMode{policy.SandboxUserNS, policy.SandboxNixUserChroot, policy.SandboxProot} {
		cfg := &policy.Config{User: "u", Sandbox: policy.SandboxConfig{Mode: mode, StoreDir: "~/.nix"}}
		_, err := Prepare(cfg, d, Account{Name: "u", Home: "/Users/u"})
		if err == nil || !strings.Contains(err.Error(), "needs Linux") || !strings.Contains(err.Error(), `sandbox.mode = "direct"`) {
			t.Errorf("Prepare in mode %s = %v; want a refusal that names Linux and direct mode", mode, err)
		}
	}
}
