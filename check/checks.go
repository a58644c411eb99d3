package check

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

func env(cfg *policy.Config, a *account) []string {
	return sandbox.Env(cfg.BinDirs(), a.sandboxAccount(), cfg.Nix.Env)
}

// checkNix runs nix-store --version as the build user, as nixgate would.
func checkNix(cfg *policy.Config, a *account) []Result {
	if cfg.Sandbox.Mode != policy.SandboxDirect {
		return nil // checkSandbox runs Nix inside the sandbox
	}
	var rs []Result
	for _, prog := range []policy.Program{policy.NixStore, policy.NixDaemon} {
		args := []string{"--version"}
		switch {
		case localStoreMissing(cfg.Nix.Store):
			// Not onto a store that does not exist yet: Nix (which opens
			// the store even for --version) would make it, as the build
			// user, and check would leave behind directories that user
			// owns, where serve makes them its own. The store check
			// says it is missing.
			args = append(args, "--store", "dummy://")
		case cfg.Nix.Store != "":
			args = append(args, "--store", cfg.Nix.Store) // as nixgate runs it
		}
		// The program, argv and environment nixgate would run.
		c, err := sandbox.Prepare(cfg, policy.Decision{Allow: true, Program: prog, Args: args}, a.sandboxAccount())
		if err != nil {
			rs = append(rs, Result{"nix", Fail, policy.Line(err), "install Nix for the machine (apt-get install nix-bin, or the multi-user installer), or set nix.bin_dirs"})
			continue
		}
		out, errOut, err := asAccount(a, c.Env, c.Argv...)
		c.Done()
		if err != nil {
			rs = append(rs, Result{"nix", Fail, fmt.Sprintf("%s --version as %s: %v %s", c.Path, a.name, err, strings.TrimSpace(errOut)), ""})
			continue
		}
		rs = append(rs, Result{"nix", OK, fmt.Sprintf("%s as %s: %s", c.Path, a.name, strings.TrimSpace(out)), ""})
	}
	return rs
}

// localStoreMissing reports whether store is a local?root= store whose
// root does not exist.
func localStoreMissing(store string) bool {
	root, ok := strings.CutPrefix(store, "local?root=")
	if !ok || strings.ContainsAny(root, "&?") {
		return false
	}
	_, err := os.Stat(root)
	return errors.Is(err, os.ErrNotExist)
}

const daemonSocketDir = "/nix/var/nix/daemon-socket"

// checkStore checks that the build user can reach its store: the
// sandbox modes' store_dir, which must exist (nixgate refuses to make
// it: sandbox.CheckStoreDir), the directory of a local?root= store, or
// the daemon's socket.
func checkStore(cfg *policy.Config, a *account) []Result {
	if cfg.Sandbox.Mode != policy.SandboxDirect {
		dir := sandbox.StoreDir(cfg, a.sandboxAccount())
		if err := sandbox.CheckStoreDir(cfg, a.sandboxAccount()); err != nil {
			fix := ""
			if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
				fix = "mkdir -p " + dir
				if os.Geteuid() != a.uid {
					fix = fmt.Sprintf("runuser -u %s -- mkdir -p %s", a.name, dir)
				}
			}
			return []Result{{"store", Fail, policy.Line(err) + ": nixgate serve refuses to start, nixgate exec every session", fix}}
		}
		return []Result{{"store", OK, fmt.Sprintf("sandbox.store_dir %s is there (shown as /nix in sandbox.mode %s)", dir, cfg.Sandbox.Mode), ""}}
	}
	store := cfg.Nix.Store
	if root, ok := strings.CutPrefix(store, "local?root="); ok && !strings.ContainsAny(root, "&?") {
		if localStoreMissing(store) {
			return []Result{{"store", Warn, fmt.Sprintf("store %s does not exist yet: nixgate serve creates it at start, owned by %s (nixgate exec does not)", root, a.name), fmt.Sprintf("install -d -o %s %s", a.name, root)}}
		}
		ok, err := a.access(root, 3)
		if err != nil || !ok {
			return []Result{{"store", Fail, fmt.Sprintf("%s cannot write the store directory %s", a.name, root), fmt.Sprintf("chown -R %s %s", a.name, root)}}
		}
		return []Result{{"store", OK, fmt.Sprintf("%s can write the store directory %s", a.name, root), ""}}
	}
	if store != "" && store != "daemon" && store != "auto" {
		return []Result{{"store", Warn, fmt.Sprintf("store %q is not checked", store), ""}}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(daemonSocketDir, &st); err != nil {
		return []Result{{"store", Warn, fmt.Sprintf("no %s: no multi-user Nix daemon here, so %s would need to write /nix/store itself", daemonSocketDir, a.name), "start the Nix daemon (systemctl enable --now nix-daemon.socket), or set nix.store"}}
	}
	if ok, _ := a.access(daemonSocketDir, 1); !ok {
		group := fmt.Sprint(st.Gid)
		if g, err := lookupGroupName(int(st.Gid)); err == nil {
			group = g
		}
		return []Result{{"store", Fail, fmt.Sprintf("%s cannot reach the Nix daemon's socket in %s (group %s)", a.name, daemonSocketDir, group), fmt.Sprintf("usermod -aG %s %s", group, a.name)}}
	}
	msg := fmt.Sprintf("%s can reach %s", a.name, daemonSocketDir)
	if _, err := os.Stat(filepath.Join(daemonSocketDir, "socket")); err != nil {
		return []Result{{"store", Warn, msg + ", but the daemon is not running", "systemctl enable --now nix-daemon.socket"}}
	}
	return []Result{{"store", OK, msg, ""}}
}

func lookupGroupName(gid int) (string, error) {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return "", err
	}
	return g.Name, nil
}

// checkTrust checks trusted-users when build keys go through the Nix
// daemon: the daemon refuses to build input-addressed derivations, over
// ssh:// and ssh-ng:// alike, for a user it does not trust.
func checkTrust(cfg *policy.Config, a *account) []Result {
	if cfg.Sandbox.Mode != policy.SandboxDirect || (cfg.Nix.Store != "" && cfg.Nix.Store != "daemon") {
		return nil // a local store of the user's own trusts the user
	}
	build := false
	for _, k := range cfg.Keys {
		build = build || k.Role == policy.RoleBuild
	}
	if !build {
		return nil
	}
	nix, err := sandbox.Resolve("nix", cfg.BinDirs(), a.home)
	if err != nil {
		return nil
	}
	out, _, err := asAccount(a, env(cfg, a), nix, "--extra-experimental-features", "nix-command", "show-config")
	if err != nil {
		return []Result{{"trusted-users", Warn, "could not read the Nix configuration: " + err.Error(), ""}}
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "trusted-users" {
			continue
		}
		for _, u := range strings.Fields(v) {
			if u == a.name || u == "*" {
				return []Result{{"trusted-users", OK, fmt.Sprintf("%s is in trusted-users, so remote builds work (what that trust allows through nixgate: docs/SECURITY.md)", a.name), ""}}
			}
			if g, ok := strings.CutPrefix(u, "@"); ok {
				if gid, err := lookupGroupID(g); err == nil && a.inGroup(gid) {
					return []Result{{"trusted-users", OK, fmt.Sprintf("%s is trusted through @%s", a.name, g), ""}}
				}
			}
		}
	}
	return []Result{{"trusted-users", Warn, fmt.Sprintf("%s is not in trusted-users: remote builds, over ssh:// and ssh-ng:// alike, fail with \"you are not privileged to build input-addressed derivations\" (substituting and copying signed paths work)", a.name),
		fmt.Sprintf("echo 'extra-trusted-users = %s' >> /etc/nix/nix.conf && systemctl restart nix-daemon", a.name)}}
}

func lookupGroupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// checkSigning: substitute keys are only useful when the builder signs
// what it has. The fix is sandbox.Signing's, for the Nix that signs
// here: the daemon, or the account's own Nix (its key in the store
// directory, given to it through [nix] env).
func checkSigning(cfg *policy.Config, a *account) []Result {
	sub := false
	for _, k := range cfg.Keys {
		sub = sub || k.Role == policy.RoleSubstitute
	}
	if !sub {
		return nil
	}
	if len(sandbox.SecretKeyFiles(cfg, a.sandboxAccount())) > 0 {
		return []Result{{"signing", OK, "the builder signs its paths (secret-key-files)", ""}}
	}
	self := sandbox.Whoami()
	s := sandbox.Signing(cfg, a.sandboxAccount(), "$(hostname)-1", self)
	fix := strings.Join(s.Commands, " && ")
	if s.As != self {
		fix = "as " + s.As + ": " + fix
	}
	if s.Env != "" {
		table := ""
		if s.NewTable {
			table = "[nix] "
		}
		fix += "; then " + s.EnvWhere + ": " + table + s.Env
	}
	return []Result{{"signing", Warn, "substitute keys exist but the builder does not sign its paths, so clients must set require-sigs = false to use it (" + sandbox.SigningWhy + ")", fix}}
}

// checkSecretKeys fails a secret key file Nix is given (by the machine's
// nix.conf, or [nix] env) that the build account cannot read, where Nix
// runs as the account (a store of its own): Nix opens it for every build
// it signs, and every build then fails with "Permission denied" — the
// admin's root-only key in /etc/nix/nix.conf, on a builder without root.
func checkSecretKeys(cfg *policy.Config, a *account) []Result {
	if !sandbox.OwnStore(cfg, a.sandboxAccount()) {
		return nil // the daemon signs, as root
	}
	var rs []Result
	for _, f := range sandbox.SecretKeyFiles(cfg, a.sandboxAccount()) {
		if ok, err := a.access(f, 4); err == nil && !ok {
			rs = append(rs, Result{"signing", Fail, fmt.Sprintf("Nix, running as %s, is given the secret key %s (secret-key-files, from /etc/nix/nix.conf or [nix] env), which %s cannot read: every build it signs fails with Permission denied", a.name, f, a.name),
				fmt.Sprintf("give Nix no key there: [nix] env = { NIX_CONFIG = \"secret-key-files =\" } (then a key of %s's own, as check's signing fix says), or let %s read %s", a.name, a.name, f)})
		}
	}
	return rs
}

// checkSandbox runs nix-store --version in the configured sandbox, as
// the build user.
func checkSandbox(cfg *policy.Config, a *account) []Result {
	if os.Geteuid() == a.uid {
		if err := sandbox.Check(cfg, a.sandboxAccount()); err != nil {
			return []Result{{"sandbox", Fail, policy.Line(err), ""}}
		}
		which := ""
		if path, dirs, err := sandbox.Which(cfg, a.sandboxAccount(), policy.NixStore); err == nil {
			which = fmt.Sprintf(" (%s, the first of %s that holds it)", path, strings.Join(dirs, ":"))
		}
		msg := fmt.Sprintf("sandbox.mode %s runs nix-store here%s", cfg.Sandbox.Mode, which)
		if cfg.Sandbox.Mode == policy.SandboxUserNS || cfg.Sandbox.Mode == policy.SandboxNixUserChroot {
			msg += "; builds run in Nix's build sandbox inside it (probed)"
		}
		return []Result{{"sandbox", OK, msg, ""}}
	}
	// Run this check again as the build user.
	self, err := os.Executable()
	if err != nil || cfg.Source == "" || !filepath.IsAbs(cfg.Source) {
		return []Result{{"sandbox", Warn, fmt.Sprintf("run nixgate check as %s to check sandbox.mode %s", a.name, cfg.Sandbox.Mode), ""}}
	}
	out, errOut, err := asAccount(a, []string{"HOME=" + a.home, "PATH=" + strings.Join(sandbox.SystemPath, ":")}, self, "check", "--config", cfg.Source, "--only-sandbox")
	if err != nil {
		// It prints its error's line (policy.Line).
		return []Result{{"sandbox", Fail, strings.TrimSpace(out + errOut), ""}}
	}
	return []Result{{"sandbox", OK, fmt.Sprintf("sandbox.mode %s runs nix-store as %s", cfg.Sandbox.Mode, a.name), ""}}
}

// checkProot says what proot mode means for build keys: refused without
// the operator's acknowledgement, uncontained with it.
func checkProot(cfg *policy.Config) []Result {
	if cfg.Sandbox.Mode != policy.SandboxProot {
		return nil
	}
	var build []string
	for _, k := range cfg.Keys {
		if k.Role == policy.RoleBuild {
			build = append(build, k.Name)
		}
	}
	if why := cfg.Sandbox.BuildKeysRefusal(); why != "" {
		if len(build) == 0 {
			return []Result{{"proot", OK, "sandbox.mode proot: no build keys (they would be refused: " + policy.ProotUncontained + "); substitute keys work", ""}}
		}
		return []Result{{"proot", Fail, fmt.Sprintf("%s (keys %s)", why, strings.Join(build, ", ")),
			fmt.Sprintf("use sandbox.mode = \"userns\" or \"nix-user-chroot\", or set [sandbox] proot_build_keys = %q", policy.ProotBuildKeysAck)}}
	}
	return []Result{{"proot", Warn, fmt.Sprintf("sandbox.mode proot with proot_build_keys = %q: %s; build keys %s run builds that can reach all of it", policy.ProotBuildKeysAck, policy.ProotUncontained, strings.Join(build, ", ")),
		"use sandbox.mode = \"userns\" or \"nix-user-chroot\" where user namespaces are allowed"}}
}

// checkHome runs exec mode's own home check (sandbox.HomeProblems) as
// the build user: whether it can change its own access. A problem fails
// where exec mode refuses every session for it (direct and proot mode,
// see sandbox.HomeMustBeReadOnly); in userns and nix-user-chroot mode,
// which mount the home read-only for Nix and its builds, it is a warning.
func checkHome(cfg *policy.Config, a *account) []Result {
	status, refused := Warn, ""
	if sandbox.HomeMustBeReadOnly(cfg.Sandbox.Mode) {
		status, refused = Fail, ": nixgate exec refuses every session until then"
	}
	cred, err := a.runAs()
	if err != nil {
		return []Result{{"home", Warn, fmt.Sprintf("%s is not checked: %v", a.home, err), ""}}
	}
	problems, err := sandbox.HomeProblemsAs(a.sandboxAccount(), cred)
	if err != nil {
		return []Result{{"home", status, policy.Line(err) + refused, ""}}
	}
	var rs []Result
	for _, p := range problems {
		msg := fmt.Sprintf("%s %s%s", p.Path, p.Problem, refused)
		if !sandbox.HomeMustBeReadOnly(cfg.Sandbox.Mode) {
			msg += fmt.Sprintf(" (sandbox.mode %s keeps the home read-only for Nix and its builds only)", cfg.Sandbox.Mode)
		}
		rs = append(rs, Result{"home", status, msg, p.Fix})
	}
	if len(rs) == 0 {
		msg := fmt.Sprintf("%s, ~/.ssh and the authorized_keys files are read-only for %s; no ~/.ssh/rc", a.home, a.name)
		if !sandbox.HomeMustBeReadOnly(cfg.Sandbox.Mode) {
			msg += fmt.Sprintf("; sandbox.mode %s also mounts the home read-only for Nix and its builds", cfg.Sandbox.Mode)
		}
		rs = append(rs, Result{"home", OK, msg, ""})
	}
	return rs
}

// checkShell runs the login shell the way sshd runs a forced command and
// checks that it works and prints nothing.
func checkShell(a *account) []Result {
	base := filepath.Base(a.shell)
	switch base {
	case "nologin", "false":
		return []Result{{"shell", Fail, fmt.Sprintf("login shell %s refuses to run commands, so sshd cannot run the forced command (and prints to stdout, which breaks Nix)", a.shell), "usermod -s /bin/sh " + a.name}}
	case "fish":
		return []Result{{"shell", Fail, fmt.Sprintf("login shell %s may print on start-up, which breaks the Nix protocol", a.shell), "usermod -s /bin/sh " + a.name}}
	}
	out, errOut, err := asAccount(a, []string{"HOME=" + a.home, "PATH=/usr/bin:/bin"}, a.shell, "-c", "true")
	if err != nil {
		return []Result{{"shell", Fail, fmt.Sprintf("%s -c true as %s: %v %s", a.shell, a.name, err, strings.TrimSpace(errOut)), "usermod -s /bin/sh " + a.name}}
	}
	if out != "" {
		return []Result{{"shell", Fail, fmt.Sprintf("%s -c true prints %q, which breaks the Nix protocol", a.shell, out), "usermod -s /bin/sh " + a.name}}
	}
	return []Result{{"shell", OK, fmt.Sprintf("login shell %s runs commands quietly", a.shell), ""}}
}

// checkLocked warns about a locked password, which sshd with UsePAM no
// takes as a locked account.
func checkLocked(a *account) []Result {
	f, err := os.Open("/etc/shadow")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) > 1 && p[0] == a.name && strings.HasPrefix(p[1], "!") {
			return []Result{{"account", Warn, fmt.Sprintf("%s's password is locked; sshd with UsePAM no refuses locked accounts (\"account is locked\")", a.name), fmt.Sprintf("usermod -p '*' %s", a.name)}}
		}
	}
	return nil
}

// checkAuthorizedKeys checks the OpenSSH authorized_keys lines: of path,
// or, when it is empty, of the files sshd reads by default
// (sandbox.AuthorizedKeysFiles; the second only when it exists).
func checkAuthorizedKeys(cfg *policy.Config, a *account, path string) []Result {
	if path != "" {
		return checkAuthorizedKeysFile(cfg, path)
	}
	var rs []Result
	for i, p := range sandbox.AuthorizedKeysFiles(a.home) {
		if _, err := os.Stat(p); i > 0 && errors.Is(err, os.ErrNotExist) {
			continue
		}
		rs = append(rs, checkAuthorizedKeysFile(cfg, p)...)
	}
	return rs
}

// checkAuthorizedKeysFile checks the lines of one authorized_keys file.
func checkAuthorizedKeysFile(cfg *policy.Config, path string) []Result {
	data, err := os.ReadFile(path)
	if err != nil {
		return []Result{{"authorized_keys", Warn, fmt.Sprintf("cannot read %s: %v", path, err), "nixgate keys authorize --exec " + path + " …"}}
	}
	var rs []Result
	n := 0
	for _, l := range keys.ParseAuthorizedKeys(data) {
		if l.Err != nil {
			continue // no key: sshd passes over it too
		}
		n++
		where := fmt.Sprintf("%s:%d (%s)", path, l.Number, l.Name)
		known := slices.ContainsFunc(cfg.Keys, func(k policy.Key) bool { return k.Name == l.Name })
		switch {
		case l.ForcesNixgate() && !known:
			rs = append(rs, Result{"authorized_keys", Fail, fmt.Sprintf("%s forces nixgate exec --key %s, a key the configuration does not have: nixgate refuses it", where, l.Name), "add a [[keys]] entry named " + l.Name + ", or nixgate keys revoke --authorized-keys " + path + " " + l.Name})
		case !l.ForcesNixgate():
			rs = append(rs, Result{"authorized_keys", Fail, where + " does not force nixgate exec: that key gets a shell", "nixgate keys revoke --authorized-keys " + path + " " + keys.Fingerprint(l.Key) + ", then nixgate keys authorize --exec"})
		case !l.Restricted():
			rs = append(rs, Result{"authorized_keys", Fail, where + " forces nixgate but lacks restrict: forwarding and a PTY stay open", "start the line with restrict,"})
		}
	}
	if len(rs) == 0 {
		rs = append(rs, Result{"authorized_keys", OK, fmt.Sprintf("%d key(s) in %s, each restricted to nixgate exec", n, path), ""})
	}
	return rs
}

// checkHostKeys loads serve mode's host keys the way serve does
// (keys.LoadHostKey), which refuses a key that others can read.
func checkHostKeys(cfg *policy.Config) []Result {
	paths := cfg.Serve.HostKeys
	if len(paths) == 0 {
		p := filepath.Join(cfg.Serve.StateDir, keys.GeneratedHostKeyName)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return []Result{{"host key", OK, fmt.Sprintf("none yet: nixgate serve generates one in %s", p), ""}}
		}
		paths = []string{p}
	}
	var rs []Result
	for _, p := range paths {
		_, err := keys.LoadHostKey(p)
		var mode *keys.HostKeyModeError
		switch {
		case errors.As(err, &mode):
			rs = append(rs, Result{"host key", Fail, fmt.Sprintf("%s has mode %04o: others can read the private host key, and nixgate serve refuses it", p, mode.Mode), "chmod 600 " + p})
		case errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0:
			rs = append(rs, Result{"host key", Warn, fmt.Sprintf("%s is not checked: run nixgate check as root, or as the user nixgate serve runs as", p), ""})
		case err != nil:
			rs = append(rs, Result{"host key", Fail, policy.Line(err), ""})
		default:
			msg := p + " is private"
			if fi, err := os.Stat(p); err == nil {
				msg += fmt.Sprintf(" (%04o)", fi.Mode().Perm())
			}
			rs = append(rs, Result{"host key", OK, msg, ""})
		}
	}
	return rs
}

// checkListen checks each listen address: free, or already nixgate's.
// The addresses are bound together, as nixgate serve binds them, so two
// that overlap are found too.
func checkListen(cfg *policy.Config) []Result {
	var rs []Result
	var open []net.Listener
	var held []string // the addresses of open
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for _, addr := range cfg.Serve.Listen {
		network := policy.ListenNetwork(addr, cfg.Serve.Listen)
		l, err := net.Listen(network, addr) // as gateway.Listen binds it
		if err == nil {
			open, held = append(open, l), append(held, addr)
			msg := addr + " is free"
			if network == "tcp6" {
				msg += " (IPv6 only: IPv4 is listed too)"
			}
			rs = append(rs, Result{"listen", OK, msg, ""})
			continue
		}
		if errors.Is(err, syscall.EACCES) {
			rs = append(rs, Result{"listen", Warn, addr + " needs root (or socket activation) to bind", "systemctl enable --now nixgate.socket"})
			continue
		}
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			rs = append(rs, Result{"listen", Fail, addr + " is not an address of this machine", "fix listen"})
			continue
		}
		if prev := overlaps(addr, held); prev != "" {
			rs = append(rs, Result{"listen", Fail, fmt.Sprintf("%s overlaps %s, listed before it: both take the same port", addr, prev), "remove one of them from listen"})
			continue
		}
		banner := sshBanner(addr)
		if strings.HasPrefix(banner, "SSH-2.0-nixgate") {
			rs = append(rs, Result{"listen", OK, addr + " is served by nixgate already", ""})
		} else {
			rs = append(rs, Result{"listen", Fail, fmt.Sprintf("%s is taken by something else (%q)", addr, banner), "stop it (systemctl disable --now ssh, after moving OpenSSH to another port) or change listen"})
		}
	}
	return rs
}

// overlaps returns the first of earlier (addresses bound by this check)
// on the same port as addr.
func overlaps(addr string, earlier []string) string {
	_, port, _ := net.SplitHostPort(addr)
	for _, e := range earlier {
		if _, p, err := net.SplitHostPort(e); err == nil && p == port {
			return e
		}
	}
	return ""
}

func sshBanner(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second)
	if err != nil {
		return "?"
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}
