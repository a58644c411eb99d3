package nixproto

import (
	"slices"
	"sync"
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
		// The payload operations, with Nix trusting the client (which 2),
		// not (4) or not saying (0).
		for _, which := range []uint8{0, 2, 4} {
			f.Add(which, uint16(v), slices.Concat(workerHello(v), (&enc{}).u64(7).str("x", "fixed:r:sha256").strs().u64(0).framed((&enc{}).nar("x").b, 5).u64(1).str("/nix/store/a").b))
			f.Add(which, uint16(v), slices.Concat(workerHello(v), (&enc{}).u64(44, 0, 0).framed((&enc{}).u64(0).b, 1).u64(13).b))
			f.Add(which, uint16(v), slices.Concat(workerHello(v), (&enc{}).u64(45).str("6cp643dzvlxxpkgbg5kzmwj47sam9zs2-a.drv").framed([]byte("log"), 2).u64(13).b))
		}
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
// what it writes toward Nix, parsed again by nixgate's own parser (the
// filter with everything allowed, standing in for Nix), is exactly the
// operations it allowed, in order, moving the same paths (lockstep); a
// read-only key's stream holds no write operation.
func FuzzFilter(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, which uint8, serverVersion uint16, client []byte) {
		proto, server := policy.ProtocolWorker, slices.Concat(workerServerHello(uint64(serverVersion)), workerServerTail(uint64(serverVersion), uint64(which>>1)%3))
		if which%2 == 1 {
			proto, server = policy.ProtocolServe, serveServerHello(uint64(serverVersion))
		}
		for _, pol := range []policy.OpPolicy{fullTrust, buildKey, readOnlyKey} {
			first := observedSession(t, Options{Protocol: proto, Policy: pol}, client, server)
			again := observedSession(t, Options{Protocol: proto, Policy: fullTrust}, first.toNix, server)
			checkLockstep(t, pol, first, again)
			if pol.Role == policy.RoleSubstitute {
				if n := writeOps(t, proto, serverVersion, first.toNix); n > 0 {
					t.Fatalf("read-only: %d write operations reached Nix", n)
				}
			}
		}
	})
}

// observed is a filtered session with the operations the filter decided,
// in order.
type observed struct {
	run
	passed  []string // the operations allowed, in order
	refused int
}

func observedSession(t testing.TB, opt Options, client, server []byte) observed {
	t.Helper()
	var o observed
	var mu sync.Mutex
	opt.Observe = func(op string, allowed bool) {
		mu.Lock()
		defer mu.Unlock()
		if allowed {
			o.passed = append(o.passed, op)
		} else {
			o.refused++
		}
	}
	o.run = filterSession(t, opt, client, server)
	mu.Lock()
	defer mu.Unlock()
	return o
}

// checkLockstep checks that what the first session wrote toward Nix,
// filtered again with everything allowed, is the operations the first
// session allowed and nothing else: the same ops in order, the same paths
// imported, built and read, the same number of bytes imported, and no
// error where the first session ended cleanly.
func checkLockstep(t *testing.T, pol policy.OpPolicy, first, again observed) {
	t.Helper()
	if first.failedClosed || again.failedClosed {
		// A Nix whose answers (here its hello) nixgate cannot follow:
		// the session ends, and Nix gets what was allowed up to then —
		// never more, never another op.
		if len(again.passed) > len(first.passed) || !slices.Equal(again.passed, first.passed[:len(again.passed)]) || again.refused != 0 {
			t.Fatalf("%s, failed closed: Nix would read the ops %v (and %d refused); the filter allowed %v", pol.Role, again.passed, again.refused, first.passed)
		}
		return
	}
	if !slices.Equal(again.passed, first.passed) || again.refused != 0 {
		t.Fatalf("%s: Nix would read the ops %v (and %d refused); the filter allowed %v", pol.Role, again.passed, again.refused, first.passed)
	}
	a, b := first.audit, again.audit
	if !slices.Equal(a.Imported.Paths, b.Imported.Paths) || !slices.Equal(a.Built.Paths, b.Built.Paths) || !slices.Equal(a.Read.Paths, b.Read.Paths) {
		t.Fatalf("%s: paths differ: imported %q / %q, built %q / %q, read %q / %q", pol.Role, a.Imported.Paths, b.Imported.Paths, a.Built.Paths, b.Built.Paths, a.Read.Paths, b.Read.Paths)
	}
	if a.Imported.Bytes != b.Imported.Bytes {
		t.Fatalf("%s: %d bytes imported, Nix would read %d", pol.Role, a.Imported.Bytes, b.Imported.Bytes)
	}
	if first.err == nil && again.err != nil {
		t.Fatalf("%s: the filter ended cleanly, but what it wrote toward Nix does not parse: %v", pol.Role, again.err)
	}
}

// writeOps parses what reached Nix, as Nix would, with the filter itself
// under a pass-everything policy, and counts the write operations in it.
func writeOps(t *testing.T, proto policy.Protocol, serverVersion uint16, toNix []byte) int {
	var server []byte
	if proto == policy.ProtocolWorker {
		server = slices.Concat(workerServerHello(uint64(serverVersion)), workerServerTail(uint64(serverVersion), trustTrusted))
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
