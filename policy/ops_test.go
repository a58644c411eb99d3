package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// opCase is one row of TestOpPolicyDecide: a request, the policy that
// decides it, and the verdict wanted.
type opCase struct {
	name string

	// The request.
	proto      Protocol
	code       uint64
	substitute bool
	repair     bool
	opaque     bool
	settings   []Setting

	// The policy.
	pol OpPolicy

	// The verdict.
	allow   bool
	reason  string // a part of Reason when refused
	noSub   bool
	kept    []Setting
	dropped []string
}

var (
	buildPolicy      = OpPolicy{Key: "ci", Role: RoleBuild, ClientSettings: DefaultClientSettings}
	substitutePolicy = OpPolicy{Key: "cache", Role: RoleSubstitute, ClientSettings: DefaultClientSettings}
	trustedPolicy    = OpPolicy{Key: "root-ci", Role: RoleBuild, FullTrust: true, ClientSettings: DefaultClientSettings}
	shellPolicy      = OpPolicy{Key: "ops", Role: RoleShell, ClientSettings: DefaultClientSettings}
)

// Written out by hand from Nix's worker-protocol.hh and serve-protocol.hh
// rather than derived from workerOps and serveOps, so that a change of an
// op's class in ops.go shows up here.
var (
	// workerReadOps are the worker ops a substitute key may send.
	workerReadOps = []uint64{1, 6, 11, 13, 18, 19, 26, 29, 31, 33, 38, 40, 41, 43}
	// workerWriteOps are the worker ops only a build key may send.
	workerWriteOps = []uint64{7, 8, 9, 10, 21, 30, 32, 36, 39, 42, 44, 45, 46}
	// workerAdminOps change the builder: refused without full_trust.
	workerAdminOps = []uint64{12, 14, 20, 23, 34, 35, 37, 47}
	// workerObsoleteOps no client sends any more: refused without
	// full_trust.
	workerObsoleteOps = []uint64{3, 4, 5, 16, 22, 28}
	// serveReadOps are the serve commands a substitute key may send.
	serveReadOps = []uint64{1, 2, 3, 5, 7}
	// serveWriteOps are the serve commands only a build key may send.
	serveWriteOps = []uint64{4, 6, 8, 9}
)

// handOpCases are the cases that matter most, written out one by one.
func handOpCases() []opCase {
	const (
		setOptions      = 19
		collectGarbage  = 20
		buildPaths      = 9
		ensurePath      = 10
		addToStore      = 7
		queryValidPaths = 31
		addToStoreNar   = 39
		verifyStore     = 35
		serveBuildPaths = 6
	)
	hookAndSilence := []Setting{{"post-build-hook", "/tmp/pwn"}, {"max-silent-time", "3600"}}
	return []opCase{
		{
			name: "substitute AddToStoreNar", proto: ProtocolWorker, code: addToStoreNar, pol: substitutePolicy,
			reason: `key "cache" (role substitute) is read-only: AddToStoreNar refused`,
		},
		{
			name: "build AddToStoreNar", proto: ProtocolWorker, code: addToStoreNar, pol: buildPolicy,
			allow: true,
		},
		{
			name: "build CollectGarbage", proto: ProtocolWorker, code: collectGarbage, pol: buildPolicy,
			reason: "may not change the builder beyond copying and building: CollectGarbage refused",
		},
		{
			name: "build VerifyStore", proto: ProtocolWorker, code: verifyStore, repair: true, pol: buildPolicy,
			reason: "may not change the builder",
		},
		{
			name: "build BuildPaths", proto: ProtocolWorker, code: buildPaths, pol: buildPolicy,
			allow: true,
		},
		{
			name: "build BuildPaths with repair", proto: ProtocolWorker, code: buildPaths, repair: true, pol: buildPolicy,
			reason: "may not repair store paths: BuildPaths refused",
		},
		{
			name: "build AddToStoreNar with repair", proto: ProtocolWorker, code: addToStoreNar, repair: true, pol: buildPolicy,
			reason: "may not repair store paths: AddToStoreNar refused",
		},
		{
			name: "substitute BuildPaths of opaque paths", proto: ProtocolWorker, code: buildPaths, opaque: true, pol: substitutePolicy,
			allow: true,
		},
		{
			name: "substitute BuildPathsWithResults of opaque paths", proto: ProtocolWorker, code: 46, opaque: true, pol: substitutePolicy,
			allow: true,
		},
		{
			name: "substitute EnsurePath of opaque path", proto: ProtocolWorker, code: ensurePath, opaque: true, pol: substitutePolicy,
			allow: true,
		},
		{
			name: "substitute BuildPaths of derivations", proto: ProtocolWorker, code: buildPaths, pol: substitutePolicy,
			reason: "is read-only: BuildPaths refused",
		},
		{
			name: "substitute BuildPaths of opaque paths with repair", proto: ProtocolWorker, code: buildPaths, opaque: true, repair: true, pol: substitutePolicy,
			reason: "may not repair store paths: BuildPaths refused",
		},
		{
			// Opaque means nothing to an op that is not an ensure.
			name: "substitute AddToStore marked opaque", proto: ProtocolWorker, code: addToStore, opaque: true, pol: substitutePolicy,
			reason: "is read-only: AddToStore refused",
		},
		{
			name: "substitute serve BuildPaths even opaque", proto: ProtocolServe, code: serveBuildPaths, opaque: true, pol: substitutePolicy,
			reason: "is read-only: BuildPaths refused",
		},
		{
			// Serve op 9 shares its code with worker BuildPaths.
			name: "substitute serve AddToStoreNar even opaque", proto: ProtocolServe, code: 9, opaque: true, pol: substitutePolicy,
			reason: "is read-only: AddToStoreNar refused",
		},
		{
			name: "substitute serve ImportPaths", proto: ProtocolServe, code: 4, pol: substitutePolicy,
			reason: "is read-only: ImportPaths refused",
		},
		{
			name: "substitute QueryValidPaths with substitute", proto: ProtocolWorker, code: queryValidPaths, substitute: true, pol: substitutePolicy,
			allow: true, noSub: true,
		},
		{
			name: "substitute QueryValidPaths without substitute", proto: ProtocolWorker, code: queryValidPaths, pol: substitutePolicy,
			allow: true,
		},
		{
			name: "substitute serve QueryValidPaths with substitute", proto: ProtocolServe, code: 1, substitute: true, pol: substitutePolicy,
			allow: true, noSub: true,
		},
		{
			name: "build QueryValidPaths with substitute", proto: ProtocolWorker, code: queryValidPaths, substitute: true, pol: buildPolicy,
			allow: true,
		},
		{
			name: "build SetOptions with default client settings", proto: ProtocolWorker, code: setOptions, settings: hookAndSilence, pol: buildPolicy,
			allow: true, kept: []Setting{{"max-silent-time", "3600"}}, dropped: []string{"post-build-hook"},
		},
		{
			name: "substitute SetOptions with default client settings", proto: ProtocolWorker, code: setOptions, settings: hookAndSilence, pol: substitutePolicy,
			allow: true, kept: []Setting{{"max-silent-time", "3600"}}, dropped: []string{"post-build-hook"},
		},
		{
			name: "SetOptions in order sent", proto: ProtocolWorker, code: setOptions,
			settings: []Setting{{"keep-failed", "true"}, {"builders", "x"}, {"build-timeout", "60"}, {"timeout", "90"}, {"substituters", "http://evil"}},
			pol:      buildPolicy, allow: true,
			kept:    []Setting{{"keep-failed", "true"}, {"build-timeout", "60"}, {"timeout", "90"}},
			dropped: []string{"builders", "substituters"},
		},
		{
			name: "SetOptions with nil client settings", proto: ProtocolWorker, code: setOptions, settings: hookAndSilence,
			pol:   OpPolicy{Key: "ci", Role: RoleBuild},
			allow: true, dropped: []string{"post-build-hook", "max-silent-time"},
		},
		{
			name: "SetOptions without overrides", proto: ProtocolWorker, code: setOptions, pol: buildPolicy,
			allow: true,
		},
		{
			name: "full trust CollectGarbage", proto: ProtocolWorker, code: collectGarbage, pol: trustedPolicy,
			allow: true,
		},
		{
			name: "full trust BuildPaths with repair", proto: ProtocolWorker, code: buildPaths, repair: true, pol: trustedPolicy,
			allow: true,
		},
		{
			name: "full trust obsolete op", proto: ProtocolWorker, code: 3, pol: trustedPolicy,
			allow: true,
		},
		{
			name: "full trust SetOptions keeps every setting", proto: ProtocolWorker, code: setOptions, settings: hookAndSilence, pol: trustedPolicy,
			allow: true, kept: hookAndSilence,
		},
		{
			name: "full trust unknown op", proto: ProtocolWorker, code: 99, pol: trustedPolicy,
			reason: "op 99 refused: nixgate does not know this worker protocol operation",
		},
		{
			name: "full trust shell role", proto: ProtocolWorker, code: 1, pol: OpPolicy{Key: "ops", Role: RoleShell, FullTrust: true},
			reason: "may not use the Nix protocols: IsValidPath refused",
		},
		{
			name: "full trust does not widen a substitute key", proto: ProtocolWorker, code: 39, pol: OpPolicy{Key: "cache", Role: RoleSubstitute, FullTrust: true},
			reason: "is read-only: AddToStoreNar refused",
		},
		{
			name: "full trust without key", proto: ProtocolWorker, code: 1, pol: OpPolicy{Role: RoleBuild, FullTrust: true},
			reason: "no key: IsValidPath refused",
		},
		{
			name: "zero policy IsValidPath", proto: ProtocolWorker, code: 1,
			reason: "no key: IsValidPath refused",
		},
		{
			name: "zero policy serve QueryValidPaths", proto: ProtocolServe, code: 1,
			reason: "no key: QueryValidPaths refused",
		},
		{
			name: "zero policy SetOptions", proto: ProtocolWorker, code: setOptions, settings: hookAndSilence,
			reason: "no key: SetOptions refused",
		},
		{
			name: "key without role", proto: ProtocolWorker, code: 1, pol: OpPolicy{Key: "ci"},
			reason: "may not use the Nix protocols",
		},
		{
			name: "shell role IsValidPath", proto: ProtocolWorker, code: 1, pol: shellPolicy,
			reason: `key "ops" (role shell) may not use the Nix protocols: IsValidPath refused`,
		},
		{
			name: "shell role serve QueryPathInfos", proto: ProtocolServe, code: 2, pol: shellPolicy,
			reason: "may not use the Nix protocols: QueryPathInfos refused",
		},
		{
			name: "unknown worker op", proto: ProtocolWorker, code: 99, pol: buildPolicy,
			reason: "op 99 refused: nixgate does not know this worker protocol operation",
		},
		{
			name: "unknown serve op", proto: ProtocolServe, code: 99, pol: buildPolicy,
			reason: "does not know this serve protocol operation",
		},
		{
			// Worker op 15 is a gap in Nix's numbering.
			name: "worker op code gap", proto: ProtocolWorker, code: 15, pol: buildPolicy,
			reason: "does not know",
		},
		{
			name: "zero protocol", code: 1, pol: buildPolicy,
			reason: "does not know",
		},
		{
			name: "obsolete HasSubstitutes for build", proto: ProtocolWorker, code: 3, pol: buildPolicy,
			reason: "may not send an obsolete operation: HasSubstitutes refused",
		},
		{
			name: "obsolete ExportPath for substitute", proto: ProtocolWorker, code: 16, pol: substitutePolicy,
			reason: "may not send an obsolete operation: ExportPath refused",
		},
	}
}

// tableOpCases are a case for every op nixgate knows, for the build and
// substitute roles, with the verdict wanted taken from the lists above.
func tableOpCases(t *testing.T) []opCase {
	t.Helper()
	classes := []struct {
		proto       Protocol
		ops         map[uint64]opInfo
		read, write []uint64
	}{
		{ProtocolWorker, workerOps, workerReadOps, workerWriteOps},
		{ProtocolServe, serveOps, serveReadOps, serveWriteOps},
	}
	var cases []opCase
	for _, c := range classes {
		listed := slices.Concat(c.read, c.write)
		if c.proto == ProtocolWorker {
			listed = slices.Concat(listed, workerAdminOps, workerObsoleteOps)
		}
		slices.Sort(listed)
		if known := slices.Sorted(maps.Keys(c.ops)); !slices.Equal(listed, known) {
			t.Errorf("%s ops listed in the test %v; ops.go knows %v", c.proto, listed, known)
		}
		for _, code := range slices.Sorted(maps.Keys(c.ops)) {
			name := c.ops[code].name
			for _, pol := range []OpPolicy{substitutePolicy, buildPolicy} {
				tc := opCase{
					name:  fmt.Sprintf("table %s %d %s %s", c.proto, code, name, pol.Role),
					proto: c.proto, code: code, pol: pol,
				}
				switch {
				case slices.Contains(c.read, code):
					tc.allow = true
				case slices.Contains(c.write, code):
					tc.allow = pol.Role == RoleBuild
					tc.reason = "is read-only: " + name + " refused"
				case slices.Contains(workerAdminOps, code):
					tc.reason = "may not change the builder beyond copying and building: " + name + " refused"
				case slices.Contains(workerObsoleteOps, code):
					tc.reason = "may not send an obsolete operation: " + name + " refused"
				default:
					continue
				}
				cases = append(cases, tc)
			}
		}
	}
	return cases
}

func TestOpPolicyDecide(t *testing.T) {
	cases := slices.Concat(handOpCases(), tableOpCases(t))
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			req := OpRequest{
				Protocol:   tt.proto,
				Code:       tt.code,
				Substitute: tt.substitute,
				Repair:     tt.repair,
				Opaque:     tt.opaque,
				Settings:   tt.settings,
			}
			got := tt.pol.Decide(req)
			if got.Allow != tt.allow {
				t.Fatalf("Decide(%+v).Allow = %v (%q); want %v", req, got.Allow, got.Reason, tt.allow)
			}
			if tt.allow {
				if got.Reason != "" {
					t.Errorf("Decide(%+v).Reason = %q; want none when allowed", req, got.Reason)
				}
			} else {
				if !strings.Contains(got.Reason, tt.reason) {
					t.Errorf("Decide(%+v).Reason = %q; want it to contain %q", req, got.Reason, tt.reason)
				}
				if got.NoSubstitute || got.Settings != nil || got.Dropped != nil {
					t.Errorf("refused Decide(%+v) = %+v; want no settings or flags", req, got)
				}
			}
			if got.NoSubstitute != tt.noSub {
				t.Errorf("Decide(%+v).NoSubstitute = %v; want %v", req, got.NoSubstitute, tt.noSub)
			}
			if !slices.Equal(got.Settings, tt.kept) {
				t.Errorf("Decide(%+v).Settings = %q; want %q", req, got.Settings, tt.kept)
			}
			if !slices.Equal(got.Dropped, tt.dropped) {
				t.Errorf("Decide(%+v).Dropped = %q; want %q", req, got.Dropped, tt.dropped)
			}
		})
	}
}

func TestOpPolicyZeroRefusesEverything(t *testing.T) {
	var p OpPolicy
	for _, proto := range []Protocol{0, ProtocolServe, ProtocolWorker} {
		for code := uint64(0); code < 64; code++ {
			req := OpRequest{Protocol: proto, Code: code, Opaque: true, Settings: []Setting{{"max-silent-time", "1"}}}
			if v := p.Decide(req); v.Allow {
				t.Errorf("OpPolicy{}.Decide(%+v) allowed", req)
			}
		}
	}
}

func TestOpPolicyRefusalNamesOp(t *testing.T) {
	policies := []OpPolicy{{}, shellPolicy, substitutePolicy, buildPolicy, {Key: "k\nx", Role: RoleSubstitute}}
	for _, proto := range []Protocol{0, ProtocolServe, ProtocolWorker} {
		for code := uint64(0); code < 64; code++ {
			for _, pol := range policies {
				for _, flags := range []OpRequest{{}, {Repair: true}, {Opaque: true, Substitute: true}} {
					req := flags
					req.Protocol, req.Code = proto, code
					v := pol.Decide(req)
					if v.Allow {
						continue
					}
					name := OpName(proto, code)
					if v.Reason == "" || strings.ContainsAny(v.Reason, "\r\n") {
						t.Errorf("%+v.Decide(%+v).Reason = %q; want one non-empty line", pol, req, v.Reason)
					}
					if !strings.Contains(v.Reason, name) {
						t.Errorf("%+v.Decide(%+v).Reason = %q; want it to name %q", pol, req, v.Reason, name)
					}
				}
			}
		}
	}
}

func TestOpName(t *testing.T) {
	tests := []struct {
		proto Protocol
		code  uint64
		want  string
	}{
		{ProtocolWorker, 1, "IsValidPath"},
		{ProtocolWorker, 19, "SetOptions"},
		{ProtocolWorker, 39, "AddToStoreNar"},
		{ProtocolWorker, 47, "AddPermRoot"},
		{ProtocolServe, 1, "QueryValidPaths"},
		{ProtocolServe, 6, "BuildPaths"},
		{ProtocolServe, 9, "AddToStoreNar"},
		{ProtocolWorker, 0, "op 0"},
		{ProtocolWorker, 15, "op 15"},
		{ProtocolWorker, 99, "op 99"},
		{ProtocolServe, 10, "op 10"},
		{ProtocolServe, 39, "op 39"},
		{0, 1, "op 1"},
		{ProtocolWorker, 1<<64 - 1, "op 18446744073709551615"},
	}
	for _, tt := range tests {
		if got := OpName(tt.proto, tt.code); got != tt.want {
			t.Errorf("OpName(%s, %d) = %q; want %q", tt.proto, tt.code, got, tt.want)
		}
		if got, want := KnownOp(tt.proto, tt.code), !strings.HasPrefix(tt.want, "op "); got != want {
			t.Errorf("KnownOp(%s, %d) = %v; want %v", tt.proto, tt.code, got, want)
		}
	}
}
