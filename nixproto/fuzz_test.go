package nixproto

import (
	"bytes"
	"slices"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// fuzzSeeds are whole client streams: hellos at several versions and
// operations from the vectors.
func fuzzSeeds(f *testing.F) {
	for _, v := range []uint64{1<<8 | 23, 1<<8 | 25, 1<<8 | 34, 1<<8 | 38} {
		f.Add(uint8(0), uint16(v), slices.Concat(workerHello(v), (&enc{}).u64(1).str("/nix/store/a").b))
		f.Add(uint8(0), uint16(v), slices.Concat(workerHello(v), setOptions1("post-build-hook", "/x")))
		f.Add(uint8(0), uint16(v), slices.Concat(workerHello(v), (&enc{}).u64(39).str("/nix/store/a", "", "h").strs().u64(0, 8, 0).strs().str("").u64(0, 0).framed((&enc{}).nar("x").b, 9).b))
	}
	for _, v := range []uint64{2<<8 | 5, 2<<8 | 7, 2<<8 | 8} {
		f.Add(uint8(1), uint16(v), slices.Concat(serveHello(v), (&enc{}).u64(4, 1).nar("x").u64(exportMagic).str("/nix/store/a").strs().str("").u64(0, 0).b))
		f.Add(uint8(1), uint16(v), slices.Concat(serveHello(v), (&enc{}).u64(1, 1, 1).strs("/nix/store/a").b))
	}
}

func setOptions1(name, value string) []byte {
	return (&enc{}).u64(19, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1).str(name, value).b
}

// FuzzFilter feeds the filter any client stream. It must never panic;
// with everything allowed Nix gets exactly the client's bytes (when the
// version needs no lowering); with a read-only key Nix never gets more
// than the client sent, and never a byte of a write operation.
func FuzzFilter(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, which uint8, serverVersion uint16, client []byte) {
		proto, server := policy.ProtocolWorker, workerServerHello(uint64(serverVersion))
		if which%2 == 1 {
			proto, server = policy.ProtocolServe, serveServerHello(uint64(serverVersion))
		}
		r := filterSession(t, Options{Protocol: proto, Policy: fullTrust}, client, server)
		if r.err == nil && r.audit.Version != "" && clientVersionKept(proto, client) && !bytes.Equal(r.toNix, client) {
			t.Fatalf("full trust: Nix got %x; want the client's %x", r.toNix, client)
		}
		if len(r.toNix) > len(client) {
			t.Fatalf("full trust: Nix got more than the client sent")
		}
		ro := filterSession(t, Options{Protocol: proto, Policy: readOnlyKey}, client, server)
		if len(ro.toNix) > len(client) {
			t.Fatalf("read-only: Nix got %d bytes, more than the %d the client sent", len(ro.toNix), len(client))
		}
		if n := writeOps(t, proto, serverVersion, ro.toNix); n > 0 {
			t.Fatalf("read-only: %d write operations reached Nix", n)
		}
	})
}

// clientVersionKept reports whether the client's hello needs no lowering
// (so that the filter's output can equal its input).
func clientVersionKept(proto policy.Protocol, client []byte) bool {
	if len(client) < 16 {
		return true
	}
	v := uint64(client[8]) | uint64(client[9])<<8
	for _, b := range client[10:16] {
		if b != 0 {
			return false
		}
	}
	if proto == policy.ProtocolWorker {
		if minor(v) >= 38 {
			return false // the feature set may be rewritten
		}
		return v <= WorkerMaxVersion
	}
	return v <= ServeMaxVersion
}

// writeOps parses what reached Nix, as Nix would, with the filter itself
// under a pass-everything policy, and counts the write operations in it.
func writeOps(t *testing.T, proto policy.Protocol, serverVersion uint16, toNix []byte) int {
	var server []byte
	if proto == policy.ProtocolWorker {
		server = workerServerHello(uint64(serverVersion))
	} else {
		server = serveServerHello(uint64(serverVersion))
	}
	r := filterSession(t, Options{Protocol: proto, Policy: fullTrust}, toNix, server)
	n := 0
	for name, count := range r.audit.Ops {
		for code := uint64(0); code < 64; code++ {
			if policy.OpName(proto, code) == name && policy.Writes(proto, code) && !ensureOp(proto, code) {
				n += count
			}
		}
	}
	// BuildPaths of outputs, not only of store paths, is a write too.
	return n + r.audit.Built.Count
}

// ensureOp is an op a read-only key may send for opaque paths; the built
// paths of the audit count the ones that were not.
func ensureOp(proto policy.Protocol, code uint64) bool {
	return proto == policy.ProtocolWorker && (code == 9 || code == 10 || code == 46)
}
