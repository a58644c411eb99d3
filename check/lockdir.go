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
		return []Result{{"lock directory", OK, "not needed: no key has max_sessions or a build-slot limit (max_builds); with the daemon's store, exec mode keeps the daemon's health verdict there when it can use it, and otherwise only sees that its socket exists", ""}}
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
	return []Result{lockDirResult(cfg, a.name, keys, r)}
}

// lockDirResult judges r, the lock directory that account would use for
// the limits of keys (their names, joined).
func lockDirResult(cfg *policy.Config, account, keys string, r admission.RuntimeDirReport) Result {
	// state_dir/run, when it is the account's, is used first.
	fix := "set state_dir to a directory of its own for nixgate"
	run := ""
	if cfg.Serve.StateDir != "" {
		run = filepath.Join(cfg.Serve.StateDir, admission.RuntimeDirName)
		fix = fmt.Sprintf("install -d -o %s -m 0700 %s", account, run)
	}
	switch {
	case r.Error != "":
		return Result{"lock directory", Fail, fmt.Sprintf("no lock directory %s can use: %s; nixgate exec refuses every session of keys %s (max_sessions, max_builds)", account, r.Error, keys), fix}
	case r.Path != run:
		// The fallback in /tmp, whose name anyone may take first.
		return Result{"lock directory", Warn, fmt.Sprintf("%s: exec mode keeps the session and build-slot counts of keys %s in a shared /tmp, where any other account (a build of Nix's daemon without its sandbox too) may make that name first, and exec mode then refuses every session of these keys", r.Path, keys), fix}
	}
	return Result{"lock directory", OK, fmt.Sprintf("%s: exec mode keeps the session and build-slot counts of keys %s there (a directory of %s's own)", r.Path, keys, account), ""}
}
