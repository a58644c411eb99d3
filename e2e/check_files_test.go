package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestCheckFilesWritableByAccount: nothing checked that the build account
// cannot change nixgate's configuration, and exec mode's [log] file is
// one the account writes, so a build can forge audit records in it.
func TestCheckFilesWritableByAccount(t *testing.T) {
	b := newBuilder(t, modeExec)
	args := []string{"--config", b.config, "--mode", "exec", "--authorized-keys", filepath.Join(b.root, "none")}
	rs, _ := runCheck(t, args...)
	finding(t, rs, "files", "ok", "the configuration "+b.config+" cannot be changed by "+b.account.name, "")
	// The harness logs to a file the account owns, to read the records.
	finding(t, rs, "log", "warn", "a build can forge or erase the audit records", "remove [log] file")

	mustRun(t, nil, "chmod", "o+w", b.config)
	rs, code := runCheck(t, args...)
	mustRun(t, nil, "chmod", "o-w", b.config)
	finding(t, rs, "files", "fail", "the configuration "+b.config+" can be changed by anyone on this machine", "chmod o-w "+b.config)
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}

	b.account.chown(t, b.config)
	rs, code = runCheck(t, args...)
	mustRun(t, nil, "chown", "0:0", b.config)
	finding(t, rs, "files", "fail", "the configuration "+b.config+" can be changed by "+b.account.name, "chmod go-w "+b.config)
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}

	dir := filepath.Dir(b.config)
	mustRun(t, nil, "chown", fmt.Sprintf("%d:%d", b.account.uid, b.account.gid), dir)
	rs, _ = runCheck(t, args...)
	mustRun(t, nil, "chown", "0:0", dir)
	finding(t, rs, "files", "fail", "can be changed by "+b.account.name+" through "+dir, "chown root: "+dir)
}
