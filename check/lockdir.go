package check

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// checkLockDir checks, in exec mode, the lock directory that keeps a
// key's max_sessions and the build slots across exec mode's processes,
// for the keys that have such a limit (admission.NeedsLockDir, as exec
// mode asks). It opens it as exec mode does (admission.CheckRuntimeDir),
// as the build account — here when this is the account, otherwise in
// nixgate run as the account (admission.RuntimeDirCheckCommand) — and so
// makes it when it is missing, as exec mode's first such session would.
// No usable directory fails: exec mode refuses those keys' sessions.
func checkLockDir(cfg *policy.Config, a *account) []Result {
	var limited []string
	for i := range cfg.Keys {
		if admission.NeedsLockDir(cfg, &cfg.Keys[i]) {
			limited = append(limited, cfg.Keys[i].Name)
		}
	}
	if len(limited) == 0 {
		return []Result{{"lock directory", OK, "not needed: no key has max_sessions or a build-slot limit (max_builds)", ""}}
	}
	keys := strings.Join(limited, ", ")
	cred, err := a.runAs()
	if err != nil {
		return []Result{{"lock directory", Warn, fmt.Sprintf("not checked (keys %s have max_sessions or max_builds, which exec mode keeps in it): %v", keys, err), ""}}
	}
	var r admission.RuntimeDirReport
	if cred == nil {
		r = admission.CheckRuntimeDir(cfg.Serve.StateDir)
	} else {
		out, err := sandbox.RunSelfAs(cred, admission.RuntimeDirCheckCommand, cfg.Serve.StateDir)
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil {
			return []Result{{"lock directory", Warn, fmt.Sprintf("not checked as %s (keys %s have max_sessions or max_builds): %s", a.name, keys, policy.Line(err)), ""}}
		}
	}
	if r.Error != "" {
		// state_dir/run, when it is the account's, is used first.
		fix := "set state_dir to a directory of its own for nixgate"
		if cfg.Serve.StateDir != "" {
			fix = fmt.Sprintf("install -d -o %s -m 0700 %s", a.name, filepath.Join(cfg.Serve.StateDir, admission.RuntimeDirName))
		}
		return []Result{{"lock directory", Fail, fmt.Sprintf("no lock directory %s can use: %s; nixgate exec refuses every session of keys %s (max_sessions, max_builds)", a.name, r.Error, keys), fix}}
	}
	return []Result{{"lock directory", OK, fmt.Sprintf("%s: exec mode keeps the session and build-slot counts of keys %s there (a directory of %s's own)", r.Path, keys, a.name), ""}}
}
