package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// hostKeys returns the host keys clients see: those of the public key
// file, when given; else serve mode's own, or the OpenSSH sshd's in exec
// mode (/etc/ssh).
func hostKeys(cfg *policy.Config, mode, file string) ([]ssh.PublicKey, error) {
	switch {
	case file != "":
		return keys.PublicKeyFiles([]string{file})
	case mode == "exec":
		return keys.PublicKeyFiles(keys.OpenSSHHostKeys)
	}
	return keys.PublicHostKeys(cfg.Serve.HostKeys, cfg.Serve.StateDir)
}

// checkMode refuses a --mode other than serve or exec.
func checkMode(cmd, mode string, stderr io.Writer) bool {
	if mode == "serve" || mode == "exec" {
		return true
	}
	fmt.Fprintf(stderr, "nixgate %s: --mode %q: want serve or exec\n", cmd, mode)
	return false
}

// servePort returns the port of serve mode's first listen address.
func servePort(cfg *policy.Config) int {
	if len(cfg.Serve.Listen) > 0 {
		if _, p, err := net.SplitHostPort(cfg.Serve.Listen[0]); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return 22
}

func keysHost(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys host", "[--config FILE] [--mode serve|exec] [--host NAME] [--port N] [--host-key FILE]", "Example:\n  nixgate keys host --config /etc/nixgate/nixgate.toml --host builder.example.org", stdout, stderr)
	configFile := fs.String("config", defaultConfigPath, "the nixgate configuration `FILE`")
	mode := fs.String("mode", "serve", "whose host keys to show: `MODE` serve (nixgate's) or exec (OpenSSH's)")
	hostname, _ := os.Hostname()
	host := fs.String("host", hostname, "the `NAME` clients use for the builder")
	port := fs.Int("port", 0, "the `PORT` clients use (default: serve mode's listen port, 22 for exec)")
	hostKey := fs.String("host-key", "", "the host's public key `FILE` (default: serve mode's, or /etc/ssh/ssh_host_*_key.pub for exec)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if !checkMode("keys host", *mode, stderr) {
		return exitUsage
	}
	cfg, err := config.Load(*configFile)
	if err == nil {
		err = heldFiles(cfg, servingAs(cfg.User)) // host keys vouched for from a configuration anyone could rewrite
	}
	if err != nil {
		return keysFail(stderr, "host", err)
	}
	ks, err := hostKeys(cfg, *mode, *hostKey)
	if err != nil {
		return keysFail(stderr, "host", err)
	}
	p := *port
	if p == 0 && *mode != "exec" {
		p = servePort(cfg)
	}
	name := keys.KnownHostsName(*host, p)
	for _, k := range ks {
		fmt.Fprintf(stdout, "%s (%s)\n", keys.Fingerprint(k), k.Type())
		fmt.Fprintf(stdout, "  known_hosts:   %s\n", keys.KnownHostsLine(name, k))
		fmt.Fprintf(stdout, "  publicHostKey: %s\n", keys.MachinesHostKey(k))
	}
	return exitOK
}

const clientConfigExample = `Prints, ready to paste on a Nix client, what it needs to use this builder:
the /etc/nix/machines line (with the builder's host key), the nix.buildMachines
entry for NixOS and nix-darwin, the ~/.ssh/config block with the pinned host
key, the lines that use the builder as a substituter, and the command that
proves it works. Run it on the builder.

Example:
  nixgate client-config --config /etc/nixgate/nixgate.toml --host builder.example.org \
      --key /root/.ssh/nixgate_ed25519 --systems x86_64-linux,i686-linux --max-jobs 8 \
      --features kvm,big-parallel`

func runClientConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("client-config", "--host NAME [options]", clientConfigExample, stdout, stderr)
	configFile := fs.String("config", defaultConfigPath, "the nixgate configuration `FILE`")
	mode := fs.String("mode", "serve", "whose host key clients see: `MODE` serve (nixgate's) or exec (OpenSSH's)")
	host := fs.String("host", "", "the `NAME` clients use for the builder (required)")
	address := fs.String("address", "", "the `ADDRESS` to connect to, when it differs from --host")
	port := fs.Int("port", 0, "the SSH `PORT` (default: serve mode's listen port, 22 for exec)")
	userName := fs.String("user", "", "the SSH `USER` (default: the configuration's user)")
	key := fs.String("key", "/root/.ssh/nixgate_ed25519", "the client's private key `PATH`, on the client")
	systems := fs.String("systems", nixSystem(), "comma-separated `SYSTEMS` the builder builds for")
	maxJobs := fs.Int("max-jobs", runtime.NumCPU(), "how many `JOBS` the builder takes at once")
	speed := fs.Int("speed-factor", 1, "the builder's speed `FACTOR` against others")
	features := fs.String("features", "", "comma-separated supported `FEATURES` (kvm, big-parallel, …)")
	mandatory := fs.String("mandatory-features", "", "comma-separated `FEATURES` a build must ask for to be sent here")
	protocol := fs.String("protocol", "ssh", "the store `PROTOCOL`: ssh (nix-store --serve) or ssh-ng (nix-daemon --stdio)")
	hostKey := fs.String("host-key", "", "the host's public key `FILE` clients pin (default: serve mode's, or /etc/ssh/ssh_host_*_key.pub for exec)")
	role := fs.String("role", "build", "the `ROLE` of the client's key: build (a remote builder and a substituter) or substitute (a substituter only)")
	certificate := fs.String("certificate", "", "the client's certificate `PATH`, on the client, when it logs in with one of a [[cas]] CA (default: none; ssh also finds KEY-cert.pub beside the key by itself)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *role != string(policy.RoleBuild) && *role != string(policy.RoleSubstitute) {
		fmt.Fprintf(stderr, "nixgate client-config: --role %q: want build or substitute\n", *role)
		return exitUsage
	}
	if !checkMode("client-config", *mode, stderr) {
		return exitUsage
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "nixgate client-config: "+policy.Line(err))
		return exitRefused
	}
	if *host == "" {
		fmt.Fprintln(stderr, "nixgate client-config: --host is required: the name clients use for this builder")
		return exitUsage
	}
	if *protocol != "ssh" && *protocol != "ssh-ng" {
		return fail(fmt.Errorf("--protocol %q: want ssh or ssh-ng", *protocol))
	}
	cfg, err := config.Load(*configFile)
	if err == nil {
		err = heldFiles(cfg, servingAs(cfg.User))
	}
	if err != nil {
		return fail(err)
	}
	ks, err := hostKeys(cfg, *mode, *hostKey)
	if err != nil {
		return fail(err)
	}
	hk := ks[0]
	p := *port
	if p == 0 {
		p = 22
		if *mode != "exec" {
			p = servePort(cfg)
		}
	}
	u := *userName
	if u == "" {
		u = cfg.User
	}
	addr := *address
	if addr == "" {
		addr = *host
	}
	list := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	pub := keys.MachinesHostKey(hk)
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *role == string(policy.RoleBuild) {
		fmt.Fprintf(w, "# /etc/nix/machines (nix.conf: builders = @/etc/nix/machines)\n")
		fmt.Fprintf(w, "%s://%s@%s %s %s %d %d %s %s %s\n\n", *protocol, u, *host, *systems, *key, *maxJobs, *speed, orDash(*features), orDash(*mandatory), pub)

		fmt.Fprintf(w, "# NixOS or nix-darwin configuration\n")
		fmt.Fprintf(w, "nix.distributedBuilds = true;\nnix.buildMachines = [{\n")
		fmt.Fprintf(w, "  hostName = %q;\n  sshUser = %q;\n  sshKey = %q;\n  protocol = %q;\n", *host, u, *key, *protocol)
		fmt.Fprintf(w, "  systems = [ %s ];\n  maxJobs = %d;\n  speedFactor = %d;\n", nixList(list(*systems)), *maxJobs, *speed)
		fmt.Fprintf(w, "  supportedFeatures = [ %s ];\n  mandatoryFeatures = [ %s ];\n  publicHostKey = %q;\n}];\n\n", nixList(list(*features)), nixList(list(*mandatory)), pub)
	}

	fmt.Fprintf(w, "# ~/.ssh/config of the user that runs the builds (root, for the Nix daemon)\n")
	if p != 22 {
		fmt.Fprintf(w, "# (required: no Nix setting gives ssh the port %d)\n", p)
	}
	certLine := ""
	if *certificate != "" {
		certLine = "CertificateFile " + *certificate
		if *role == string(policy.RoleBuild) && *certificate != *key+"-cert.pub" {
			fmt.Fprintf(w, "# (required: the machines line names the key, and ssh finds only %s-cert.pub beside it by itself)\n", *key)
		}
	}
	fmt.Fprintf(w, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n%s  IdentitiesOnly yes\n  HostKeyAlias %s\n\n", *host, addr, p, u, *key, indented(certLine, "  "), *host)
	fmt.Fprintf(w, "# ~/.ssh/known_hosts of that user\n%s\n\n", keys.KnownHostsLine(*host, hk))
	fmt.Fprintf(w, "# NixOS: the same for root's ssh, in configuration.nix\n")
	fmt.Fprintf(w, "programs.ssh.extraConfig = ''\n  Host %s\n    HostName %s\n    Port %d\n    User %s\n    IdentityFile %s\n%s    IdentitiesOnly yes\n    HostKeyAlias %s\n'';\n", *host, addr, p, u, *key, indented(certLine, "    "), *host)
	fmt.Fprintf(w, "programs.ssh.knownHosts.%s = { hostNames = [ %q ]; publicKey = %q; };\n\n", nixAttrName(*host), *host, strings.TrimSpace(keys.AuthorizedKey(hk)))

	if *role == string(policy.RoleBuild) {
		fmt.Fprintf(w, "# Use the builder as a substituter too (nix.conf)\n")
	} else {
		fmt.Fprintf(w, "# Use the builder as a substituter (nix.conf): a substitute key reads, never builds or writes\n")
	}
	fmt.Fprintf(w, "extra-substituters = %s://%s@%s\n", *protocol, u, *host)
	account := buildAccount(cfg)
	if cachePub, err := builderCachePublicKey(cfg, account); err == nil {
		fmt.Fprintf(w, "extra-trusted-public-keys = %s\n\n", cachePub)
	} else {
		writeSigningAdvice(w, cfg, account, *host, err)
	}
	if *role == string(policy.RoleBuild) && !cfg.BuildLogs.Off {
		fmt.Fprintf(w, "# A failed remote build's log, kept on the builder for this key (a shell function,\n# for the user whose ~/.ssh/config has the block above): nixgate_log /nix/store/…drv\n")
		fmt.Fprintf(w, "nixgate_log() { ssh %s nixgate log \"$1\"; }\n\n", *host)
	}
	fmt.Fprintf(w, "# Prove it works (the nix command is experimental: Nix 2.8 needs the flag)\nnix --extra-experimental-features nix-command store ping --store %s://%s@%s\n", *protocol, u, *host)
	return exitOK
}

// indented returns line as a line of its own after indent; "" for an
// empty line.
func indented(line, indent string) string {
	if line == "" {
		return ""
	}
	return indent + line + "\n"
}

// nixAttrName is name as a Nix attribute name: quoted unless it is a
// plain identifier.
func nixAttrName(name string) string {
	if regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`).MatchString(name) {
		return name
	}
	return strconv.Quote(name)
}

func nixList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, " ")
}

// nixSystem is this machine's Nix system name.
func nixSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// buildAccount returns the build account of cfg as this machine knows
// it; only its name when it does not (its home unknown).
func buildAccount(cfg *policy.Config) sandbox.Account {
	if a, _, err := sandbox.LookupAccount(cfg.User, false); err == nil {
		return a
	}
	return sandbox.Account{Name: cfg.User}
}

// writeSigningAdvice writes, as comments, why the builder might sign
// (why is why it does not) and how, for the Nix that nixgate runs
// (sandbox.Signing): the commands, as whom, and the [nix] env line when
// the account's own Nix signs.
func writeSigningAdvice(w io.Writer, cfg *policy.Config, a sandbox.Account, host string, why error) {
	self := sandbox.Whoami()
	s := sandbox.Signing(cfg, a, host+"-1", self)
	writeComment(w, fmt.Sprintf("The builder does not sign what it builds (%v). %s. To sign, on the builder, as %s:", why, upperFirst(sandbox.SigningWhy), s.As))
	for _, c := range s.Commands {
		fmt.Fprintf(w, "#   %s\n", c)
	}
	if s.Env != "" {
		writeComment(w, "and, for the Nix that nixgate runs, which sees the key as "+s.NixSees+" (nixgate serve rereads the configuration within two seconds, exec mode at each session), "+s.EnvWhere+":")
		if s.NewTable {
			fmt.Fprintf(w, "#   [nix]\n")
		}
		fmt.Fprintf(w, "#   %s\n", s.Env)
	}
	fmt.Fprintf(w, "# then run this again for the extra-trusted-public-keys line.\n\n")
}

// writeComment writes text as comment lines of at most about 78 columns.
func writeComment(w io.Writer, text string) {
	line := "#"
	for _, word := range strings.Fields(text) {
		if len(line) > 1 && len(line)+1+len(word) > 78 {
			fmt.Fprintln(w, line)
			line = "#"
		}
		line += " " + word
	}
	fmt.Fprintln(w, line)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// builderCachePublicKey derives the builder's binary-cache public key
// from the secret-key-files of its Nix configuration (/etc/nix/nix.conf,
// and NIX_CONFIG in [nix] env unless the daemon signs:
// sandbox.SecretKeyFiles), read where nixgate finds the file (in the
// sandbox modes, /nix/… is in store_dir) for account a.
func builderCachePublicKey(cfg *policy.Config, a sandbox.Account) (string, error) {
	files := sandbox.SecretKeyFiles(cfg, a)
	if len(files) == 0 {
		return "", errors.New("no secret-key-files in its Nix configuration")
	}
	data, err := os.ReadFile(sandbox.OutsidePath(cfg, a, files[0]))
	if err != nil {
		return "", err
	}
	return cachePublicKey(strings.TrimSpace(string(data)))
}

// cachePublicKey turns a Nix secret key ("name:base64 of the 64-byte
// ed25519 private key") into its public key ("name:base64 of 32 bytes").
func cachePublicKey(secret string) (string, error) {
	name, b64, ok := strings.Cut(secret, ":")
	if !ok {
		return "", errors.New("the secret key is not NAME:BASE64")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return "", errors.New("the secret key is not an ed25519 key")
	}
	return name + ":" + base64.StdEncoding.EncodeToString(ed25519.PrivateKey(raw).Public().(ed25519.PublicKey)), nil
}
