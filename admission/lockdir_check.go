package admission

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/nixgate/nixgate/policy"
)

// NeedsLockDir reports whether a session of key under cfg has a limit
// that exec mode keeps in its lock directory (OpenRuntimeDir): the key's
// max_sessions, or, for a build key, a build-slot limit ([admission]
// max_builds or the key's own max_builds). A nil key has none.
func NeedsLockDir(cfg *policy.Config, key *policy.Key) bool {
	if key == nil {
		return false
	}
	builds := key.Role == policy.RoleBuild && (cfg.Admission.MaxBuilds > 0 || key.MaxBuilds > 0)
	return key.MaxSessions > 0 || builds
}

// RuntimeDirCheckCommand is the hidden subcommand that nixgate check
// runs nixgate as, as the build account, to learn which lock directory
// exec mode would use: OpenRuntimeDir answers only for the calling
// process's own uid (what it may make, what it owns).
const RuntimeDirCheckCommand = "admission-check-runtime-dir"

// RuntimeDirReport is what CheckRuntimeDir found: the lock directory
// exec mode would use, or why there is none it can use.
type RuntimeDirReport struct {
	// Path is the directory OpenRuntimeDir opened; empty when it failed.
	Path string `json:"path,omitempty"`
	// Error is why OpenRuntimeDir failed, its line (policy.Line); empty
	// when it did not.
	Error string `json:"error,omitempty"`
}

// CheckRuntimeDir opens and closes the lock directory of stateDir as
// exec mode does (OpenRuntimeDir), as the calling process, making it
// when it is missing, as exec mode's first session would.
func CheckRuntimeDir(stateDir string) RuntimeDirReport {
	d, err := OpenRuntimeDir(stateDir)
	if err != nil {
		return RuntimeDirReport{Error: policy.Line(err)}
	}
	d.Close()
	return RuntimeDirReport{Path: d.Path}
}

// RuntimeDirCheckMain is RuntimeDirCheckCommand: it runs CheckRuntimeDir
// for STATE_DIR (its one argument) and prints the report as JSON, exit
// status 0 whether or not a directory could be used; 2 and a line on
// stderr for a bad command line.
func RuntimeDirCheckMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "admission: usage: "+RuntimeDirCheckCommand+" STATE_DIR")
		return 2
	}
	json.NewEncoder(stdout).Encode(CheckRuntimeDir(args[0]))
	return 0
}
