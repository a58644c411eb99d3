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

// helloTail is the rest of Nix's worker hello at version v, after the
// feature set: its version (1.33), trust (1.35), then LAST.
func helloTail(v uint64) []byte {
	e := &enc{}
	if minor(v) >= 33 {
		e.str("2.8.0")
	}
	if minor(v) >= 35 {
		e.u64(2) // not trusted
	}
	return e.u64(stderrLast).b
}

// TestWorkerSetOptionsLimits: a capped key's session starts with
// nixgate's own SetOptions, and the client's SetOptions reaches the
// daemon capped: the fixed max-jobs, max silent time and cores, and the
// overrides under every name Nix takes for them, with the ones the
// fixed fields cannot carry added.
func TestWorkerSetOptionsLimits(t *testing.T) {
	lim := policy.BuildLimits{BuildTimeout: time.Minute, MaxSilentTime: 30 * time.Second, MaxLogSize: 1000, BuildCores: 4, MaxJobs: 2}
	pol := policy.OpPolicy{Key: "ci", Role: policy.RoleBuild, FullTrust: true, Limits: lim}
	// keepFailed, keepGoing, tryFallback, verbosity, maxBuildJobs,
	// maxSilentTime, useBuildHook, verboseBuild, logType,
	// printBuildTrace, buildCores, useSubstitutes
	head := func(jobs, silent, cores uint64) *enc {
		return (&enc{}).u64(19, 1, 1, 0, 5, jobs, silent, 1, 0, 0, 0, cores, 0)
	}
	for _, tc := range []struct {
		name       string
		sent, want []byte
	}{
		{"above every cap",
			head(8, 3600, 16).u64(1).str("build-timeout", "7200").b,
			head(2, 30, 4).u64(2).str("build-timeout", "60", "max-build-log-size", "1000").b},
		{"no limit asked (0; max-jobs 0 is no local builds and stays)",
			head(0, 0, 0).u64(0).b,
			head(0, 30, 4).u64(2).str("timeout", "60", "max-build-log-size", "1000").b},
		{"below every cap",
			head(1, 10, 2).u64(5).str("build-max-log-size", "10", "cores", "1", "max-jobs", "1", "max-silent-time", "5", "timeout", "20").b,
			head(1, 10, 2).u64(5).str("build-max-log-size", "10", "cores", "1", "max-jobs", "1", "max-silent-time", "5", "timeout", "20").b},
		{"overrides under their aliases, max-jobs auto",
			head(1, 10, 2).u64(5).str("build-cores", "0", "build-max-jobs", "auto", "build-max-silent-time", "600", "cores", "64", "max-build-log-size", "0").b,
			head(1, 10, 2).u64(6).str("build-cores", "4", "build-max-jobs", "2", "build-max-silent-time", "30", "cores", "4", "max-build-log-size", "1000", "timeout", "60").b},
	} {
		for _, v := range []uint64{1<<8 | 23, 1<<8 | 34, 1<<8 | 38} {
			hello := workerHello(v)
			r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: pol}, slices.Concat(hello, tc.sent), workerServerHello(v))
			if r.err != nil {
				t.Fatal(r.err)
			}
			want := slices.Concat(hello, sessionOptions(lim), tc.want)
			if !bytes.Equal(r.toNix, want) {
				t.Errorf("%s, %s: Nix got\n%x\nwant\n%x", tc.name, versionName(v), r.toNix, want)
			}
		}
	}
}

// TestSessionOptions: the SetOptions nixgate starts a capped session
// with, byte for byte: Nix's defaults with each limit in place, and the
// limits the fixed fields cannot carry as overrides under the names Nix
// 2.4-2.35 and Lix allow an untrusted client (timeout) or know
// (max-build-log-size).
func TestSessionOptions(t *testing.T) {
	for _, tc := range []struct {
		lim  policy.BuildLimits
		want []byte
	}{
		{policy.BuildLimits{BuildTimeout: 3 * time.Second},
			(&enc{}).u64(19, 0, 0, 0, 3, 1, 0, 1, 0, 0, 0, 0, 1).u64(1).str("timeout", "3").b},
		{policy.BuildLimits{MaxSilentTime: 90 * time.Second, MaxLogSize: 1 << 20},
			(&enc{}).u64(19, 0, 0, 0, 3, 1, 90, 1, 0, 0, 0, 0, 1).u64(1).str("max-build-log-size", "1048576").b},
		{policy.BuildLimits{BuildCores: 2, MaxJobs: 3},
			(&enc{}).u64(19, 0, 0, 0, 3, 3, 0, 1, 0, 0, 0, 2, 1).u64(0).b},
		{policy.BuildLimits{BuildTimeout: time.Hour, MaxSilentTime: time.Minute, MaxLogSize: 5, BuildCores: 1, MaxJobs: 1},
			(&enc{}).u64(19, 0, 0, 0, 3, 1, 60, 1, 0, 0, 0, 1, 1).u64(2).str("timeout", "3600", "max-build-log-size", "5").b},
	} {
		if got := sessionOptions(tc.lim); !bytes.Equal(got, tc.want) {
			t.Errorf("sessionOptions(%v) =\n%x\nwant\n%x", tc.lim, got, tc.want)
		}
	}
}

// TestNoSetOptionsNoEscape: a capped key's client that builds without a
// SetOptions of its own (as Nix's ssh-ng:// client always does) still
// builds under the limits: Nix gets nixgate's SetOptions before the
// client's first op, and its answer to it never reaches the client, so
// the session stays in step. When Nix refuses it, the build is refused
// with nixgate's error, Nix never sees it, and the session goes on.
func TestNoSetOptionsNoEscape(t *testing.T) {
	lim := policy.BuildLimits{BuildTimeout: 3 * time.Second}
	pol := policy.OpPolicy{Key: "ci", Role: policy.RoleBuild, ClientSettings: policy.DefaultClientSettings, Limits: lim}
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	buildReply := (&enc{}).u64(stderrLast, 1).b
	for _, v := range []uint64{1<<8 | 23, 1<<8 | 26, 1<<8 | 34, 1<<8 | 35, 1<<8 | 38} {
		var feats []string
		if minor(v) >= 38 {
			feats = []string{FeatureRealisationWithPath}
		}
		hello := workerHello(v, feats...)
		client := slices.Concat(hello, build, sentinel(policy.ProtocolWorker))
		// Nix's hello, two log messages and LAST for the SetOptions (a
		// warning, as Nix 2.20 and later give an untrusted client), the
		// build's answer.
		optionsAnswer := (&enc{}).u64(stderrNext).str("warning: ignoring the client-specified setting 'max-build-log-size'").
			u64(stderrStartActivity, 7, 3, 0).str("x").u64(2, 0, 5, 1).str("y").u64(0).
			u64(stderrResult, 7, 101).u64(1, 1).str("line").
			u64(stderrStopActivity, 7).
			u64(stderrLast).b
		server := slices.Concat(workerServerHello(v, feats...), helloTail(v), optionsAnswer)
		r := filterSessionAnswering(t, Options{Protocol: policy.ProtocolWorker, Policy: pol}, client, server,
			answer{after: len(hello) + len(sessionOptions(lim)) + len(build), b: buildReply})
		if r.err != nil {
			t.Fatalf("%s: %v", versionName(v), r.err)
		}
		if want := slices.Concat(hello, sessionOptions(lim), build, sentinel(policy.ProtocolWorker)); !bytes.Equal(r.toNix, want) {
			t.Errorf("%s: Nix got\n%x\nwant\n%x", versionName(v), r.toNix, want)
		}
		if want := slices.Concat(workerServerHello(v, feats...), helloTail(v), buildReply); !bytes.Equal(r.toClient, want) {
			t.Errorf("%s: the client got\n%x\nwant\n%x", versionName(v), r.toClient, want)
		}

		// Nix refuses the SetOptions: the build is refused, the sentinel
		// still passes.
		refusal := WorkerError(v, "cannot set the options")
		server = slices.Concat(workerServerHello(v, feats...), helloTail(v), refusal)
		r = filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: pol}, client, server)
		if r.err != nil {
			t.Fatalf("%s: %v", versionName(v), r.err)
		}
		if want := slices.Concat(hello, sessionOptions(lim), sentinel(policy.ProtocolWorker)); !bytes.Equal(r.toNix, want) {
			t.Errorf("%s: Nix got\n%x\nwant\n%x (no build)", versionName(v), r.toNix, want)
		}
		msgs := workerErrorMessages(r.toClient, v)
		if want := []string{"nixgate: Nix did not take the key's build limits: cannot set the options"}; !slices.Equal(msgs, want) {
			t.Errorf("%s: the client got errors %q; want %q", versionName(v), msgs, want)
		}
		if r.audit.RefusedCount != 1 || r.audit.Builds != 0 {
			t.Errorf("%s: audit refused %d, builds %d; want 1, 0", versionName(v), r.audit.RefusedCount, r.audit.Builds)
		}
	}
}

// TestNoLimitsNoSetOptions: a key without build limits gets no
// SetOptions of nixgate's: the client's bytes reach Nix unchanged.
func TestNoLimitsNoSetOptions(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	client := slices.Concat(workerHello(v), build)
	r := filterSessionAnswering(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey}, client, slices.Concat(workerServerHello(v), helloTail(v)),
		answer{after: len(client), b: (&enc{}).u64(stderrLast, 1).b})
	if r.err != nil || !bytes.Equal(r.toNix, client) {
		t.Errorf("Nix got %x (err %v); want the client's bytes", r.toNix, r.err)
	}
}
