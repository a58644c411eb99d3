package nixproto

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

const (
	testDrv  = "/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv"
	testPath = "/nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-hello-2.12.1"
)

// TestValidStorePath: only a store path Nix reads exactly as sent
// passes; Nix cleans every other form (canonPath) into another path.
func TestValidStorePath(t *testing.T) {
	for _, tc := range []struct {
		p    string
		want bool
	}{
		{testPath, true},
		{testDrv, true},
		{"/gnu/store/l9r346p3d25vs4g5v37f3r3f28js97kb-x", true}, // the store directory is Nix's to check
		{"", false},
		{"l9r346p3d25vs4g5v37f3r3f28js97kb-hello", false},
		{"nix/store/l9r346p3d25vs4g5v37f3r3f28js97kb-hello", false},
		{testDrv + "/", false},
		{testDrv + "//", false},
		{testDrv + "/.", false},
		{testDrv + "/x/..", false},
		{"//nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false},
		{"/nix//store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false},
		{"/nix/store/./6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false},
		{"/nix/store/zz/../6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false},
		{"/../nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false},
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2Xhello", false}, // Nix never checks the dash
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2!hello", false}, // nor here
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zse-hello", false}, // e is no base-32 digit
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-.vimrc", true}, // a dotfile's path literal
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-.-x", false},
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-..", false},
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hel lo", false},
		{"/nix/store/6cp643dzvlxxpkgbg5kzmwj47sam9zs2-" + strings.Repeat("x", 212), false},
	} {
		if got := validStorePath(tc.p); got != tc.want {
			t.Errorf("validStorePath(%q) = %v; want %v", tc.p, got, tc.want)
		}
	}
}

// TestCheckDerivedPath: the paths of BuildPaths, BuildPathsWithResults
// and QueryMissing pass only in forms every Nix reads as nixgate does.
func TestCheckDerivedPath(t *testing.T) {
	for _, tc := range []struct {
		p              string
		legacy, modern bool // passes before 1.30 (and serve), from 1.30
	}{
		{testPath, true, true},
		{testDrv, true, true},
		{testDrv + "!out", true, true},
		{testDrv + "!out,dev", true, true},
		{testDrv + "!*", false, true}, // before 1.30 an output named "*"
		{testDrv + "!", false, false}, // 2.8 reads it as all outputs
		{testDrv + "!out,", false, false},
		{testDrv + "!out!dev", false, false}, // 2.8 splits at the first !, later Nix at the last
		{testDrv + "!bad name", false, false},
		{testDrv + "/", false, false}, // Nix builds it before 1.30
		{testDrv + "/!out", false, false},
		{"/nix/store/./6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv", false, false},
		{testPath + "!out", false, false}, // outputs of no derivation: Nix 2.8 aborts
		{"", false, false},                // Nix aborts on an empty path
	} {
		for _, legacy := range []bool{true, false} {
			want := tc.modern
			if legacy {
				want = tc.legacy
			}
			if got := checkDerivedPath(tc.p, legacy) == ""; got != want {
				t.Errorf("checkDerivedPath(%q, legacy %v) passes = %v; want %v", tc.p, legacy, got, want)
			}
		}
	}
}

// TestArgumentsAsNixReadsThem: a BuildPaths of a derivation in a form Nix
// cleans (which Nix builds before 1.30, where nixgate's reading of the
// raw string saw nothing to build) is refused for every key, as are a
// build mode Nix 2.8 takes and later Nix refuses, outputs of a path that
// is no derivation, and a BuildDerivation of a path that is none; the
// session stays in step (the sentinel passes). The canonical forms pass.
func TestArgumentsAsNixReadsThem(t *testing.T) {
	bp := func(path string, mode uint64) []byte { return (&enc{}).u64(9).strs(path).u64(mode).b }
	for _, tc := range []struct {
		name    string
		version uint64
		op      []byte
		want    string // in the refusal; empty: passes for a build key
	}{
		{"a derivation before 1.30", 1<<8 | 28, bp(testDrv, 0), ""},
		{"a derivation's outputs", 1<<8 | 34, bp(testDrv+"!out", 0), ""},
		{"check mode", 1<<8 | 34, bp(testDrv+"!out", 2), ""},
		{"a trailing slash before 1.30", 1<<8 | 28, bp(testDrv+"/", 0), "not a store path in canonical form"},
		{"a dot", 1<<8 | 28, bp("/nix/store/./"+strings.TrimPrefix(testDrv, "/nix/store/"), 0), "not a store path in canonical form"},
		{"a trailing slash and outputs", 1<<8 | 34, bp(testDrv+"/!out", 0), "not a store path in canonical form"},
		{"two !", 1<<8 | 34, bp(testDrv+"!out!x", 0), "not a list of output names"},
		{"outputs of no derivation", 1<<8 | 34, bp(testPath+"!out", 0), "not a derivation"},
		{"build mode 3", 1<<8 | 34, bp(testDrv+"!out", 3), "build mode 3"},
		{"an empty path", 1<<8 | 34, (&enc{}).u64(1).str("").b, "not a store path in canonical form"},
		{"NarFromPath of a cleaned path", 1<<8 | 34, (&enc{}).u64(38).str(testPath + "/").b, "not a store path in canonical form"},
		{"BuildDerivation of no derivation", 1<<8 | 34, (&enc{}).u64(36).str(testPath).u64(0).strs().str("x86_64-linux", "/bin/sh").strs().u64(0, 0).b, "not a derivation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := workerHello(tc.version)
			client := slices.Concat(hello, tc.op, sentinel(policy.ProtocolWorker))
			for _, pol := range []policy.OpPolicy{fullTrust, buildKey, readOnlyKey} {
				r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: pol}, client, workerServerWhole(tc.version))
				if r.err != nil {
					t.Fatalf("%s: %v", pol.Key, r.err)
				}
				passed := r.audit.RefusedCount == 0
				switch {
				case tc.want == "" && pol.Role == policy.RoleBuild && !passed:
					t.Errorf("%s: refused %v; want it passed", pol.Key, r.audit.Refused)
				case tc.want != "" && passed:
					t.Errorf("%s: passed; want it refused (%s)", pol.Key, tc.want)
				case tc.want != "" && pol.Role == policy.RoleBuild && !strings.Contains(string(r.toClient), tc.want):
					// (A substitute key's build is refused by its role
					// first, unless it only makes paths valid.)
					t.Errorf("%s: the client got no refusal saying %q", pol.Key, tc.want)
				}
				if !bytes.HasSuffix(r.toNix, sentinel(policy.ProtocolWorker)) {
					t.Errorf("%s: the sentinel did not reach Nix: the session lost its step", pol.Key)
				}
			}
		})
	}
}
