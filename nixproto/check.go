package nixproto

import (
	"strconv"
	"strings"
)

// What nixgate checks before an operation with a payload goes to Nix.
//
// Nix's daemon reads an operation's arguments, starts answering it
// (logger->startWork), and only then reads its framed payload. An error
// in between is sent to the client, and the daemon reads its next
// operation from wherever its input stands: at the first frame header,
// inside what the client sent as payload. So whatever Nix checks there
// nixgate checks first, by the strictest rule of any Nix it accepts, and
// refuses itself (reading the payload to its end, so that client and
// nixgate stay in step) what Nix might refuse:
//
//   - AddToStore (1.25 and later) parses its content-address method
//     there: only the forms every Nix parses pass (validCAMethod).
//   - AddBuildLog refuses a client Nix does not trust there: it passes
//     only when Nix said, in its hello (1.35), that it trusts the client.
//
// Everything else Nix checks in an operation's arguments it checks before
// it starts answering, and an error there ends the connection. nixgate
// still checks the store paths and names of the operations that carry a
// payload (validStorePath, validName), so that what it passes is what
// Nix takes.

// base32Chars are the digits of Nix's base-32.
const base32Chars = "0123456789abcdfghijklmnpqrsvwxyz"

// hashPartLen is the length of a store path's hash part.
const hashPartLen = 32

// maxNameLen is the longest name of a store path.
const maxNameLen = 211

// validName reports whether name is a store path name (or an output
// name) Nix takes: 1 to 211 characters of letters, digits and +-._?=,
// not "." or "..", not starting with ".-" or "..-" (Nix 2.21 and later;
// 2.8 takes those too, and only 2.19 and 2.20 refused any leading dot,
// which Nix then took back).
func validName(name string) bool {
	switch {
	case name == "" || len(name) > maxNameLen, name == ".", name == "..",
		strings.HasPrefix(name, ".-"), strings.HasPrefix(name, "..-"):
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case strings.IndexByte("+-._?=", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validStorePath reports whether p is a store path in canonical form:
// an absolute store directory, a slash and a valid base name, with no
// empty, "." or ".." component anywhere. Nix cleans a path (canonPath)
// before it reads it, so "/nix/store/…-x.drv/" is that derivation to
// Nix: nixgate judges only paths Nix reads exactly as sent. Which store
// directory is Nix's to check (it does so before it answers).
func validStorePath(p string) bool {
	slash := strings.LastIndexByte(p, '/')
	if slash <= 0 || p[0] != '/' {
		return false
	}
	for _, c := range strings.Split(p[1:slash], "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return validBaseName(p[slash+1:])
}

// checkDerivedPath is why a path of BuildPaths, BuildPathsWithResults
// or QueryMissing (and the serve protocol's BuildPaths) is refused, or
// empty when it may pass. Before worker protocol 1.30, and always in the
// serve protocol, it is a store path with, after the first "!", a list of
// outputs; from 1.30 a store path, or a derivation, "!" and "*" or a list
// of outputs. Every form must be one every Nix reads the same way: a
// canonical store path (validStorePath), outputs only of a derivation,
// output names Nix takes (no empty ones: Nix 2.8 reads "drv!" as all
// outputs), and at most one "!" (Nix 2.8 splits at the first, later Nix
// at the last, for dynamic derivations).
func checkDerivedPath(p string, legacy bool) string {
	drv, outputs, withOutputs := strings.Cut(p, "!")
	switch {
	case !validStorePath(drv):
		return "sent " + quoteShort(p) + ", not a store path in canonical form"
	case !withOutputs:
		return ""
	case !strings.HasSuffix(drv, ".drv"):
		// Nix 2.8 aborts on it.
		return "sent outputs of " + quoteShort(drv) + ", not a derivation"
	case !legacy && outputs == "*":
		return ""
	}
	for _, name := range strings.Split(outputs, ",") {
		if !validName(name) {
			return "sent outputs " + quoteShort(outputs) + " of " + quoteShort(drv) + ", not a list of output names"
		}
	}
	return ""
}

// validBaseName reports whether base is a store path's base name: a
// 32-character hash part in Nix's base-32, a dash and a valid name.
func validBaseName(base string) bool {
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return false
	}
	for i := 0; i < hashPartLen; i++ {
		if strings.IndexByte(base32Chars, base[i]) < 0 {
			return false
		}
	}
	return validName(base[hashPartLen+1:])
}

// hashAlgos are the hash algorithms every Nix in range knows without an
// experimental feature.
var hashAlgos = []string{"md5", "sha1", "sha256", "sha512"}

// validCAMethod reports whether m is a content-address method, as
// AddToStore (1.25 and later) carries it, that every Nix in range
// parses: "text:sha256", or "fixed:" with "r:" or not and a hash
// algorithm of hashAlgos. Git hashing and BLAKE3 need experimental
// features and are refused.
func validCAMethod(m string) bool {
	if m == "text:sha256" {
		return true
	}
	rest, ok := strings.CutPrefix(m, "fixed:")
	if !ok {
		return false
	}
	rest, _ = strings.CutPrefix(rest, "r:")
	for _, a := range hashAlgos {
		if rest == a {
			return true
		}
	}
	return false
}

// checkAddToStore is why AddToStore (1.25 and later) is refused before
// Nix sees it, or empty when it may pass.
func checkAddToStore(name, method string, refs []string) string {
	switch {
	case !validName(name):
		return "sent a name that is not a store path name, " + quoteShort(name)
	case !validCAMethod(method):
		return "sent content-address method " + quoteShort(method) + ", not one every Nix accepts"
	}
	for _, r := range refs {
		if !validStorePath(r) {
			return "sent reference " + quoteShort(r) + ", not a store path"
		}
	}
	return ""
}

// quoteShort quotes what a client sent for a message, cut to 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "…"
	}
	return strconv.Quote(s)
}
