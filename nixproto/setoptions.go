package nixproto

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"

	"github.com/nixgate/nixgate/policy"
)

// SetOptions (worker op 19) carries twelve integers before its
// overrides: keepFailed, keepGoing, tryFallback, verbosity, maxBuildJobs,
// maxSilentTime, useBuildHook, verboseBuild, logType, printBuildTrace,
// buildCores, useSubstitutes (remote-store.cc, daemon.cc: Nix 2.4-2.35).
// These are the offsets, in an op's raw bytes (the op code first), of the
// ones the key's build limits cap.
const (
	setOptionsJobs   = 8 + 4*8
	setOptionsSilent = 8 + 5*8
	setOptionsCores  = 8 + 10*8
)

// Nix's verbosity levels, as SetOptions carries them.
const (
	lvlError = 0
	lvlInfo  = 3
)

// capSetOptions puts lim on the fixed fields of a SetOptions whose raw
// bytes are b.
func capSetOptions(b []byte, lim policy.BuildLimits) {
	field := func(at int, cap func(uint64) uint64) {
		binary.LittleEndian.PutUint64(b[at:], cap(binary.LittleEndian.Uint64(b[at:])))
	}
	field(setOptionsJobs, lim.CapMaxJobs)
	field(setOptionsSilent, lim.CapMaxSilentTime)
	field(setOptionsCores, lim.CapCores)
}

// limitSetting is a Nix setting a build limit caps: its name, the
// aliases Nix also takes for it (globals.hh, Nix 2.4-2.35 and Lix), the
// cap, and whether SetOptions needs an override for it when the client
// sent none (the ones its fixed fields do not carry).
type limitSetting struct {
	name    string
	aliases []string
	cap     func(policy.BuildLimits) func(uint64) uint64
	set     func(policy.BuildLimits) bool
	add     bool
}

var limitSettings = []limitSetting{
	{"timeout", []string{"build-timeout"},
		func(l policy.BuildLimits) func(uint64) uint64 { return l.CapBuildTimeout },
		func(l policy.BuildLimits) bool { return l.BuildTimeout > 0 }, true},
	{"max-silent-time", []string{"build-max-silent-time"},
		func(l policy.BuildLimits) func(uint64) uint64 { return l.CapMaxSilentTime },
		func(l policy.BuildLimits) bool { return l.MaxSilentTime > 0 }, false},
	{"max-build-log-size", []string{"build-max-log-size"},
		func(l policy.BuildLimits) func(uint64) uint64 { return l.CapMaxLogSize },
		func(l policy.BuildLimits) bool { return l.MaxLogSize > 0 }, true},
	{"cores", []string{"build-cores"},
		func(l policy.BuildLimits) func(uint64) uint64 { return l.CapCores },
		func(l policy.BuildLimits) bool { return l.BuildCores > 0 }, false},
	{"max-jobs", []string{"build-max-jobs"},
		func(l policy.BuildLimits) func(uint64) uint64 { return l.CapMaxJobs },
		func(l policy.BuildLimits) bool { return l.MaxJobs > 0 }, false},
}

// capSettings puts lim on the overrides that carry a build limit, under
// any of its names, and adds the ones SetOptions' fixed fields do not
// carry (timeout, max-build-log-size) when the client left them out.
// A value that is not a number (max-jobs' "auto") is taken as above
// every cap.
func capSettings(in []policy.Setting, lim policy.BuildLimits) []policy.Setting {
	out := slices.Clone(in)
	for _, c := range limitSettings {
		if !c.set(lim) {
			continue
		}
		capf := c.cap(lim)
		found := false
		for i, s := range out {
			if s.Name == c.name || slices.Contains(c.aliases, s.Name) {
				n, err := strconv.ParseUint(s.Value, 10, 64)
				if err != nil {
					n = math.MaxUint64
				}
				out[i].Value = strconv.FormatUint(capf(n), 10)
				found = true
			}
		}
		if !found && c.add {
			out = append(out, policy.Setting{Name: c.name, Value: strconv.FormatUint(capf(0), 10)})
		}
	}
	return out
}

// sessionOptions returns the SetOptions nixgate sends Nix at the start
// of a worker session whose key has build limits, before anything of
// the client's: a client that sends none (Nix's ssh-ng:// client never
// does) would otherwise build with the settings Nix started with, which
// in a daemon's case are the daemon's own. The fields carry Nix's
// defaults (no keep-failed, keep-going or fallback; verbosity info;
// build output shown; substitutes used; one job; every core), with each
// limit in place of its default; the overrides carry the limits the
// fixed fields cannot. A client's own SetOptions comes later and
// replaces it, capped in turn.
func sessionOptions(lim policy.BuildLimits) []byte {
	jobs := uint64(1)
	if lim.MaxJobs > 0 {
		jobs = lim.MaxJobs
	}
	b := appendU64(nil, 19)
	for _, v := range []uint64{
		0, 0, 0, // keepFailed, keepGoing, tryFallback
		lvlInfo,
		jobs,
		lim.CapMaxSilentTime(0),
		1,        // useBuildHook (obsolete)
		lvlError, // verboseBuild: build output shown
		0, 0,     // logType, printBuildTrace (obsolete)
		lim.CapCores(0),
		1, // useSubstitutes
	} {
		b = appendU64(b, v)
	}
	settings := capSettings(nil, lim)
	b = appendU64(b, uint64(len(settings)))
	for _, s := range settings {
		b = appendString(appendString(b, s.Name), s.Value)
	}
	return b
}
