// Package check finds what is wrong with a nixgate builder: it runs the
// real checks — runs the binaries as the build user, stats the files,
// binds the ports — for every setup mistake that can be detected, and
// says for each the command that fixes it. Where nixgate itself checks
// something (the account, the home, the host keys, the sandbox), check
// calls that code in packages sandbox and keys, never a copy of it.
package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// Status is the outcome of one check.
type Status string

// The outcomes.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's finding. Fix is empty when there is nothing to do.
type Result struct {
	Name    string `json:"name"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Mode is what nixgate runs as on the builder.
type Mode string

// The modes.
const (
	Serve Mode = "serve"
	Exec  Mode = "exec"
)

// Options say what to check.
type Options struct {
	Mode Mode
	// AuthorizedKeys is the build account's OpenSSH authorized_keys file
	// (exec mode). Empty means ~/.ssh/authorized_keys.
	AuthorizedKeys string
	// GeneratesKey says that nixgate serve generates a client key when no
	// key may log in (the embedded default). False means that serve
	// refuses to start then.
	GeneratesKey bool
	// SSHDConfig is the sshd configuration file OpenSSH runs with (exec
	// mode, for certificates). Empty means DefaultSSHDConfig.
	SSHDConfig string
}

// account is the build user as the checks need it.
type account struct {
	name     string
	home     string
	uid, gid int
	groups   []int
	shell    string
}

// lookupAccount looks the build user up the way nixgate serve does
// (sandbox.LookupAccount): its uid, primary gid and groups are the
// credential its commands run with, and uid 0 is refused, as both modes
// refuse it (sandbox.RefuseRoot).
func lookupAccount(name string) (*account, error) {
	sa, cred, err := sandbox.LookupAccount(name, true)
	if err != nil {
		return nil, err
	}
	a := &account{name: sa.Name, home: sa.Home, uid: int(cred.Uid), gid: int(cred.Gid), shell: sandbox.LoginShell(sa.Name)}
	for _, g := range cred.Groups {
		a.groups = append(a.groups, int(g))
	}
	return a, nil
}

// sandboxAccount returns a as package sandbox knows it.
func (a *account) sandboxAccount() sandbox.Account {
	return sandbox.Account{Name: a.name, Home: a.home}
}

// credential returns the credential a's commands run with.
func (a *account) credential() *syscall.Credential {
	cred := &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}
	for _, g := range a.groups {
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return cred
}

// runAs returns the credential to run something as a with: nil when this
// process is a, a's credential when it is root. Otherwise it cannot, and
// says so.
func (a *account) runAs() (*syscall.Credential, error) {
	switch os.Geteuid() {
	case a.uid:
		return nil, nil
	case 0:
		return a.credential(), nil
	}
	return nil, fmt.Errorf("run nixgate check as root or as %s to run this as %s", a.name, a.name)
}

func (a *account) inGroup(gid int) bool {
	if gid == a.gid {
		return true
	}
	for _, g := range a.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// access reports whether a may access path with the given permission
// bits (4 read, 2 write, 1 execute/search), from its mode, owner and
// group, and whether its file system is read-only.
func (a *account) access(path string, want uint32) (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false, err
	}
	if want&2 != 0 {
		var fs syscall.Statfs_t
		if syscall.Statfs(path, &fs) == nil && fs.Flags&1 != 0 { // ST_RDONLY
			return false, nil
		}
	}
	if a.uid == 0 {
		return true, nil
	}
	mode := uint32(st.Mode) & 0o777
	switch {
	case int(st.Uid) == a.uid:
		return (mode>>6)&want == want, nil
	case a.inGroup(int(st.Gid)):
		return (mode>>3)&want == want, nil
	}
	return mode&want == want, nil
}

// asAccount runs argv as a (when nixgate runs as root, or is a) and
// returns its stdout, stderr and error.
func asAccount(a *account, env []string, argv ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, err := accountCommand(ctx, a, env, argv)
	if err != nil {
		return "", "", err
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// accountCommand is argv to run as a in /, with env.
func accountCommand(ctx context.Context, a *account, env, argv []string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cred, err := a.runAs()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// The program may be the account's (its profile's nix-store): a
	// process it leaves behind with its output open does not keep check
	// waiting.
	cmd.WaitDelay = time.Second
	return cmd, nil
}

// demoFiles are the files findings of the embedded default (make run):
// its files are its user's by design, which is a warning there, with
// where a builder's go; what anyone can change stays a failure.
func demoFiles(rs []Result) []Result {
	for i, r := range rs {
		if r.Status != OK && !strings.Contains(r.Message, anyoneCan) {
			rs[i].Status = Warn
			rs[i].Fix = "fine for trying nixgate out (make run); a builder's configuration and keys are root's: see the README's \"A builder in five minutes\""
		}
	}
	return rs
}

// Run runs every check that applies to cfg in o.Mode.
func Run(cfg *policy.Config, o Options) []Result {
	var rs []Result
	add := func(r Result) { rs = append(rs, r) }
	rs = append(rs, checkKeys(cfg, o)...)
	rs = append(rs, checkDrain(cfg)...)
	a, err := lookupAccount(cfg.User)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		add(Result{"account", Fail, fmt.Sprintf("build user %q does not exist", cfg.User), fmt.Sprintf("useradd --system --create-home --shell /bin/sh %s", cfg.User)})
		return rs
	}
	if errors.Is(err, sandbox.ErrRoot) {
		add(Result{"account", Fail, policy.Line(err) + ": nixgate serve and nixgate exec refuse it", "useradd --system --create-home --shell /bin/sh nixremote, and set user = \"nixremote\""})
		return rs
	}
	if err != nil {
		add(Result{"account", Fail, policy.Line(err), ""})
		return rs
	}
	add(Result{"account", OK, fmt.Sprintf("build user %s (uid %d), home %s, shell %s", a.name, a.uid, a.home, a.shell), ""})
	nix := checkNix(cfg, a)
	rs = append(rs, nix...)
	rs = append(rs, checkStore(cfg, a)...)
	rs = append(rs, checkProtocols(cfg, a, nixVersionIn(nix))...)
	rs = append(rs, checkHealth(cfg, a, o.Mode)...)
	rs = append(rs, checkTrust(cfg, a)...)
	rs = append(rs, checkSigning(cfg, a)...)
	rs = append(rs, checkSecretKeys(cfg, a)...)
	if cfg.Sandbox.Mode != policy.SandboxDirect {
		if sandbox.CheckStoreDir(cfg, a.sandboxAccount()) == nil { // else the store check says why
			rs = append(rs, checkSandbox(cfg, a)...)
		}
		rs = append(rs, checkProot(cfg)...)
	}
	files := checkFiles(cfg, a)
	if o.GeneratesKey {
		files = demoFiles(files)
	}
	rs = append(rs, files...)
	rs = append(rs, checkReach(cfg)...)
	switch o.Mode {
	case Exec:
		rs = append(rs, checkExecLog(cfg, a, syslogSockets)...)
		rs = append(rs, checkSSHDCerts(cfg, a, o.SSHDConfig)...)
		rs = append(rs, checkHome(cfg, a)...)
		rs = append(rs, checkShell(a)...)
		rs = append(rs, checkLocked(a)...)
		rs = append(rs, checkAuthorizedKeys(cfg, a, o.AuthorizedKeys)...)
		rs = append(rs, checkDrainReadable(cfg, a)...)
		rs = append(rs, checkUsageWritable(cfg, a)...)
		rs = append(rs, checkLockDir(cfg, a)...)
	default:
		rs = append(rs, checkHostKeys(cfg)...)
		rs = append(rs, checkListen(cfg)...)
	}
	return rs
}

// checkKeys checks that some key may log in: in serve mode a key with a
// public key or a CA's principal (serve refuses to start without one),
// in exec mode any key.
func checkKeys(cfg *policy.Config, o Options) []Result {
	n := 0
	for _, k := range cfg.Keys {
		if k.PublicKey != "" || k.CA != "" || o.Mode == Exec {
			n++
		}
	}
	where := "an authorized_keys file (set authorized_keys)"
	if cfg.AuthorizedKeys != "" {
		where = cfg.AuthorizedKeys
	}
	missing := false
	if cfg.AuthorizedKeys != "" {
		_, err := os.Stat(cfg.AuthorizedKeys)
		missing = errors.Is(err, fs.ErrNotExist)
	}
	switch {
	case n > 0:
		return []Result{{"keys", OK, fmt.Sprintf("%d key(s) or certificate principal(s) may log in", n), ""}}
	case len(cfg.KeySource.Command) > 0 && o.Mode != Exec:
		return []Result{{"keys", OK, "the keys the key source command answers may log in", ""}}
	case missing && !o.GeneratesKey:
		return []Result{{"keys", Fail, fmt.Sprintf("no key may log in: the authorized_keys file %s that %s names does not exist", cfg.AuthorizedKeys, cfg.Source),
			"fix the path in " + cfg.Source + " (a typo?), or create it: nixgate keys authorize --config " + cfg.Source + " --name NAME --role build KEY.pub"}}
	case o.GeneratesKey:
		return []Result{{"keys", OK, "no key yet: nixgate serve generates and authorizes one in " + cfg.Serve.StateDir, ""}}
	case o.Mode == Exec:
		return []Result{{"keys", Fail, "no key: nixgate exec refuses every --key", "nixgate keys authorize --exec ~" + cfg.User + "/.ssh/authorized_keys --name NAME --role build KEY.pub"}}
	}
	return []Result{{"keys", Fail, "no key may log in, so nixgate serve refuses to start: serve mode needs each key's public key", "nixgate keys authorize --name NAME --role build KEY.pub (into " + where + ")"}}
}

// Failed reports whether any result failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}
