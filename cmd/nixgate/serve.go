package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/gateway"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	keyusage "github.com/nixgate/nixgate/usage"
)

// healthInterval is how often serve checks whether Nix on the builder
// works: often enough that a full disk or a stopped daemon sends builds
// elsewhere within seconds, rarely enough to cost nothing (a statfs, a
// stat, and for the daemon's store one short connection).
const healthInterval = 2 * time.Second

const serveExample = `Runs nixgate as the builder's SSH server. Only the configured client keys
may log in, as the configured user, and only to run Nix's own commands.

Without --config it reads ` + defaultConfigPath + `, and when that does
not exist (or with --embedded) it starts on an embedded default for trying
it out: 127.0.0.1:2222, everything under ./.state/serve, client keys from
./.state/serve/authorized_keys, one line per key. With no key there yet, it
generates a client key pair, ./.state/serve/client_ed25519, authorizes it
(role build) and prints the Nix command that uses it.

Examples:
  nixgate serve --embedded                         # what make run runs
  nixgate serve --embedded --listen 127.0.0.1:2200 # when 2222 is taken
  nixgate serve --config /etc/nixgate/nixgate.toml

SIGHUP, or a change to the configuration or keys file, reloads them (a
broken file is reported and the old configuration stays); SIGTERM stops
accepting, lets running sessions finish for limits.drain_timeout, then
ends them.`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "[--config FILE | --embedded] [--listen HOST:PORT]…", serveExample, stdout, stderr)
	configPath := fs.String("config", "", "the nixgate configuration `FILE` (default "+defaultConfigPath+", or the embedded default when that does not exist)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration (state in ./.state/serve), even when "+defaultConfigPath+" exists")
	var listen listFlag
	fs.Var(&listen, "listen", "listen on `HOST:PORT` instead of the configuration's addresses (repeatable)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nixgate serve: "+format+"\n", a...)
		return exitRefused
	}
	if *embedded && *configPath != "" {
		fmt.Fprintln(stderr, "nixgate serve: give --config or --embedded, not both")
		return exitUsage
	}
	src, err := serveSource(*configPath, *embedded, listen)
	if err != nil {
		return fail("%v", err)
	}
	load, source := src.load, src.name()
	cfg, err := load()
	if err != nil {
		return fail("%v", err)
	}
	identity := ""
	if src.embedded() {
		// Trying it out: a client key of its own when there is none. The
		// state directory is open to all: as root, Nix runs as nobody in
		// a store there.
		if err := os.MkdirAll(cfg.Serve.StateDir, 0o755); err != nil {
			return fail("%v", err)
		}
		if identity, err = embeddedClientKey(cfg, stderr); err != nil {
			return fail("%v", err)
		}
		if cfg, err = load(); err != nil {
			return fail("%v", err)
		}
	}
	if !hasLoginKey(cfg) {
		if src.embedded() {
			return fail("no key may log in: add one line per client key to %s, such as role=\"build\" ssh-ed25519 AAAA… you@laptop", cfg.AuthorizedKeys)
		}
		return fail("no key may log in: add one line per client key to %s, such as role=\"build\" ssh-ed25519 AAAA… you@laptop, or a [[keys]] entry with public_key to %s", orNone(cfg.AuthorizedKeys), source)
	}
	log, closeLog, err := serveLog(cfg.Log.File, stderr)
	if err != nil {
		return fail("%v", err)
	}
	defer closeLog()
	if p := os.Getenv("NIXGATE_CPUPROFILE"); p != "" {
		// For finding where time goes: a CPU profile until nixgate stops.
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}

	account, cred, err := serveAccount(cfg)
	if err != nil {
		return fail("%v", err)
	}
	if err := prepareStore(cfg, cred); err != nil {
		return fail("%v", err)
	}
	if err := checkSandbox(cfg, account, cred); err != nil {
		return fail("%v", strings.TrimPrefix(err.Error(), "sandbox: "))
	}
	if path, dirs, err := sandbox.Which(cfg, account, policy.NixStore); err == nil {
		log.Info("nix", "nix-store", path, "bin_dirs", dirs, "sandbox", cfg.Sandbox.Mode, "why", "the first of bin_dirs that holds it")
	}
	signers, generated, err := keys.LoadHostKeys(cfg.Serve.HostKeys, cfg.Serve.StateDir)
	if err != nil {
		return fail("%v", err)
	}
	for _, s := range signers {
		log.Info("host key", "type", s.PublicKey().Type(), "fingerprint", keys.Fingerprint(s.PublicKey()), "generated", generated)
	}
	// Watch from before the server is ready: a change made as soon as it
	// is, is a change.
	var running atomic.Pointer[gateway.Server]
	changed := watchFiles(func() []string {
		if s := running.Load(); s != nil {
			return []string{source, s.Config().AuthorizedKeys}
		}
		return []string{source, cfg.AuthorizedKeys}
	}, 2*time.Second)
	var metrics *gateway.Metrics
	if cfg.Serve.MetricsListen != "" {
		metrics = gateway.NewMetrics()
	}
	srv, err := gateway.New(gateway.Options{Config: cfg, HostSigners: signers, Account: account, Credential: cred, Logger: log, Metrics: metrics,
		Usage: &keyusage.Recorder{StateDir: cfg.Serve.StateDir, Log: log}})
	if err != nil {
		return fail("%v", err)
	}
	running.Store(srv)
	// The drain file (nixgate drain): sessions read it themselves; this
	// only logs a change, and shows it in the metrics, when it happens.
	drainChanged := watchFiles(func() []string {
		p, _ := filepath.Abs(admission.DrainPath(srv.Config().Serve.StateDir))
		return []string{p}
	}, 2*time.Second)
	// Health (the store writable, free space above min_free, the daemon
	// answering) is checked here, off the sessions' path: they read the
	// last verdict.
	stopHealth := make(chan struct{})
	defer close(stopHealth)
	go func() {
		tick := time.NewTicker(healthInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				srv.CheckHealth()
			case <-stopHealth:
				return
			}
		}
	}()
	listeners, err := serveListeners(cfg)
	if err != nil {
		return fail("%v", err)
	}
	if metrics != nil {
		ml, err := net.Listen("tcp", cfg.Serve.MetricsListen)
		if err != nil {
			return fail("metrics listener: %v", err)
		}
		ms := &http.Server{Handler: metrics.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		go ms.Serve(ml)
		log.Info("metrics", "listen", ml.Addr().String())
	}
	errc := make(chan error, len(listeners))
	warnFullTrust(cfg, log, stderr)
	warnProot(cfg, log, stderr)
	for _, l := range listeners {
		log.Info("listening", "addr", l.Addr().String(), "user", cfg.User, "config", source)
		go func() { errc <- srv.Serve(l) }()
	}
	writeKnownHosts(cfg, listeners, signers, log)
	fmt.Fprintln(stderr, connectHint(cfg, listeners, identity))
	daemon.SdNotify(false, daemon.SdNotifyReady)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case <-changed:
			log.Info("configuration or keys file changed")
			reload(srv, load, log, stderr)
		case <-drainChanged:
			srv.CheckDrain()
		case err := <-errc:
			if errors.Is(err, gateway.ErrServerClosed) {
				return exitOK
			}
			return fail("%v", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(srv, load, log, stderr)
				continue
			}
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			drain := srv.Config().Serve.Limits.DrainTimeout
			log.Info("shutting down", "signal", sig.String(), "running", srv.Running(), "drain_timeout", drain.String())
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			err := srv.Shutdown(ctx)
			cancel()
			if err != nil {
				log.Warn("drain timeout: running sessions were ended", "reason", err.Error())
			}
			log.Info("stopped")
			return exitOK
		}
	}
}

// watchFiles reports on the returned channel when one of the files named
// by files changes (size, time, or inode), checking every interval.
func watchFiles(files func() []string, interval time.Duration) <-chan struct{} {
	type stamp struct {
		size  int64
		mtime time.Time
		ino   uint64
	}
	look := func() map[string]stamp {
		m := map[string]stamp{}
		for _, f := range files() {
			if f == "" || !filepath.IsAbs(f) {
				continue
			}
			fi, err := os.Stat(f)
			if err != nil {
				m[f] = stamp{}
				continue
			}
			st := stamp{size: fi.Size(), mtime: fi.ModTime()}
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				st.ino = uint64(sys.Ino)
			}
			m[f] = st
		}
		return m
	}
	out := make(chan struct{}, 1)
	last := look()
	go func() {
		for range time.Tick(interval) {
			now := look()
			if !maps.Equal(now, last) {
				last = now
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// reload loads the configuration again and puts it in force; a broken
// one is reported and the old one stays.
func reload(srv *gateway.Server, load func() (*policy.Config, error), log *slog.Logger, stderr io.Writer) {
	daemon.SdNotify(false, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+fmt.Sprint(monotonicUsec()))
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	cfg, err := load()
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nixgate serve: reload failed, keeping the old configuration: %v\n", err)
		log.Error("reload failed, keeping the old configuration", "reason", err.Error())
		return
	}
	log.Info("reloaded", "keys", len(cfg.Keys))
	warnFullTrust(cfg, log, stderr)
	warnProot(cfg, log, stderr)
}

// warnProot says, at start-up and on every reload, that proot mode
// cannot contain a build, and what becomes of the build keys: refused,
// or let in by the operator's acknowledgement.
func warnProot(cfg *policy.Config, log *slog.Logger, stderr io.Writer) {
	if cfg.Sandbox.Mode != policy.SandboxProot {
		return
	}
	var build []string
	for _, k := range cfg.Keys {
		if k.Role == policy.RoleBuild {
			build = append(build, k.Name)
		}
	}
	if why := cfg.Sandbox.BuildKeysRefusal(); why != "" {
		fmt.Fprintf(stderr, "nixgate serve: %s (build keys refused: %s)\n", why, strings.Join(build, ", "))
		log.Warn("proot: build keys refused", "reason", why, "keys", build)
		return
	}
	fmt.Fprintf(stderr, "nixgate serve: %s; proot_build_keys = %q lets build keys in anyway: %s\n", policy.ProotUncontained, policy.ProotBuildKeysAck, strings.Join(build, ", "))
	log.Warn("proot: build keys not contained", "reason", policy.ProotUncontained, "keys", build, "proot_build_keys", policy.ProotBuildKeysAck)
}

// warnFullTrust says, at start-up and on every reload, which keys pass
// the Nix protocols unfiltered.
func warnFullTrust(cfg *policy.Config, log *slog.Logger, stderr io.Writer) {
	for _, k := range cfg.Keys {
		if k.FullTrust {
			fmt.Fprintf(stderr, "nixgate serve: key %q has full_trust: its Nix operations are not filtered (with the build account in trusted-users it is root on this builder)\n", k.Name)
			log.Warn("full_trust key: Nix operations not filtered", "key", k.Name, "role", k.Role)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd's
// reload protocol (Type=notify-reload) wants with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func orNone(s string) string {
	if s == "" {
		return "an authorized_keys file (set authorized_keys)"
	}
	return s
}

// serveAccount returns the account commands run as. As root, children
// get that account's uid, gid and groups; otherwise they run as nixgate's
// own user, which must then be the configured one.
func serveAccount(cfg *policy.Config) (sandbox.Account, *syscall.Credential, error) {
	if os.Geteuid() == 0 {
		a, cred, err := sandbox.LookupAccount(cfg.User, true)
		return a, cred, err
	}
	me, err := user.Current()
	if err != nil {
		return sandbox.Account{}, nil, err
	}
	if me.Username != cfg.User {
		return sandbox.Account{}, nil, fmt.Errorf("running as %q, so commands can only run as %q, but the configuration says user = %q: start nixgate as root or set user = %q", me.Username, me.Username, cfg.User, me.Username)
	}
	return sandbox.Account{Name: me.Username, Home: me.HomeDir}, nil, nil
}

// checkSandbox checks that Nix can run the way the configuration says:
// found in bin_dirs when run directly, run for real inside the sandbox
// otherwise.
func checkSandbox(cfg *policy.Config, account sandbox.Account, cred *syscall.Credential) error {
	if cfg.Sandbox.Mode == policy.SandboxDirect {
		_, err := sandbox.Resolve(policy.NixStore, cfg.BinDirs(), account.Home)
		return err
	}
	if cred != nil {
		return fmt.Errorf("sandbox.mode %s is for a builder without root: run nixgate serve as %s itself, or use sandbox.mode = \"direct\" as root", cfg.Sandbox.Mode, cfg.User)
	}
	return sandbox.Check(cfg, account)
}

// prepareStore creates the directory of a configured local?root= store
// when it is missing, owned by the build user.
func prepareStore(cfg *policy.Config, cred *syscall.Credential) error {
	root, ok := strings.CutPrefix(cfg.Nix.Store, "local?root=")
	if !ok || strings.ContainsAny(root, "&?") || !filepath.IsAbs(root) {
		return nil
	}
	if _, err := os.Stat(root); err == nil {
		return nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating the store directory: %w", err)
	}
	if cred != nil {
		return os.Chown(root, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// serveListeners returns the sockets systemd passed (socket activation),
// or listens on cfg's addresses.
func serveListeners(cfg *policy.Config) ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []net.Listener
	for _, l := range ls {
		if l != nil {
			out = append(out, l)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	out, err = gateway.Listen(cfg.Serve.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s (is another sshd or nixgate on it? nixgate serve --listen HOST:PORT listens elsewhere)", strings.TrimPrefix(err.Error(), "gateway: "))
	}
	return out, nil
}

// writeKnownHosts writes state_dir/known_hosts with the host keys under
// every name a client on this host may use for the listening addresses,
// for clients to pin.
func writeKnownHosts(cfg *policy.Config, ls []net.Listener, signers []gossh.Signer, log *slog.Logger) {
	var names []string
	for _, l := range ls {
		for _, addr := range clientAddrs(l.Addr()) {
			n := addr
			if host, port, err := net.SplitHostPort(addr); err == nil {
				p, _ := strconv.Atoi(port)
				n = keys.KnownHostsName(host, p)
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	var b strings.Builder
	for _, s := range signers {
		b.WriteString(keys.KnownHostsLine(strings.Join(names, ","), s.PublicKey()) + "\n")
	}
	p := filepath.Join(cfg.Serve.StateDir, "known_hosts")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		log.Warn("could not write known_hosts", "path", p, "reason", err.Error())
	}
}

// clientAddrs returns the host:port addresses a client uses to reach a
// listener on a: a itself, or for a wildcard (0.0.0.0, [::]) the loopback
// addresses and this host's name, the first of them the one to try.
func clientAddrs(a net.Addr) []string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return []string{a.String()}
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return []string{a.String()}
	}
	// A [::] listener may be dual-stack, so 127.0.0.1 reaches it too.
	out := []string{net.JoinHostPort("127.0.0.1", port)}
	if ip.To4() == nil {
		out = append(out, net.JoinHostPort("::1", port))
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, net.JoinHostPort(h, port))
	}
	return out
}

// connectHint tells a person how to reach the server from Nix: the first
// address a client on this host can use, and the command to try. identity
// is the client's private key file to name, or "".
func connectHint(cfg *policy.Config, ls []net.Listener, identity string) string {
	addr := clientAddrs(ls[0].Addr())[0]
	host, port, _ := net.SplitHostPort(addr)
	var on []string
	for _, l := range ls {
		on = append(on, l.Addr().String())
	}
	where := addr
	if len(on) > 1 || on[0] != addr {
		where += " (listening on " + strings.Join(on, ", ") + ")"
	}
	var opts []string
	if port != "22" {
		opts = append(opts, "-p "+port)
	}
	if identity != "" {
		opts = append(opts, "-i "+identity, "-o IdentitiesOnly=yes")
	}
	opts = append(opts, "-o UserKnownHostsFile="+filepath.Join(cfg.Serve.StateDir, "known_hosts"))
	return fmt.Sprintf("nixgate serve: ready on %s; try:\n  NIX_SSHOPTS=%q nix --extra-experimental-features nix-command store ping --store ssh://%s@%s",
		where, strings.Join(opts, " "), cfg.User, host)
}
