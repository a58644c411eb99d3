package nixproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestHelloClamp: a client and a Nix newer than nixgate both see the
// newest version nixgate understands.
func TestHelloClamp(t *testing.T) {
	for _, tt := range []struct {
		name           string
		proto          policy.Protocol
		client, server uint64
		max            uint64
	}{
		{"worker client newer", policy.ProtocolWorker, 1<<8 | 39, 1<<8 | 34, WorkerMaxVersion},
		{"worker Nix newer", policy.ProtocolWorker, 1<<8 | 34, 1<<8 | 45, WorkerMaxVersion},
		{"serve client newer", policy.ProtocolServe, 2<<8 | 9, 2<<8 | 7, ServeMaxVersion},
		{"serve Nix newer", policy.ProtocolServe, 2<<8 | 7, 2<<8 | 12, ServeMaxVersion},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var client, server []byte
			if tt.proto == policy.ProtocolWorker {
				client = (&enc{}).u64(WorkerMagicClient, tt.client).b
				if min(tt.client, tt.max) >= 1<<8|38 && tt.server >= 1<<8|38 {
					client = (&enc{b: client}).strs().b
				}
				client = (&enc{b: client}).u64(0, 0).b
				server = workerServerHello(tt.server)
			} else {
				client, server = serveHello(tt.client), serveServerHello(tt.server)
			}
			r := filterSession(t, Options{Protocol: tt.proto, Policy: buildKey}, client, server)
			if r.err != nil {
				t.Fatalf("err %v (stderr %q)", r.err, r.stderr)
			}
			if got := binary.LittleEndian.Uint64(r.toNix[8:]); got != min(tt.client, tt.max) {
				t.Errorf("Nix got client version %s; want %s", versionName(got), versionName(min(tt.client, tt.max)))
			}
			if got := binary.LittleEndian.Uint64(r.toClient[8:]); got != min(tt.server, tt.max) {
				t.Errorf("the client got Nix's version %s; want %s", versionName(got), versionName(min(tt.server, tt.max)))
			}
		})
	}
}

// TestHelloTooOld: clients older than the filter's oldest version are
// refused at the hello with one line, and Nix gets nothing past the magic.
func TestHelloTooOld(t *testing.T) {
	for _, tt := range []struct {
		proto          policy.Protocol
		client, server []byte
		want           string
	}{
		{policy.ProtocolWorker, (&enc{}).u64(WorkerMagicClient, 1<<8|21, 0, 0).b, workerServerHello(1<<8 | 34), "speaks worker protocol 1.21; nixgate needs 1.23 or later"},
		{policy.ProtocolWorker, (&enc{}).u64(WorkerMagicClient, 1<<8|34, 0, 0).b, workerServerHello(1<<8 | 21), "builder's Nix speaks worker protocol 1.21"},
		{policy.ProtocolServe, serveHello(2<<8 | 4), serveServerHello(2<<8 | 7), "serve protocol 2.4; nixgate needs 2.5 or later"},
		{policy.ProtocolWorker, (&enc{}).u64(ServeMagicClient, 2<<8|7).b, workerServerHello(1<<8 | 34), "did not open the worker protocol"},
	} {
		r := filterSession(t, Options{Protocol: tt.proto, Policy: buildKey}, tt.client, tt.server)
		if !errors.Is(r.err, ErrRefused) || !strings.Contains(string(r.stderr), tt.want) || strings.Count(string(r.stderr), "\n") != 1 {
			t.Errorf("%s: err %v, stderr %q; want a refusal saying %q", tt.proto, r.err, r.stderr, tt.want)
		}
		if len(r.toNix) > 8 {
			t.Errorf("%s: Nix got %d bytes; want at most the magic", tt.proto, len(r.toNix))
		}
	}
}

// TestFeaturesUnderstood: at 1.38 each side sees only the features
// nixgate understands, and the session parses by their intersection.
func TestFeaturesUnderstood(t *testing.T) {
	v := uint64(1<<8 | 38)
	client := slices.Concat((&enc{}).u64(WorkerMagicClient, v).strs("future-feature", FeatureRealisationWithPath).u64(0, 0).b,
		// QueryRealisation with the feature: drv path, output name.
		(&enc{}).u64(43).str("/nix/store/00000000000000000000000000000000-x.drv", "out").b,
		sentinel(policy.ProtocolWorker))
	server := (&enc{}).u64(WorkerMagicServer, v).strs(FeatureDeleteDeadReferrers, FeatureRealisationWithPath, "other-future").b
	r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: readOnlyKey}, client, server)
	if r.err != nil {
		t.Fatalf("err %v", r.err)
	}
	wantToNix := (&enc{}).u64(WorkerMagicClient, v).strs(FeatureRealisationWithPath).b
	if !bytes.HasPrefix(r.toNix, wantToNix) {
		t.Errorf("Nix got the client's features %x; want only %s", r.toNix[16:], FeatureRealisationWithPath)
	}
	wantToClient := (&enc{}).u64(WorkerMagicServer, v).strs(FeatureDeleteDeadReferrers, FeatureRealisationWithPath).b
	if !bytes.HasPrefix(r.toClient, wantToClient) {
		t.Errorf("the client got %x; want Nix's understood features", r.toClient)
	}
	if !slices.Equal(r.audit.Features, []string{FeatureRealisationWithPath}) {
		t.Errorf("session features %q", r.audit.Features)
	}
	// QueryRealisation is refused (argsAfterStartWork), but read to its
	// end by the negotiated layout: the op after it arrives whole.
	if !slices.Equal(r.audit.Refused, []string{"QueryRealisation"}) || r.audit.Ops["IsValidPath"] != 1 {
		t.Errorf("ops %v, refused %v: QueryRealisation was not parsed with the negotiated feature", r.audit.Ops, r.audit.Refused)
	}
}
