package nixproto

import (
	"bytes"
	"slices"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// setOptionsHead is SetOptions' op code and twelve integers as Nix's
// RemoteStore::setOptions sends them (remote-store.cc, Nix 2.4-2.35):
// keepFailed, keepGoing, tryFallback, verbosity, maxBuildJobs,
// maxSilentTime, useBuildHook, verboseBuild, logType, printBuildTrace,
// buildCores, useSubstitutes.
func setOptionsHead() *enc {
	return (&enc{}).u64(19, 0, 0, 0, 3, 1, 600, 1, 7, 0, 0, 0, 1)
}

func TestSetOptionsRewrite(t *testing.T) {
	// The overrides in name order, as RemoteStore::setOptions sends them
	// (a std::map).
	overrides := [][2]string{
		{"build-users-group", ""},
		{"builders", "ssh://evil x86_64-linux - 8"},
		{"max-silent-time", "600"},
		{"post-build-hook", "/tmp/hook.sh"},
		{"sandbox", "false"},
		{"substituters", "https://cache.example.org"},
	}
	sent := setOptionsHead().u64(uint64(len(overrides)))
	for _, o := range overrides {
		sent.str(o[0], o[1])
	}
	want := setOptionsHead().u64(1).str("max-silent-time", "600").b
	wantDropped := []string{"build-users-group", "builders", "post-build-hook", "sandbox", "substituters"}

	for _, vs := range []string{"1.23", "1.34", "1.38"} {
		v := parseVersion(t, vs)
		for _, pol := range []policy.OpPolicy{buildKey, readOnlyKey} {
			t.Run(vs+"/"+string(pol.Role), func(t *testing.T) {
				var feats []string
				if minor(v) >= 38 {
					feats = []string{FeatureDeleteDeadReferrers, FeatureRealisationWithPath}
				}
				hello := workerHello(v, feats...)
				tail := sentinel(policy.ProtocolWorker)
				client := slices.Concat(hello, sent.b, tail)
				r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: pol}, client, workerServerHello(v, feats...))
				if r.err != nil {
					t.Fatalf("session: %v", r.err)
				}
				if got, want := r.toNix, slices.Concat(hello, want, tail); !bytes.Equal(got, want) {
					t.Errorf("Nix got\n%x\nwant\n%x", got, want)
				}
				if !slices.Equal(r.audit.DroppedSettings, wantDropped) {
					t.Errorf("dropped %q; want %q", r.audit.DroppedSettings, wantDropped)
				}
				if r.audit.Ops["SetOptions"] != 1 || r.audit.RefusedCount != 0 {
					t.Errorf("ops %v, refused %v; want SetOptions passed", r.audit.Ops, r.audit.Refused)
				}
			})
		}
	}
}

// A SetOptions that carries only what the key may set, or nothing, reaches
// Nix unchanged.
func TestSetOptionsKept(t *testing.T) {
	for _, sent := range [][]byte{
		setOptionsHead().u64(0).b,
		setOptionsHead().u64(3).str("build-timeout", "3600", "keep-failed", "true", "max-silent-time", "600").b,
	} {
		for _, vs := range []string{"1.23", "1.34", "1.38"} {
			v := parseVersion(t, vs)
			client := slices.Concat(workerHello(v), sent, sentinel(policy.ProtocolWorker))
			r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey}, client, workerServerHello(v))
			if r.err != nil || !bytes.Equal(r.toNix, client) {
				t.Errorf("%s: Nix got %x (err %v); want the client's bytes unchanged", vs, r.toNix, r.err)
			}
			if len(r.audit.DroppedSettings) != 0 {
				t.Errorf("%s: dropped %q", vs, r.audit.DroppedSettings)
			}
		}
	}
}

// QueryValidPaths' substitute flag asks Nix to substitute, a write: it
// reaches Nix cleared for the substitute role and unchanged for the build
// role, in both protocols.
func TestSubstituteFlag(t *testing.T) {
	paths := []string{
		"/nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-hello-2.12.1",
		"/nix/store/yyk596mhya1dp91k5hpanfmfcgrfczn1-glibc-2.40-66",
	}
	type tc struct {
		proto       policy.Protocol
		version     string
		sent, clear []byte
	}
	var cases []tc
	for _, vs := range []string{"1.27", "1.32", "1.34", "1.35", "1.38"} {
		cases = append(cases, tc{policy.ProtocolWorker, vs,
			(&enc{}).u64(31).strs(paths...).u64(1).b,
			(&enc{}).u64(31).strs(paths...).u64(0).b})
	}
	for _, vs := range []string{"2.5", "2.7", "2.8"} {
		// lock, substitute, paths: the lock flag stays.
		cases = append(cases, tc{policy.ProtocolServe, vs,
			(&enc{}).u64(1, 1, 1).strs(paths...).b,
			(&enc{}).u64(1, 1, 0).strs(paths...).b})
	}
	for _, c := range cases {
		v := parseVersion(t, c.version)
		var hello, server []byte
		if c.proto == policy.ProtocolWorker {
			hello, server = workerHello(v), workerServerHello(v)
		} else {
			hello, server = serveHello(v), serveServerHello(v)
		}
		tail := sentinel(c.proto)
		for _, role := range []struct {
			pol  policy.OpPolicy
			want []byte
		}{{readOnlyKey, c.clear}, {buildKey, c.sent}, {fullTrust, c.sent}} {
			t.Run(c.proto.String()+"/"+c.version+"/"+role.pol.Key, func(t *testing.T) {
				r := filterSession(t, Options{Protocol: c.proto, Policy: role.pol}, slices.Concat(hello, c.sent, tail), server)
				if r.err != nil {
					t.Fatalf("session: %v", r.err)
				}
				if want := slices.Concat(hello, role.want, tail); !bytes.Equal(r.toNix, want) {
					t.Errorf("Nix got\n%x\nwant\n%x", r.toNix, want)
				}
				if r.audit.Ops["QueryValidPaths"] != 1 || r.audit.RefusedCount != 0 {
					t.Errorf("ops %v, refused %v; want QueryValidPaths passed", r.audit.Ops, r.audit.Refused)
				}
			})
		}
	}
}
