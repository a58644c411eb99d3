package policy

import (
	"fmt"
	"slices"
	"strconv"
)

// Protocol is one of the two Nix protocols nixgate carries.
type Protocol int

// The protocols. The zero Protocol is none: an OpPolicy refuses its ops.
const (
	// ProtocolServe is nix-store --serve, spoken by ssh:// stores.
	ProtocolServe Protocol = iota + 1
	// ProtocolWorker is the daemon's worker protocol, spoken by
	// nix-daemon --stdio for ssh-ng:// stores.
	ProtocolWorker
)

// String returns the protocol's name.
func (p Protocol) String() string {
	switch p {
	case ProtocolServe:
		return "serve"
	case ProtocolWorker:
		return "worker"
	}
	return "unknown"
}

// opClass is what an operation does to the builder, which decides which
// roles may send it.
type opClass int

const (
	// classRead reads the store: every role may send it.
	classRead opClass = iota + 1
	// classWrite copies into the store or builds: the build role.
	classWrite
	// classAdmin changes the builder beyond copying and building
	// (garbage collection, roots, signatures, store verification) or
	// lists all of it: refused for every role without full_trust.
	classAdmin
	// classObsolete is parsed but sent by no client of a protocol
	// version nixgate speaks: refused without full_trust.
	classObsolete
)

type opInfo struct {
	name  string
	class opClass
}

// workerOps are the worker protocol's operations that nixgate can parse,
// by op code (Nix's worker-protocol.hh).
var workerOps = map[uint64]opInfo{
	1:  {"IsValidPath", classRead},
	3:  {"HasSubstitutes", classObsolete},
	4:  {"QueryPathHash", classObsolete},
	5:  {"QueryReferences", classObsolete},
	6:  {"QueryReferrers", classRead},
	7:  {"AddToStore", classWrite},
	8:  {"AddTextToStore", classWrite},
	9:  {"BuildPaths", classWrite},
	10: {"EnsurePath", classWrite},
	11: {"AddTempRoot", classRead},
	12: {"AddIndirectRoot", classAdmin},
	13: {"SyncWithGC", classRead},
	14: {"FindRoots", classAdmin},
	16: {"ExportPath", classObsolete},
	18: {"QueryDeriver", classRead},
	19: {"SetOptions", classRead},
	20: {"CollectGarbage", classAdmin},
	21: {"QuerySubstitutablePathInfo", classWrite},
	22: {"QueryDerivationOutputs", classObsolete},
	23: {"QueryAllValidPaths", classAdmin},
	26: {"QueryPathInfo", classRead},
	28: {"QueryDerivationOutputNames", classObsolete},
	29: {"QueryPathFromHashPart", classRead},
	30: {"QuerySubstitutablePathInfos", classWrite},
	31: {"QueryValidPaths", classRead},
	32: {"QuerySubstitutablePaths", classWrite},
	33: {"QueryValidDerivers", classRead},
	34: {"OptimiseStore", classAdmin},
	35: {"VerifyStore", classAdmin},
	36: {"BuildDerivation", classWrite},
	37: {"AddSignatures", classAdmin},
	38: {"NarFromPath", classRead},
	39: {"AddToStoreNar", classWrite},
	40: {"QueryMissing", classRead},
	41: {"QueryDerivationOutputMap", classRead},
	42: {"RegisterDrvOutput", classWrite},
	43: {"QueryRealisation", classRead},
	44: {"AddMultipleToStore", classWrite},
	45: {"AddBuildLog", classWrite},
	46: {"BuildPathsWithResults", classWrite},
	47: {"AddPermRoot", classAdmin},
}

// serveOps are the serve protocol's commands (Nix's serve-protocol.hh).
var serveOps = map[uint64]opInfo{
	1: {"QueryValidPaths", classRead},
	2: {"QueryPathInfos", classRead},
	3: {"DumpStorePath", classRead},
	4: {"ImportPaths", classWrite},
	5: {"ExportPaths", classRead},
	6: {"BuildPaths", classWrite},
	7: {"QueryClosure", classRead},
	8: {"BuildDerivation", classWrite},
	9: {"AddToStoreNar", classWrite},
}

func lookupOp(p Protocol, code uint64) (opInfo, bool) {
	var info opInfo
	var ok bool
	switch p {
	case ProtocolWorker:
		info, ok = workerOps[code]
	case ProtocolServe:
		info, ok = serveOps[code]
	}
	return info, ok
}

// OpName returns the name of op code in protocol p, as Nix's sources
// spell it, or "op N" for a code nixgate does not know.
func OpName(p Protocol, code uint64) string {
	if info, ok := lookupOp(p, code); ok {
		return info.name
	}
	return "op " + strconv.FormatUint(code, 10)
}

// KnownOp reports whether nixgate can parse op code of protocol p. An op
// it cannot parse ends the session, since nothing tells where it ends.
func KnownOp(p Protocol, code uint64) bool {
	_, ok := lookupOp(p, code)
	return ok
}

// Setting is one name = value override of the worker protocol's
// SetOptions.
type Setting struct {
	Name, Value string
}

// OpRequest is one operation as a client sent it: what the stream filter
// read of it that a decision needs.
type OpRequest struct {
	// Protocol is the protocol the op was sent in.
	Protocol Protocol
	// Code is the op code.
	Code uint64
	// Substitute is set when a QueryValidPaths asks the builder to
	// substitute the paths it does not have.
	Substitute bool
	// Repair is set when the op asks to repair store paths (a build mode
	// or repair flag of 1, VerifyStore's repair).
	Repair bool
	// Settings are a SetOptions op's overrides, in the order sent.
	Settings []Setting
	// Opaque is set when a BuildPaths, BuildPathsWithResults or
	// EnsurePath names only store paths, no derivation outputs: it asks
	// Nix to make sure they are valid, which builds nothing (Nix's
	// nix copy --from sends this over ssh-ng://).
	Opaque bool
}

// OpVerdict is the decision on one operation. The zero OpVerdict refuses.
type OpVerdict struct {
	// Allow reports whether the op reaches Nix.
	Allow bool
	// Reason is the line the client sees when the op is refused.
	Reason string
	// NoSubstitute is set when the op must reach Nix with its substitute
	// flag cleared.
	NoSubstitute bool
	// Settings are the SetOptions overrides to pass on; the others are
	// dropped. Nil passes none.
	Settings []Setting
	// Dropped names the SetOptions overrides that were dropped.
	Dropped []string
}

// DefaultClientSettings are the SetOptions overrides a client may send
// when the configuration names none: a build's time limits and keeping a
// failed build's directory. Nix sends a setting under its own name
// ("timeout"); "build-timeout" is its old alias, which Lix and older
// clients may send. (Nix's own ssh-ng:// store sends no SetOptions.)
var DefaultClientSettings = []string{"max-silent-time", "timeout", "build-timeout", "keep-failed"}

// OpPolicy decides the protocol operations of one session. The zero
// OpPolicy refuses every operation.
type OpPolicy struct {
	// Key is the name of the session's key, for messages.
	Key string
	// Role is the key's role.
	Role Role
	// FullTrust passes every operation nixgate can parse and every
	// SetOptions override, as if nixgate were not there (the key's
	// full_trust setting). It applies to the build role only.
	FullTrust bool
	// ClientSettings are the SetOptions overrides that pass. Nil passes
	// none.
	ClientSettings []string
	// Limits cap the key's builds; the stream filter rewrites the build
	// options the client sends. The zero BuildLimits caps nothing.
	Limits BuildLimits
}

// Decide decides one operation.
func (p OpPolicy) Decide(r OpRequest) OpVerdict {
	name := OpName(r.Protocol, r.Code)
	info, known := lookupOp(r.Protocol, r.Code)
	who := fmt.Sprintf("key %q (role %s)", p.Key, p.Role)
	refuse := func(why string) OpVerdict {
		return OpVerdict{Reason: fmt.Sprintf("%s %s: %s refused", who, why, name)}
	}
	if !known {
		return OpVerdict{Reason: fmt.Sprintf("%s refused: nixgate does not know this %s protocol operation", name, r.Protocol)}
	}
	if p.Key == "" {
		return OpVerdict{Reason: fmt.Sprintf("no key: %s refused", name)}
	}
	if p.Role != RoleBuild && p.Role != RoleSubstitute {
		return refuse("may not use the Nix protocols")
	}
	if p.FullTrust && p.Role == RoleBuild {
		return OpVerdict{Allow: true, Settings: slices.Clone(r.Settings)}
	}
	switch info.class {
	case classAdmin:
		return refuse("may not change the builder beyond copying and building")
	case classObsolete:
		return refuse("may not send an obsolete operation")
	case classWrite:
		if p.Role != RoleBuild && !(r.Opaque && ensures(r)) {
			return refuse("is read-only")
		}
		if r.Repair {
			return refuse("may not repair store paths")
		}
	case classRead:
	default:
		return refuse("may not send this operation")
	}
	v := OpVerdict{Allow: true}
	if r.Substitute && p.Role != RoleBuild {
		v.NoSubstitute = true
	}
	for _, s := range r.Settings {
		if slices.Contains(p.ClientSettings, s.Name) {
			v.Settings = append(v.Settings, s)
		} else {
			v.Dropped = append(v.Dropped, s.Name)
		}
	}
	return v
}

// ensures reports whether r is one of the ops that, for opaque paths,
// only make sure paths are valid.
func ensures(r OpRequest) bool {
	if r.Protocol != ProtocolWorker {
		return false
	}
	switch r.Code {
	case 9, 10, 46: // BuildPaths, EnsurePath, BuildPathsWithResults
		return true
	}
	return false
}

// Writes reports whether op code of protocol p adds to the store or
// builds (what a read-only key may not do).
func Writes(p Protocol, code uint64) bool {
	info, _ := lookupOp(p, code)
	return info.class == classWrite
}
