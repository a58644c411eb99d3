package check

import (
	"fmt"
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
