package nixproto

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

var capped = policy.OpPolicy{Key: "ci", Role: policy.RoleBuild, ClientSettings: policy.DefaultClientSettings,
	Limits: policy.BuildLimits{BuildTimeout: time.Minute, MaxSilentTime: 30 * time.Second, MaxLogSize: 1000}}

// TestServeBuildLimits: a serve BuildDerivation reaches Nix with the
// key's limits in its build options, whatever the client asked (0 is
// "no limit" to Nix), and a lower ask is kept.
func TestServeBuildLimits(t *testing.T) {
	for _, v := range []uint64{2<<8 | 5, 2<<8 | 7} {
		drv := (&enc{}).u64(8).str("/nix/store/00000000000000000000000000000000-x.drv").
			u64(1).str("out", "/nix/store/11111111111111111111111111111111-x", "", "").strs().str("x86_64-linux", "/bin/sh").strs().u64(0).b
		options := (&enc{}).u64(0, 7200, 0, 0, 0).b // silent: none, timeout 2h, log: none, repeats, determinism
		if minor(v) >= 7 {
			options = (&enc{b: options}).u64(0).b // keep failed
		}
		client := slices.Concat(serveHello(v), drv, options)
		r := filterSession(t, Options{Protocol: policy.ProtocolServe, Policy: capped}, client, serveServerHello(v))
		if r.err != nil {
			t.Fatal(r.err)
		}
		got := r.toNix[len(r.toNix)-len(options):]
		want := []uint64{30, 60, 1000}
		for i, w := range want {
			if g := binary.LittleEndian.Uint64(got[8*i:]); g != w {
				t.Errorf("%s: option %d reached Nix as %d; want %d", versionName(v), i, g, w)
			}
		}
		if !bytes.Equal(r.toNix[:len(r.toNix)-len(options)], client[:len(client)-len(options)]) {
			t.Errorf("%s: more than the build options changed", versionName(v))
		}
		// A client asking for less than the caps keeps its values.
		low := (&enc{}).u64(5, 10, 100, 0, 0).b
		if minor(v) >= 7 {
			low = (&enc{b: low}).u64(0).b
		}
		r = filterSession(t, Options{Protocol: policy.ProtocolServe, Policy: capped}, slices.Concat(serveHello(v), drv, low), serveServerHello(v))
		if !bytes.HasSuffix(r.toNix, low) {
			t.Errorf("%s: lower options were changed", versionName(v))
		}
	}
}

// TestWorkerSetOptionsLimits: SetOptions reaches the daemon with the
// key's limits: the fixed max silent time and the overrides capped, the
// ones the client left out added.
func TestWorkerSetOptionsLimits(t *testing.T) {
	v := uint64(1<<8 | 34)
	set := (&enc{}).u64(19, 0, 0, 0, 0, 1, 3600, 1, 0, 0, 0, 0, 1).u64(1).str("build-timeout", "7200").b
	r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: capped}, slices.Concat(workerHello(v), set), workerServerHello(v))
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := slices.Concat(workerHello(v), (&enc{}).u64(19, 0, 0, 0, 0, 1, 30, 1, 0, 0, 0, 0, 1).u64(3).
		str("build-timeout", "60", "max-silent-time", "30", "max-log-size", "1000").b)
	if !bytes.Equal(r.toNix, want) {
		t.Errorf("Nix got %x;\nwant %x", r.toNix, want)
	}
}
