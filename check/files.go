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

// othersCanChange returns why every user can change p: it, or a
// directory on the way to it (the path as given, and what its symbolic
// links name), is writable by everyone, a directory without the sticky
// bit that keeps them from replacing what is not theirs; empty when
// not. (The build account's own ways in, its groups among them, are
// canChange's.)
func othersCanChange(p string) string {
	paths := []string{filepath.Clean(p)}
	if real, err := filepath.EvalSymlinks(p); err == nil && real != paths[0] {
		paths = append(paths, real)
	}
	for _, q := range paths {
		for cur, file := q, true; ; file = false {
			var st syscall.Stat_t
			if syscall.Lstat(cur, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFLNK {
				sticky := !file && st.Mode&syscall.S_ISVTX != 0
				if st.Mode&0o002 != 0 && !sticky {
					return cur + " is writable by everyone"
				}
			}
			dir := filepath.Dir(cur)
			if dir == cur {
				break
			}
			cur = dir
		}
	}
	return ""
}

// Files is the check of nixgate's own files (the configuration, the keys
// file, the drain state) that serve and exec run before they use cfg:
// what check reports about them. With asAccount (serve run by the build
// account itself, a builder without root, whose files are its own) only
// what anyone can change is reported. Nil when the build user is unknown
// (the commands say so themselves).
func Files(cfg *policy.Config, asAccount bool) []Result {
	a, err := lookupAccount(cfg.User)
	if err != nil {
		return nil
	}
	rs := checkFiles(cfg, a)
	if asAccount {
		var anyone []Result
		for _, r := range rs {
			if strings.Contains(r.Message, anyoneCan) {
				anyone = append(anyone, r)
			}
		}
		return anyone
	}
	return rs
}

// anyoneCan is in the message of a file anyone can change.
const anyoneCan = "can be changed by anyone"

// checkFiles reports the files of nixgate's that the build account can
// change, and what a build running as the account could then do: the
// configuration and the keys file (give its key another role, add keys,
// turn the filtering off), a CA's key and revoked files (trust a CA of
// its own, lift a revocation), the key source command (answer any key),
// and the drain state in state_dir (end a
// drain, nixgate drain; and through state_dir itself, where the drain
// file may not exist yet, replace serve's generated host key). In direct
// and proot mode a build runs as the account, or Nix does, and nothing
// hides them from it: a failure for each. The userns and nix-user-chroot
// modes hide all of them from Nix and its builds (sandbox: the
// configuration, keys file, host keys and state_dir, wherever they are,
// and the home), so there the account's own write access is no way in
// for a build: OK, with that reason.
func checkFiles(cfg *policy.Config, a *account) []Result {
	hidden := cfg.Sandbox.Mode == policy.SandboxUserNS || cfg.Sandbox.Mode == policy.SandboxNixUserChroot
	type file struct {
		what, path string
		could      string // what a build could do if it could change it
		// exposed is set for a file the sandbox modes do not hide
		// (they hide the configuration, keys file, host keys and
		// state_dir): a CA's files, the key source command.
		exposed bool
	}
	files := []file{
		{"configuration", cfg.Source, "rewrite the keys and their roles", false},
		{"keys file", cfg.AuthorizedKeys, "rewrite the keys and their roles", false},
	}
	for _, ca := range cfg.CAs {
		if strings.HasPrefix(ca.PublicKey, "/") {
			files = append(files, file{fmt.Sprintf("CA %s's key file", ca.Name), ca.PublicKey, "put a CA of its own there and log in as any of its principals", true})
		}
		if ca.Revoked != "" {
			files = append(files, file{fmt.Sprintf("CA %s's revoked file", ca.Name), ca.Revoked, "take revoked certificates off it", true})
		}
	}
	if len(cfg.KeySource.Command) > 0 {
		files = append(files, file{"key source command", cfg.KeySource.Command[0], "answer any key with any role, and run as nixgate serve's user", true})
	}
	if cfg.Serve.StateDir != "" {
		files = append(files, file{"drain state", admission.DrainPath(cfg.Serve.StateDir), "end a drain (nixgate drain) or start one, and, through state_dir, replace serve's generated host key (which clients pin) and the usage records", false})
	}
	var rs []Result
	for _, f := range files {
		if f.path == "" || strings.HasPrefix(f.path, "(") { // none, or "(embedded)"
			continue
		}
		// Wherever the path came from: relative to the working
		// directory, or through a symbolic link (both the link and what
		// it names are the file).
		abs, err := filepath.Abs(f.path)
		if err != nil {
			continue
		}
		f.path = abs
		if other := othersCanChange(abs); other != "" {
			rs = append(rs, Result{"files", Fail, fmt.Sprintf("the %s %s %s on this machine (%s), so anyone could %s", f.what, abs, anyoneCan, other, f.could),
				fmt.Sprintf("chmod o-w %s", strings.Fields(other)[0])})
			continue
		}
		via := a.canChange(abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs && via == "" {
			via = a.canChange(real)
		}
		if via == "" {
			rs = append(rs, Result{"files", OK, fmt.Sprintf("the %s %s cannot be changed by %s", f.what, f.path, a.name), ""})
			continue
		}
		msg := fmt.Sprintf("the %s %s can be changed by %s", f.what, f.path, a.name)
		if via != f.path {
			msg += " through " + via
		}
		if hidden && !f.exposed {
			msg += fmt.Sprintf(", but not by a build: sandbox.mode %s hides nixgate's files (configuration, keys file, host keys, state_dir) and the home from Nix and its builds", cfg.Sandbox.Mode)
			rs = append(rs, Result{"files", OK, msg, ""})
			continue
		}
		msg += fmt.Sprintf(", so a build running as %s could %s", a.name, f.could)
		fix := fmt.Sprintf("chown root: %s && chmod go-w %s", via, via)
		if os.Geteuid() == a.uid && a.uid != 0 {
			// A builder without root: its files are its own, and
			// chown root: is not its to run.
			fix = "set sandbox.mode = \"userns\" (or nix-user-chroot), which hides nixgate's files from Nix and its builds; or ask root to " + fix
		}
		rs = append(rs, Result{"files", Fail, msg, fix})
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
