package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is set for release builds with -ldflags "-X main.version=0.4.0"
// (the Makefile sets it from git describe). Empty means the module version
// of the build info, or "devel" for a build from a checkout.
var version string

// versionString is the version, with the VCS revision when the build info
// has one (go build in a git clone; not in a git worktree, nor with
// -buildvcs=false) and the Go version.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	return formatVersion(version, bi)
}

func formatVersion(ldflags string, bi *debug.BuildInfo) string {
	v := ldflags
	if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (revision " + rev
		if modified == "true" {
			v += ", modified"
		}
		v += ")"
	}
	if bi.GoVersion != "" {
		v += " " + bi.GoVersion
	}
	return v
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", "Prints the version: the release (set at build time), or the module\nversion and VCS revision the binary was built from.\n\nExample:\n  nixgate version", stdout, stderr)
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fmt.Fprintf(stdout, "nixgate %s\n", versionString())
	return exitOK
}
