package policy

import (
	"path"
	"regexp"
	"slices"
	"strings"
)

// Program is a Nix program nixgate runs. The zero Program is none.
type Program string

// The programs nixgate runs.
const (
	NixStore  Program = "nix-store"
	NixDaemon Program = "nix-daemon"
)

// Invocation is a recognised Nix remote command.
type Invocation struct {
	// Program is the program the client asked for, whatever its argv[0]
	// spelling (an absolute path, or "nix daemon").
	Program Program
	// Write is set for nix-store --serve --write.
	Write bool
	// Store is the client's --store value; empty when it sent none.
	Store string
	// ProcessOps is set for nix-daemon --process-ops (mounted-ssh-ng://).
	ProcessOps bool
}

// storeBinRE matches the bin directory of a Nix package in the store, as in
// remote-program=/nix/store/…-nix-2.18.1/bin/nix-store.
var storeBinRE = regexp.MustCompile(`^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+/bin$`)

// MatchCommand recognises argv as one of the commands Nix, Lix and Hydra
// send to a remote store, matching the whole argv:
//
//	nix-store --serve [--write] [--store S]
//	nix-daemon --stdio [--store S] [--process-ops]
//	nix daemon --stdio [--store S] [--process-ops]
//
// argv[0] may also be an absolute path whose directory is one of binDirs,
// a directory of DefaultBinDirs, or a Nix package's bin directory in
// /nix/store. Anything else is an error that says what did not match.
func MatchCommand(argv []string, binDirs []string) (Invocation, error) {
	if len(argv) == 0 {
		return Invocation{}, ErrEmptyCommand
	}
	prog, rest, err := matchProgram(argv, binDirs)
	if err != nil {
		return Invocation{}, err
	}
	inv := Invocation{Program: prog}
	switch prog {
	case NixStore:
		if len(rest) == 0 || rest[0] != "--serve" {
			return Invocation{}, errorf("nix-store is only accepted as nix-store --serve [--write] [--store URL], not %q", strings.Join(argv, " "))
		}
		rest = rest[1:]
		if len(rest) > 0 && rest[0] == "--write" {
			inv.Write = true
			rest = rest[1:]
		}
		rest, inv.Store, err = matchStore(rest)
		if err != nil {
			return Invocation{}, err
		}
	case NixDaemon:
		if len(rest) == 0 || rest[0] != "--stdio" {
			return Invocation{}, errorf("nix-daemon is only accepted as nix-daemon --stdio [--store URL], not %q", strings.Join(argv, " "))
		}
		rest = rest[1:]
		rest, inv.Store, err = matchStore(rest)
		if err != nil {
			return Invocation{}, err
		}
		if len(rest) > 0 && rest[0] == "--process-ops" {
			inv.ProcessOps = true
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		return Invocation{}, errorf("%s does not accept %q here", prog, rest[0])
	}
	return inv, nil
}

// matchStore takes an optional leading "--store URL".
func matchStore(args []string) (rest []string, store string, err error) {
	if len(args) == 0 || args[0] != "--store" {
		return args, "", nil
	}
	if len(args) < 2 || args[1] == "" {
		return nil, "", errorf("--store needs a store URL")
	}
	return args[2:], args[1], nil
}

// matchProgram recognises argv[0] (and "daemon" after "nix") and returns
// the remaining arguments.
func matchProgram(argv, binDirs []string) (Program, []string, error) {
	name := argv[0]
	if strings.Contains(name, "/") {
		if err := checkProgramPath(name, binDirs); err != nil {
			return "", nil, err
		}
		name = path.Base(name)
	}
	switch name {
	case "nix-store":
		return NixStore, argv[1:], nil
	case "nix-daemon":
		return NixDaemon, argv[1:], nil
	case "nix":
		if len(argv) > 1 && argv[1] == "daemon" {
			return NixDaemon, argv[2:], nil
		}
		return "", nil, errorf("of the nix command only \"nix daemon --stdio\" is accepted, not %q", strings.Join(argv, " "))
	}
	return "", nil, errorf("%q is not a Nix remote-store program (nix-store --serve or nix-daemon --stdio)", argv[0])
}

// checkProgramPath accepts an absolute argv[0] only inside the Nix
// directories. nixgate never runs it: it runs its own resolved binary.
func checkProgramPath(p string, binDirs []string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return errorf("program path %q is not a clean absolute path", p)
	}
	dir := path.Dir(p)
	if slices.Contains(binDirs, dir) || slices.Contains(DefaultBinDirs, dir) || storeBinRE.MatchString(dir) {
		return nil
	}
	return errorf("program path %q is outside the Nix directories", p)
}
