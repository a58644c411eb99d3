package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

// canChange returns the path through which a can change p: p itself
// when a may write it or owns it (and so may chmod it), or a directory
// above it in which a may replace the entry on the way (writable, and
// not sticky or the entry a's own). It returns "" when there is none.
func (a *account) canChange(p string) string {
	p = filepath.Clean(p)
	if ok, err := a.access(p, 2); err == nil && ok {
		return p
	}
	for cur := p; ; {
		var st syscall.Stat_t
		if syscall.Stat(cur, &st) == nil && int(st.Uid) == a.uid {
			return cur
		}
		dir := filepath.Dir(cur)
		if dir == cur {
			return ""
		}
		var dst syscall.Stat_t
		if ok, err := a.access(dir, 3); err == nil && ok && syscall.Stat(dir, &dst) == nil {
			if dst.Mode&syscall.S_ISVTX == 0 || int(st.Uid) == a.uid {
				return dir
			}
		}
		cur = dir
	}
}

// checkFiles reports the files of nixgate's that the build account can
// change, and what a build running as the account could then do: the
// configuration and the keys file (give its key another role, add keys,
// turn the filtering off), and the drain state in state_dir (end a
// drain, nixgate drain). In direct and proot mode a build runs as the
// account, or Nix does, and nothing hides them from it: a failure for
// the keys, a warning for the drain. The userns and nix-user-chroot
// modes hide all of them from Nix and its builds (sandbox: the
// configuration, keys file, host keys and state_dir, wherever they are,
// and the home), so there the account's own write access is no way in
// for a build: OK, with that reason.
func checkFiles(cfg *policy.Config, a *account) []Result {
	hidden := cfg.Sandbox.Mode == policy.SandboxUserNS || cfg.Sandbox.Mode == policy.SandboxNixUserChroot
	type file struct {
		what, path string
		status     Status // when a build could change it
		could      string // what a build could then do
	}
	files := []file{
		{"configuration", cfg.Source, Fail, "rewrite the keys and their roles"},
		{"keys file", cfg.AuthorizedKeys, Fail, "rewrite the keys and their roles"},
	}
	if cfg.Serve.StateDir != "" {
		files = append(files, file{"drain state", admission.DrainPath(cfg.Serve.StateDir), Warn, "end a drain (nixgate drain) or start one"})
	}
	var rs []Result
	for _, f := range files {
		if f.path == "" || !filepath.IsAbs(f.path) {
			continue
		}
		via := a.canChange(f.path)
		if via == "" {
			rs = append(rs, Result{"files", OK, fmt.Sprintf("the %s %s cannot be changed by %s", f.what, f.path, a.name), ""})
			continue
		}
		msg := fmt.Sprintf("the %s %s can be changed by %s", f.what, f.path, a.name)
		if via != f.path {
			msg += " through " + via
		}
		if hidden {
			msg += fmt.Sprintf(", but not by a build: sandbox.mode %s hides nixgate's files (configuration, keys file, host keys, state_dir) and the home from Nix and its builds", cfg.Sandbox.Mode)
			rs = append(rs, Result{"files", OK, msg, ""})
			continue
		}
		msg += fmt.Sprintf(", so a build running as %s could %s", a.name, f.could)
		rs = append(rs, Result{"files", f.status, msg, fmt.Sprintf("chown root: %s && chmod go-w %s", via, via)})
	}
	return rs
}

// syslogSockets are where log/syslog, and so nixgate exec, looks for the
// system log.
var syslogSockets = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// checkExecLog reports where exec mode's audit records go: nixgate exec
// runs as the build account, so it can only write a [log] file the
// account can write, in which a build can forge or erase records; and
// the system log, its other destination, is one of sockets, which may
// all be missing (a container without a syslog daemon), and then records
// sent there are dropped.
func checkExecLog(cfg *policy.Config, a *account, sockets []string) []Result {
	syslog := ""
	for _, s := range sockets {
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			syslog = s
			break
		}
	}
	const fix = "run a system logger (systemd-journald, or apt-get install rsyslog)"
	switch {
	case cfg.Log.File == "" && syslog == "":
		return []Result{{"log", Warn, fmt.Sprintf("nixgate exec logs to the system log, and there is none (no %s): its audit records are dropped", strings.Join(sockets, ", ")), fix}}
	case cfg.Log.File == "":
		return []Result{{"log", OK, "nixgate exec logs to the system log (" + syslog + "), which " + a.name + " cannot rewrite", ""}}
	case a.canChange(cfg.Log.File) != "" && syslog == "":
		return []Result{{"log", Warn, fmt.Sprintf("[log] file %s can be changed by %s, so a build can forge or erase the audit records in it, and there is no system log to hold them too (no %s)", cfg.Log.File, a.name, strings.Join(sockets, ", ")), fix + ", then remove [log] file: nixgate exec then logs to the system log only"}}
	case a.canChange(cfg.Log.File) != "":
		return []Result{{"log", Warn, fmt.Sprintf("[log] file %s can be changed by %s, so a build can forge or erase the audit records in it (nixgate exec sends each record to the system log as well)", cfg.Log.File, a.name), "remove [log] file: nixgate exec then logs to the system log only"}}
	case syslog == "":
		return []Result{{"log", Warn, fmt.Sprintf("[log] file %s cannot be written by %s, as whom nixgate exec runs, and there is no system log (no %s): its audit records are dropped", cfg.Log.File, a.name, strings.Join(sockets, ", ")), fix + ", or give " + a.name + " the file"}}
	}
	return []Result{{"log", Warn, fmt.Sprintf("[log] file %s cannot be written by %s, as whom nixgate exec runs: its records go to the system log instead", cfg.Log.File, a.name), "remove [log] file"}}
}
