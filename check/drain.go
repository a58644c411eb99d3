package check

import (
	"fmt"
	"os"
	"time"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

// checkDrain warns while the builder is draining (nixgate drain): it is
// out of rotation until nixgate drain --off. Nothing is said when it is
// not draining.
func checkDrain(cfg *policy.Config) []Result {
	d, err := admission.ReadDrain(cfg.Serve.StateDir)
	path := admission.DrainPath(cfg.Serve.StateDir)
	switch {
	case err != nil:
		return []Result{{"drain", Fail, fmt.Sprintf("%s cannot be read, so every new session is refused as draining: %v", path, err), "nixgate drain --off, or make " + path + " readable (mode 0644)"}}
	case !d.On:
		return nil
	}
	msg := fmt.Sprintf("the builder is draining since %s: new sessions are refused with %q", d.Since.Format(time.DateTime), "nixgate: "+d.Message())
	return []Result{{"drain", Warn, msg, "nixgate drain --off"}}
}

// checkDrainReadable checks, in exec mode, that the build account can
// read the drain state: exec mode runs as that account, and refuses every
// session as draining when it cannot tell.
func checkDrainReadable(cfg *policy.Config, a *account) []Result {
	dir := cfg.Serve.StateDir
	if _, err := os.Stat(dir); err != nil {
		return nil // no state_dir, no drain: nothing to read
	}
	fix := fmt.Sprintf("chmod o+x %s, or set state_dir to a directory %s can search", dir, a.name)
	if ok, err := a.access(dir, 1); err != nil || !ok {
		return []Result{{"drain", Fail, fmt.Sprintf("%s cannot search state_dir %s, so nixgate exec refuses every session as draining (it cannot tell whether nixgate drain is on)", a.name, dir), fix}}
	}
	p := admission.DrainPath(dir)
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	if ok, err := a.access(p, 4); err != nil || !ok {
		return []Result{{"drain", Fail, fmt.Sprintf("%s cannot read %s, so nixgate exec refuses every session as draining", a.name, p), "chmod 644 " + p}}
	}
	return nil
}
