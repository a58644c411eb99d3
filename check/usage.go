package check

import (
	"fmt"
	"os"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/usage"
)

// checkUsageWritable warns, in exec mode, when the build account cannot
// write the usage store (nixgate usage): exec mode runs as that account,
// and its sessions then go uncounted (they still run).
func checkUsageWritable(cfg *policy.Config, a *account) []Result {
	dir := cfg.Serve.StateDir
	if _, err := os.Stat(dir); err != nil {
		return []Result{{"usage", Warn, fmt.Sprintf("state_dir %s does not exist, so exec-mode sessions are not counted by nixgate usage", dir), fmt.Sprintf("install -d -o %s -m 0755 %s", a.name, dir)}}
	}
	p := usage.Path(dir)
	target, want := dir, uint32(3) // create the store: write and search
	if _, err := os.Stat(p); err == nil {
		target, want = p, 6 // open it read-write
	}
	if ok, err := a.access(target, want); err != nil || !ok {
		return []Result{{"usage", Warn, fmt.Sprintf("%s cannot write %s, so exec-mode sessions are not counted by nixgate usage (they still run)", a.name, target), fmt.Sprintf("chown %s %s", a.name, target)}}
	}
	return nil
}
