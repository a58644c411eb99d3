package e2e

// Harness: the builder. Its build account, nixgate's configuration, the
// account's home, OpenSSH's sshd (exec mode), Nix's root daemon when a
// test wants it, and the client's ssh and Nix configuration. nixgate
// serve is started and watched in builder_serve_test.go, the clients are
// in builder_client_test.go.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// builder is one Nix remote builder behind a real OpenSSH sshd whose
// authorized_keys force `nixgate exec`, with a client side set up to
// reach it: ssh config, known_hosts, keys, and a Nix configuration with a
// store of its own.
type builder struct {
	root    string
	mode    string // modeExec or modeServe
	account buildAccount
	port    int
	keys    map[string]clientKey

	metricsPort int // nixgate serve's Prometheus listener

	// sandbox is the sandbox mode of a builder without root; empty for a
	// root builder whose store is b.store.
	sandbox string
	// daemonSocket is the socket of the Nix daemon whose store nixgate
	// serves; empty for a store of the build account's own.
	daemonSocket string
	// bin is the nixgate binary nixgate serve runs as; empty means
	// nixgateBin.
	bin string
	// binDir is nixgate's nix.bin_dirs; empty means the default.
	binDir string

	sshExtra  []string  // extra ssh options for greet
	sshd      *exec.Cmd // OpenSSH's sshd, in exec mode
	serve     *exec.Cmd // nixgate serve, in serve mode
	serveLog  string    // its stderr
	serveDone chan struct{}

	config string // nixgate.toml
	log    string // nixgate's audit log

	store, allowedStore, otherStore string // store URLs
	storeDir, allowedDir            string // their roots on disk

	clientStoreDir string
	clientEnv      []string // for the Nix and ssh clients
	sshConfig      string
	sshdLog        string
}

// Host returns the ssh host alias that connects with the key of that name.
func (b *builder) Host(key string) string { return "builder-" + key }

// keyLines are the authorized_keys entries the builder gets, by key name:
// "%s" is replaced by nixgate's path and "%c" by the config path.
var keyLines = map[string]string{
	// Keys configured in nixgate.toml.
	"build":      `restrict,command="%s exec --config %c --key build"`,
	"substitute": `restrict,command="%s exec --config %c --key substitute"`,
	"lan":        `restrict,command="%s exec --config %c --key lan"`,
	"old":        `restrict,command="%s exec --config %c --key old"`,
	"op":         `restrict,command="%s exec --config %c --key op"`,
	"trusted":    `restrict,command="%s exec --config %c --key trusted"`,
	// A key whose authorized_keys line names a key the config lacks.
	"ghost": `restrict,command="%s exec --config %c --key ghost"`,
	// The usual hand-written forced command, for comparison: sshd's PATH
	// does not find Nix.
	"plain": `restrict,command="nix-store --serve --write"`,
	// The same with the full path and nixgate's store: what a careful
	// operator writes by hand, and the baseline of the benchmark.
	"direct": `restrict,command="/usr/bin/nix-store --serve --write --store '%S'"`,
	// The same for ssh-ng://: OpenSSH's plain forced nix-daemon --stdio,
	// the baseline of the protocol filter's benchmark.
	"direct-ng": `restrict,command="/usr/bin/nix-daemon --stdio --store '%S'"`,
	// nixgate exec as it was before the protocol filter, for the filter's
	// benchmark: %B is that binary (NIXGATE_BENCH_BASELINE, else this
	// nixgate) and %C a copy of the configuration it understands.
	"baseline": `restrict,command="%B exec --config %C --key build"`,
}

// Modes are the two ways nixgate runs.
const (
	modeExec  = "exec"
	modeServe = "serve"
)

// newBuilder sets up the whole builder and client side for mode: for
// exec, a real OpenSSH sshd whose authorized_keys force `nixgate exec`;
// for serve, `nixgate serve` itself, started as root.
func newBuilder(t testing.TB, mode string) *builder {
	t.Helper()
	return newBuilderIn(t, mode, "")
}

// newBuilderIn is newBuilder for a builder without root when sandbox is
// set: the account's Nix store is its own ~/.nix, shown as /nix by that
// sandbox mode, its home is an ordinary writable one, and in serve mode
// nixgate runs as the account itself.
func newBuilderIn(t testing.TB, mode, sandbox string) *builder {
	t.Helper()
	return newBuilderWith(t, mode, builderOptions{sandbox: sandbox})
}

// builderOptions are the ways a builder can differ from the usual one.
type builderOptions struct {
	// sandbox is the sandbox mode of a builder without root (see
	// newBuilderIn); empty for a root builder.
	sandbox string
	// daemonSocket, when set, makes nixgate's store Nix's daemon store,
	// reached through this socket (see startNixDaemon), instead of a
	// store of the build account's own.
	daemonSocket string
	// bin, when set, is the nixgate binary serve mode runs instead of
	// nixgateBin (a variant a benchmark compares against).
	bin string
	// binDir, when set, is nixgate's nix.bin_dirs: where it finds
	// nix-store and nix-daemon (the matrix's wrappers of another Nix).
	binDir string
	// binInHome puts the nixgate serve runs where the README installs
	// it without root, the account's ~/.local/bin.
	binInHome bool
}

// newBuilderWith is newBuilder with the options o.
func newBuilderWith(t testing.TB, mode string, o builderOptions) *builder {
	t.Helper()
	requireTools(t)
	sandbox := o.sandbox
	root, err := os.MkdirTemp("", "nixgate-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &builder{root: root, mode: mode, sandbox: sandbox, daemonSocket: o.daemonSocket, bin: o.bin, binDir: o.binDir}
	b.account = newBuildAccount(t, filepath.Join(root, "home"))
	if o.binInHome {
		bin := filepath.Join(b.account.home, ".local", "bin", "nixgate")
		writeFile(t, bin, readFile(t, nixgateBin), 0o755)
		b.account.chown(t, filepath.Join(b.account.home, ".local"))
		b.account.chown(t, filepath.Dir(bin))
		b.account.chown(t, bin)
		b.bin = bin
	}
	b.port = freePort(t)
	b.metricsPort = freePort(t)
	b.config = filepath.Join(root, "etc", "nixgate.toml")
	b.log = filepath.Join(root, "log", mode+".log")
	b.storeDir = filepath.Join(root, "stores", "builder")
	b.allowedDir = filepath.Join(root, "stores", "alt")
	b.store = "local?root=" + b.storeDir
	b.allowedStore = "local?root=" + b.allowedDir
	b.otherStore = "local?root=" + filepath.Join(root, "stores", "other")
	b.clientStoreDir = filepath.Join(root, "client-store")

	// The builder's stores and log belong to the build account.
	for _, d := range []string{b.storeDir, b.allowedDir, filepath.Dir(b.log)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b.account.chown(t, d)
	}
	// state_dir is root's, as docs/exec-mode.md lays it out (nixgate
	// refuses one the account can change: a build could end a drain or
	// replace serve's host key), with, for exec mode, the account's lock
	// directory and usage store in it.
	state := filepath.Join(root, "serve-state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	switch {
	case mode == modeServe && sandbox != "":
		// A builder without root: serve runs as the account, whose
		// files are its own.
		b.account.chown(t, state)
	case mode == modeExec:
		for _, d := range []string{"run", "build-logs"} {
			if err := os.Mkdir(filepath.Join(state, d), 0o700); err != nil {
				t.Fatal(err)
			}
			b.account.chown(t, filepath.Join(state, d))
		}
		writeFile(t, filepath.Join(state, "usage.db"), "", 0o600)
		b.account.chown(t, filepath.Join(state, "usage.db"))
	}
	client := filepath.Join(root, "client")
	b.keys = map[string]clientKey{}
	for name := range keyLines {
		b.keys[name] = newClientKey(t, filepath.Join(client, "keys"), name)
	}
	b.writeConfig(t)
	b.writeHome(t)
	var hostPub ssh.PublicKey
	if mode == modeServe {
		hostPub = b.startServe(t)
	} else {
		hostPub = b.startSSHD(t)
	}
	b.writeClient(t, client, hostPub)
	return b
}

// forEachMode runs f as a subtest against a fresh builder of each mode.
func forEachMode(t *testing.T, f func(t *testing.T, b *builder)) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) { f(t, newBuilder(t, mode)) })
	}
}

// configuredKeys are the keys of nixgate.toml; the others exist only as
// authorized_keys lines (exec) or not at all (serve).
var configuredKeys = map[string]string{
	"build":      "role = \"build\"",
	"substitute": "role = \"substitute\"",
	"lan":        "role = \"build\"\nfrom = [\"192.0.2.0/24\"]",
	"old":        "role = \"build\"\nexpires = 2020-01-01",
	"op":         "role = \"shell\"",
	"trusted":    "role = \"build\"\nfull_trust = true",
}

// writeConfig writes nixgate.toml, with configuredKeys, and the copy
// the baseline key's older nixgate reads.
func (b *builder) writeConfig(t testing.TB) {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `user = %q
listen = ["127.0.0.1:%d"]
state_dir = %q

[nix]
store = %q
allowed_stores = [%q]
env = { NIX_CONFIG = "substituters =\nexperimental-features = nix-command" }

[log]
file = %q

[limits]
drain_timeout = "90s"

[metrics]
listen = "127.0.0.1:%d"
`, b.account.name, b.port, filepath.Join(b.root, "serve-state"), b.store, b.allowedStore, b.log, b.metricsPort)
	for _, name := range []string{"build", "substitute", "lan", "old", "op", "trusted"} {
		fmt.Fprintf(&cfg, "\n[[keys]]\nname = %q\n%s\npublic_key = %q\n", name, configuredKeys[name], b.keys[name].publicKey)
	}
	doc := cfg.String()
	if b.binDir != "" {
		doc = strings.Replace(doc, "[nix]\n", fmt.Sprintf("[nix]\nbin_dirs = [%q]\n", b.binDir), 1)
	}
	if b.daemonSocket != "" {
		doc = strings.Replace(doc, fmt.Sprintf("store = %q\n", b.store), "store = \"daemon\"\n", 1)
		doc = strings.Replace(doc, `env = { NIX_CONFIG`, fmt.Sprintf("env = { NIX_DAEMON_SOCKET_PATH = %q, NIX_CONFIG", b.daemonSocket), 1)
	}
	if b.sandbox != "" {
		// The store is the sandbox's /nix, the account's ~/.nix.
		doc = strings.Replace(doc, fmt.Sprintf("store = %q\nallowed_stores = [%q]\n", b.store, b.allowedStore), "", 1)
		doc += fmt.Sprintf("\n[sandbox]\nmode = %q\nnix_user_chroot = %q\n", b.sandbox, nixUserChroot)
		if b.sandbox == "proot" {
			// The tests run build keys under proot, which cannot contain
			// them: the operator's acknowledgement.
			doc += "proot_build_keys = \"same-uid-not-contained\"\n"
		}
		b.storeDir = filepath.Join(b.account.home, ".nix")
	}
	writeFile(t, b.config, doc, 0o644)
	writeFile(t, b.config+".baseline", strings.Replace(doc, "\nfull_trust = true", "", 1), 0o644)
}

// writeHome writes authorized_keys and makes the home read-only, as the
// README tells operators to.
func (b *builder) writeHome(t testing.TB) {
	t.Helper()
	var lines []string
	for name, opts := range keyLines {
		baseline := os.Getenv("NIXGATE_BENCH_BASELINE")
		if baseline == "" {
			baseline = nixgateBin
		}
		opts = strings.NewReplacer("%s", nixgateBin, "%c", b.config, "%S", b.store, "%B", baseline, "%C", b.config+".baseline").Replace(opts)
		lines = append(lines, opts+" "+b.keys[name].publicKey+" "+name)
	}
	ak := filepath.Join(b.account.home, ".ssh", "authorized_keys")
	writeFile(t, ak, strings.Join(lines, "\n")+"\n", 0o644)
	if b.sandbox != "" {
		// The store, ~/.nix, made as the README's reader makes it
		// (nixgate refuses a store_dir that is not there), and the
		// account's to write.
		if err := os.MkdirAll(filepath.Join(b.account.home, ".nix"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.account.chown(t, b.account.home)
	switch b.sandbox {
	case "":
		mustRun(t, nil, "chmod", "-R", "a-w", b.account.home)
	case "proot":
		// A build escapes proot (it runs as the account), so exec mode
		// checks that the home is read-only in proot mode too.
		mustRun(t, nil, "chmod", "a-w", b.account.home, filepath.Dir(ak), ak)
	}
}

// startSSHD starts a real OpenSSH sshd on 127.0.0.1 with its own config
// and host key; it is stopped, by PID, when the test ends. It returns the
// host public key.
func (b *builder) startSSHD(t testing.TB) ssh.PublicKey {
	t.Helper()
	dir := filepath.Join(b.root, "sshd")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "nixgate-e2e host")
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519_key")
	writeFile(t, hostKey, string(pem.EncodeToMemory(block)), 0o600)
	cfg := filepath.Join(dir, "sshd_config")
	writeFile(t, cfg, fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers %s
StrictModes yes
# Like many sshd setups, a PATH in which Nix cannot be found.
SetEnv PATH=/nonexistent
# Room for the concurrency benchmark (the default drops above 10).
MaxStartups 1024
LogLevel VERBOSE
# SSH_USER_AUTH: nixgate exec checks a CA principal's certificate.
ExposeAuthInfo yes
`, b.port, hostKey, b.account.name), 0o644)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	b.sshdLog = filepath.Join(dir, "sshd.log")
	logf, err := os.Create(b.sshdLog)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	b.sshd = cmd
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			if data, err := os.ReadFile(b.sshdLog); err == nil {
				t.Logf("sshd log:\n%s", data)
			}
		}
	})
	waitPort(t, fmt.Sprintf("127.0.0.1:%d", b.port), exited)
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// writeClient writes the client side: an ssh config with one host alias
// per key (Nix 2.8 does not understand a port in the store URL), the
// pinned host key, and a Nix configuration whose store is a directory of
// its own, so that client and builder never share /nix/store.
func (b *builder) writeClient(t testing.TB, dir string, hostKey ssh.PublicKey) {
	t.Helper()
	knownHosts := filepath.Join(dir, "known_hosts")
	writeFile(t, knownHosts, "nixgate-e2e-builder "+string(ssh.MarshalAuthorizedKey(hostKey)), 0o644)
	var cfg strings.Builder
	for name, k := range b.keys {
		fmt.Fprintf(&cfg, `Host %s
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  HostKeyAlias nixgate-e2e-builder
  UserKnownHostsFile %s
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
  ControlMaster no

`, b.Host(name), b.port, b.account.name, k.path, knownHosts)
	}
	b.sshConfig = filepath.Join(dir, "ssh_config")
	writeFile(t, b.sshConfig, cfg.String(), 0o644)
	writeFile(t, filepath.Join(dir, "nix", "nix.conf"), fmt.Sprintf(`store = local?root=%s
substituters =
experimental-features = nix-command
sandbox = false
`, b.clientStoreDir), 0o644)
	b.clientEnv = []string{
		"NIX_CONF_DIR=" + filepath.Join(dir, "nix"),
		"NIX_SSHOPTS=-F " + b.sshConfig,
		"NIX_REMOTE=",
		"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}
}

// buildAccount is a system account created for one test run.
type buildAccount struct {
	name     string
	home     string
	uid, gid int
}

// newBuildAccount creates a system account with a /bin/sh login shell and
// a password that is not locked (sshd with UsePAM no refuses a locked
// one), and removes it when the test ends.
func newBuildAccount(t testing.TB, home string) buildAccount {
	t.Helper()
	name := fmt.Sprintf("ngt%06d", time.Now().UnixNano()%1000000)
	mustRun(t, nil, "useradd", "--system", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", "--user-group", name)
	t.Cleanup(func() {
		// The account's last processes may still be exiting after their
		// client left (a session's Nix gets SIGTERM when its client is
		// gone, SIGKILL 5 s later, then exec mode adds the session to
		// usage): try for a while.
		var out []byte
		var err error
		var left []byte
		for i := 0; i < 150; i++ {
			if out, err = exec.Command("userdel", name).CombinedOutput(); err == nil {
				return
			}
			if i == 0 {
				left, _ = exec.Command("ps", "-o", "pid,etime,args", "-u", name).CombinedOutput()
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("userdel %s: %v: %s\nthe account's processes then:\n%s", name, err, out, left)
	})
	mustRun(t, nil, "usermod", "-p", "*", name)
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return buildAccount{name: name, home: home, uid: uid, gid: gid}
}

// chown gives path (recursively) to the account.
func (a buildAccount) chown(t testing.TB, path string) {
	t.Helper()
	mustRun(t, nil, "chown", "-R", fmt.Sprintf("%d:%d", a.uid, a.gid), path)
}

// drain runs nixgate drain against b's configuration with args.
func (b *builder) drain(t testing.TB, args ...string) {
	t.Helper()
	mustRun(t, nil, append([]string{nixgateBin, "drain", "--config", b.config}, args...)...)
}

// waitBuilding waits, bounded, until the build account runs a sleep.
func waitBuilding(t testing.TB, b *builder) {
	t.Helper()
	for i := 0; i < 300; i++ {
		for _, p := range accountProcesses(b.account.uid) {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if bytes.Contains(data, []byte("sleep")) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the remote build never started")
}

// nixDaemon is Nix's daemon run as root by a test: the default store
// (/nix/store), a configuration of the test's own in which the build
// account is a trusted user, and a socket of its own.
type nixDaemon struct {
	// socket and confDir are paths on the host, under chroot for a
	// daemon in a chroot.
	socket, confDir string
	// chroot is the root of the Debian chroot the daemon runs in (a
	// newer Nix, nixChroot); empty for the host's Nix.
	chroot string
	// stop ends the daemon, by its process group, and waits for it; the
	// test's end calls it too.
	stop func()
}

// daemonSocketFor returns where the test's daemon will listen; the
// builder's configuration needs it before the daemon can start (which
// needs the builder's account).
func daemonSocketFor(t testing.TB) string {
	dir, err := os.MkdirTemp("", "nixgate-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	return filepath.Join(dir, "socket")
}

// newDaemonBuilder starts a builder of mode whose store is Nix's root
// daemon, and that daemon, with the build account in trusted-users.
// Serve mode takes sessions once its health check has seen the daemon
// answer (waitHealthy).
func newDaemonBuilder(t testing.TB, mode string) (*builder, *nixDaemon) {
	t.Helper()
	return newDaemonBuilderOf(t, mode, hostNix, true)
}

// limitBuildKey adds settings (TOML lines) to the key "build" in the
// builder's configuration and, in serve mode, waits for the reload;
// exec mode reads the file at its next session.
func (b *builder) limitBuildKey(t testing.TB, settings string) {
	t.Helper()
	const key = "name = \"build\"\nrole = \"build\"\n"
	cfg := readFile(t, b.config)
	if !strings.Contains(cfg, key) {
		t.Fatalf("no key build in:\n%s", cfg)
	}
	writeFile(t, b.config, strings.Replace(cfg, key, key+settings, 1), 0o644)
	if b.mode == modeServe {
		b.waitReload(t)
	}
}

// startNixDaemon starts nix-daemon as root on socket with trustedUser in
// trusted-users, and stops it, by PID, when the test ends.
func startNixDaemon(t testing.TB, socket, trustedUser string) *nixDaemon {
	t.Helper()
	d := &nixDaemon{socket: socket, confDir: filepath.Join(filepath.Dir(socket), "conf")}
	d.writeConf(t, trustedUser)
	os.Remove(socket) // a daemon's before: the new one must make its own
	cmd := exec.Command("nix-daemon")
	// Not NIX_REMOTE=daemon: the daemon would be its own client.
	cmd.Env = append(os.Environ(), "NIX_CONF_DIR="+d.confDir, "NIX_DAEMON_SOCKET_PATH="+d.socket, "NIX_REMOTE=")
	d.start(t, cmd)
	return d
}

// writeConf writes the daemon's nix.conf: trusted (a user name or uid;
// empty for none) and root in trusted-users, builds without users or a
// sandbox, no substituters.
func (d *nixDaemon) writeConf(t testing.TB, trusted string) {
	t.Helper()
	writeFile(t, filepath.Join(d.confDir, "nix.conf"), fmt.Sprintf(`trusted-users = root %s
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
`, trusted), 0o644)
}

// start runs cmd, the daemon, in a process group of its own with its
// output in daemon.log beside the socket, sets d.stop (SIGTERM to the
// group, SIGKILL after 10 s; the test's end calls it too), and waits up
// to 10 s for the socket.
func (d *nixDaemon) start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(filepath.Dir(d.socket), "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	d.stop = sync.OnceFunc(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	t.Cleanup(d.stop)
	for i := 0; i < 400; i++ {
		if _, err := os.Stat(d.socket); err == nil {
			return
		}
		select {
		case <-exited:
			t.Fatalf("nix-daemon exited: %s", readFile(t, logFile.Name()))
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Fatalf("nix-daemon did not create %s within 10 s: %s", d.socket, readFile(t, logFile.Name()))
}

// env is what a root client of the daemon needs (in its chroot, for a
// daemon in one).
func (d *nixDaemon) env() []string {
	return []string{"NIX_CONF_DIR=" + d.inside(d.confDir), "NIX_DAEMON_SOCKET_PATH=" + d.inside(d.socket), "NIX_REMOTE=daemon"}
}

// inside is hostPath as the daemon's chroot sees it.
func (d *nixDaemon) inside(hostPath string) string {
	if d.chroot == "" {
		return hostPath
	}
	return "/" + strings.TrimPrefix(strings.TrimPrefix(hostPath, d.chroot), "/")
}

// instantiate writes a derivation whose builder is /bin/sh into the
// daemon's store and returns its path; nonce makes it new.
func (d *nixDaemon) instantiate(t testing.TB, nonce string) string {
	t.Helper()
	return d.instantiateScript(t, nonce, "echo "+nonce+" > $out")
}

// instantiateScript is instantiate for a derivation that runs script
// with /bin/sh (the test's daemon builds without a sandbox).
func (d *nixDaemon) instantiateScript(t testing.TB, nonce, script string) string {
	t.Helper()
	file := filepath.Join(filepath.Dir(d.socket), "drv-"+nonce+".nix")
	writeFile(t, file, fmt.Sprintf(`derivation {
  name = "nixgate-hook-%s";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" %q ];
}
`, nonce, script), 0o644)
	var r result
	if d.chroot != "" {
		r = run(t, nil, nil, chrootArgv(d.chroot, append(d.env(), "nix-instantiate", d.inside(file))...)...)
	} else {
		r = run(t, d.env(), nil, "nix-instantiate", file)
	}
	if r.code != 0 {
		t.Fatalf("nix-instantiate through the test's daemon: %s\ndaemon log:\n%s", r, readFile(t, filepath.Join(filepath.Dir(d.socket), "daemon.log")))
	}
	return strings.TrimSpace(r.stdout)
}
