package check

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/buildlog"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/usage"
)

// execStateDir returns the one command that lays out state_dir dir for
// exec mode, run as root, for the build account account: dir itself
// root's and searchable (0755), so that the drain file in it, root's too,
// is out of the account's reach (a build running as the account could
// otherwise end a drain); in it, the account's own lock directory (run,
// 0700: max_sessions and the build slots) and usage store (usage.db,
// 0600, which bbolt fills on first use: nixgate usage) and build logs
// (build-logs, 0700: nixgate log). Run again, it loses nothing: touch
// does not empty a usage store that is there.
func execStateDir(dir, account string) string {
	return fmt.Sprintf("install -d -m 755 %s && install -d -o %s -m 700 %s %s && %s",
		dir, account, filepath.Join(dir, admission.RuntimeDirName), filepath.Join(dir, buildlog.DirName), makeUsageStore(account, usage.Path(dir)))
}

// makeUsageStore is the command that gives account a usage store at p:
// an empty file (bbolt fills it on first use), or the one that is there,
// kept.
func makeUsageStore(account, p string) string {
	return fmt.Sprintf("touch %s && chown %s %s && chmod 600 %s", p, account, p, p)
}

// checkUsageWritable checks, in exec mode, that the build account can
// write the usage store (nixgate usage): exec mode runs as that account,
// and its sessions otherwise go uncounted (they still run). state_dir
// itself is root's (execStateDir): the account writes usage.db, not the
// directory.
func checkUsageWritable(cfg *policy.Config, a *account) []Result {
	dir := cfg.Serve.StateDir
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); err != nil {
		return []Result{{"usage", Warn, fmt.Sprintf("state_dir %s does not exist, so exec-mode sessions are not counted by nixgate usage, and the lock directory of max_sessions and max_builds is /tmp/nixgate-%d instead of %s", dir, a.uid, filepath.Join(dir, admission.RuntimeDirName)), execStateDir(dir, a.name)}}
	}
	p := usage.Path(dir)
	if _, err := os.Stat(p); err == nil {
		if ok, err := a.access(p, 6); err != nil || !ok {
			return []Result{{"usage", Warn, fmt.Sprintf("%s cannot write %s, so exec-mode sessions are not counted by nixgate usage (they still run)", a.name, p), fmt.Sprintf("chown %s %s && chmod 600 %s", a.name, p, p)}}
		}
		return []Result{{"usage", OK, fmt.Sprintf("exec-mode sessions are counted in %s, which %s can write", p, a.name), ""}}
	}
	if ok, err := a.access(dir, 3); err != nil || !ok {
		return []Result{{"usage", Warn, fmt.Sprintf("%s cannot make %s in state_dir %s, so exec-mode sessions are not counted by nixgate usage (they still run)", a.name, p, dir), makeUsageStore(a.name, p)}}
	}
	return []Result{{"usage", OK, fmt.Sprintf("exec-mode sessions are counted in %s, which %s makes on first use", p, a.name), ""}}
}
