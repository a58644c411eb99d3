package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// addHost adds an ssh config alias like the build key's, for another key.
func (b *builder) addHost(t testing.TB, name, keyPath string) {
	t.Helper()
	cfg := readFile(t, b.sshConfig)
	i := strings.Index(cfg, "Host "+b.Host("build")+"\n")
	if i < 0 {
		t.Fatalf("no build host in %s", b.sshConfig)
	}
	block := cfg[i:]
	if j := strings.Index(block, "\n\n"); j >= 0 {
		block = block[:j+2]
	}
	block = strings.Replace(block, "Host "+b.Host("build"), "Host "+b.Host(name), 1)
	block = strings.Replace(block, b.keys["build"].path, keyPath, 1)
	writeFile(t, b.sshConfig, cfg+block, 0o644)
}

// eventuallyNix retries a Nix command until ok says its result is the
// wanted one, bounded; serve mode picks up key changes within seconds.
func (b *builder) eventuallyNix(t testing.TB, ok func(result) bool, argv ...string) result {
	t.Helper()
	var r result
	for i := 0; i < 40; i++ {
		if r = b.nix(t, argv...); ok(r) {
			return r
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%q never gave the wanted result; last: %s", argv, r)
	return r
}

// TestKeysAuthorizeRevoke goes from nothing to a working nix store ping
// with nixgate's key tools alone, in both modes, and back.
func TestKeysAuthorizeRevoke(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		keysFile := filepath.Join(b.root, "etc", "authorized_keys")
		cfg := readFile(t, b.config)
		writeFile(t, b.config, strings.Replace(cfg, "\n", fmt.Sprintf("\nauthorized_keys = %q\n", keysFile), 1), 0o644)
		sshAK := filepath.Join(b.account.home, ".ssh", "authorized_keys")
		beforeAK := readFile(t, sshAK)

		key := filepath.Join(b.root, "client", "keys", "fresh")
		r := run(t, nil, nil, nixgateBin, "keys", "gen", "-f", key, "-C", "fresh@test")
		if r.code != 0 {
			t.Fatalf("keys gen: %s", r)
		}
		for p, mode := range map[string]os.FileMode{key: 0o600, key + ".pub": 0o644} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
				t.Fatalf("%s: %v %v; want mode %o", p, fi, err, mode)
			}
		}
		if r := run(t, nil, nil, nixgateBin, "keys", "gen", "-f", key); r.code == 0 || !strings.Contains(r.stderr, "not overwriting") {
			t.Fatalf("keys gen over an existing key: %s", r)
		}

		authorize := []string{nixgateBin, "keys", "authorize", "--config", b.config, "--name", "fresh", "--role", "build"}
		if b.mode == modeExec {
			authorize = append(authorize, "--exec", sshAK)
		}
		if r := run(t, nil, nil, append(authorize, key+".pub")...); r.code != 0 {
			t.Fatalf("keys authorize: %s", r)
		}
		// Again, as a retry: nothing changes. The name for another key: refused.
		keysBefore := readFile(t, keysFile)
		if r := run(t, nil, nil, append(authorize, key+".pub")...); r.code != 0 || !strings.Contains(r.stdout, "authorized already") || readFile(t, keysFile) != keysBefore {
			t.Fatalf("authorizing the same key twice: %s", r)
		}
		other := filepath.Join(b.root, "client", "other.pub")
		writeFile(t, other, newClientKey(t, filepath.Join(b.root, "client"), "other").publicKey+" other@test\n", 0o644)
		if r := run(t, nil, nil, append(authorize, other)...); r.code == 0 || !strings.Contains(r.stderr, "exists already") {
			t.Fatalf("authorizing the same name for another key: %s", r)
		}
		if b.mode == modeExec {
			after := readFile(t, sshAK)
			if !strings.HasPrefix(after, beforeAK) || !strings.Contains(after[len(beforeAK):], `restrict,command="`+nixgateBin+" exec --config "+b.config+` --key fresh" ssh-ed25519 `) {
				t.Fatalf("authorized_keys was not extended byte for byte:\nbefore %q\nafter %q", beforeAK, after)
			}
		}
		b.addHost(t, "fresh", key)
		b.eventuallyNix(t, func(r result) bool { return r.code == 0 }, "nix", "store", "ping", "--store", "ssh://"+b.Host("fresh"))

		r = run(t, nil, nil, nixgateBin, "keys", "list", "--config", b.config)
		if r.code != 0 || !strings.Contains(r.stdout, "fresh") || !strings.Contains(r.stdout, "old") || !strings.Contains(r.stdout, "(EXPIRED)") {
			t.Errorf("keys list: %s", r)
		}

		if r := run(t, nil, nil, nixgateBin, "keys", "revoke", "--config", b.config, "fresh"); r.code != 0 {
			t.Fatalf("keys revoke: %s", r)
		}
		if b.mode == modeExec {
			if r := run(t, nil, nil, nixgateBin, "keys", "revoke", "--authorized-keys", sshAK, "fresh"); r.code != 0 {
				t.Fatalf("keys revoke --authorized-keys: %s", r)
			}
			if got := readFile(t, sshAK); got != beforeAK {
				t.Errorf("after revoke, authorized_keys is not what it was:\nbefore %q\nafter %q", beforeAK, got)
			}
		}
		b.eventuallyNix(t, func(r result) bool { return r.code != 0 }, "nix", "store", "ping", "--store", "ssh://"+b.Host("fresh"))
		if r := run(t, nil, nil, nixgateBin, "keys", "revoke", "--config", b.config, "fresh"); r.code == 0 || !strings.Contains(r.stderr, "no key named") {
			t.Errorf("revoking twice: %s", r)
		}
	})
}

// TestClientConfig feeds client-config's machines line and ssh config to
// real Nix for a real remote build, and checks its host key against
// keys host and what the server presents.
func TestClientConfig(t *testing.T) {
	b := newBuilder(t, modeServe)
	r := run(t, nil, nil, nixgateBin, "client-config", "--config", b.config, "--host", "nixgate-builder", "--address", "127.0.0.1",
		"--key", b.keys["build"].path, "--systems", "x86_64-linux", "--max-jobs", "1")
	if r.code != 0 {
		t.Fatalf("client-config: %s", r)
	}
	section := func(header string) string {
		i := strings.Index(r.stdout, header)
		if i < 0 {
			t.Fatalf("no %q in:\n%s", header, r.stdout)
		}
		s := r.stdout[i+len(header):]
		s = s[strings.Index(s, "\n")+1:]
		if j := strings.Index(s, "\n\n"); j >= 0 {
			s = s[:j]
		}
		return s
	}
	machines := filepath.Join(b.root, "client", "machines")
	writeFile(t, machines, section("# /etc/nix/machines")+"\n", 0o644)
	sshCfg := filepath.Join(b.root, "client", "ssh_config_generated")
	writeFile(t, sshCfg, section("# ~/.ssh/config")+"\n  BatchMode yes\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n", 0o644)

	env := append([]string{}, b.clientEnv...)
	env = append(env, "NIX_SSHOPTS=-F "+sshCfg)
	nonce := fmt.Sprint(time.Now().UnixNano())
	drv := writeDerivation(t, b.root, nonce)
	res := run(t, env, nil, "nix-build", drv, "--no-out-link", "-j0", "--builders", "@"+machines)
	if res.code != 0 {
		t.Fatalf("nix-build with client-config's machines line: %s\nmachines: %s", res, readFile(t, machines))
	}
	out := strings.TrimSpace(res.stdout)
	if got := readStore(t, b.clientStoreDir, out); got != "built remotely "+nonce+"\n" {
		t.Errorf("output %q", got)
	}

	// Its last line proves it, as printed, on a Nix whose configuration
	// does not enable nix-command (Debian's Nix 2.8 does not).
	knownHosts := filepath.Join(b.root, "client", "known_hosts_generated")
	writeFile(t, knownHosts, section("# ~/.ssh/known_hosts")+"\n", 0o644)
	prove := section("# Prove it works")
	pingEnv := append(append([]string{}, b.clientEnv...), "NIX_SSHOPTS=-F "+sshCfg+" -o UserKnownHostsFile="+knownHosts, "NIX_CONFIG=experimental-features =")
	ping := run(t, pingEnv, nil, "sh", "-c", prove)
	if ping.code != 0 {
		t.Errorf("client-config's last line %q: %s", prove, ping)
	}

	// Its nixgate_log function, defined as printed, fetches a failed
	// build's log through the ssh configuration it printed (ssh reads
	// it as ~/.ssh/config; here a wrapper gives it -F).
	failing := writeFailingDerivation(t, b.root, nonce+"-fails", 3)
	failingDrv := b.instantiate(t, failing)
	if fr := run(t, env, nil, "nix-build", failing, "--no-out-link", "-j0", "--builders", "@"+machines); fr.code == 0 {
		t.Fatalf("the failing build succeeded: %s", fr)
	}
	findRecord(t, b, logWait, func(r map[string]any) bool {
		logs, _ := r["build_logs"].([]any)
		return r["msg"] == "session ended" && len(logs) > 0 && logs[0] == failingDrv
	})
	wrapper := filepath.Join(b.root, "client", "bin")
	writeFile(t, filepath.Join(wrapper, "ssh"), fmt.Sprintf("#!/bin/sh\nexec /usr/bin/ssh -F %s -o UserKnownHostsFile=%s \"$@\"\n", sshCfg, knownHosts), 0o755)
	fn := section("# A failed remote build's log")
	fn = fn[strings.Index(fn, "\nnixgate_log()")+1:]
	got := run(t, []string{"PATH=" + wrapper + ":" + os.Getenv("PATH")}, nil, "sh", "-c", fn+"\nnixgate_log "+failingDrv)
	if got.code != 0 || !strings.HasPrefix(got.stdout, "first line of "+nonce+"-fails\nlog line 1\nlog line 2\n") {
		t.Errorf("client-config's nixgate_log %s: %s", failingDrv, got)
	}

	// For a substitute key: no builder lines, the substituter over the
	// protocol asked for; and the NixOS ssh settings.
	sub := run(t, nil, nil, nixgateBin, "client-config", "--config", b.config, "--host", "nixgate-builder", "--address", "127.0.0.1",
		"--key", b.keys["substitute"].path, "--role", "substitute", "--protocol", "ssh-ng")
	if sub.code != 0 || strings.Contains(sub.stdout, "/etc/nix/machines") || strings.Contains(sub.stdout, "buildMachines") ||
		!strings.Contains(sub.stdout, "extra-substituters = ssh-ng://"+b.account.name+"@nixgate-builder") ||
		!strings.Contains(sub.stdout, fmt.Sprintf("(required: no Nix setting gives ssh the port %d)", b.port)) ||
		!strings.Contains(sub.stdout, "programs.ssh.knownHosts") || strings.Contains(sub.stdout, "nixgate_log") {
		t.Errorf("client-config --role substitute --protocol ssh-ng:\n%s", sub)
	}

	// The host key: client-config, keys host and the server agree.
	host := run(t, nil, nil, nixgateBin, "keys", "host", "--config", b.config, "--host", "127.0.0.1")
	scan := run(t, nil, nil, "ssh-keyscan", "-t", "ed25519", "-p", fmt.Sprint(b.port), "127.0.0.1")
	fields := strings.Fields(scan.stdout)
	if host.code != 0 || len(fields) < 3 {
		t.Fatalf("keys host: %s\nssh-keyscan: %s", host, scan)
	}
	presented := fields[1] + " " + fields[2]
	if !strings.Contains(host.stdout, fmt.Sprintf("known_hosts:   [127.0.0.1]:%d %s", b.port, presented)) {
		t.Errorf("keys host does not show the key the server presents (%s):\n%s", presented, host.stdout)
	}
	pub := strings.Fields(section("# /etc/nix/machines"))[7]
	if !strings.Contains(host.stdout, "publicHostKey: "+pub) {
		t.Errorf("client-config's publicHostKey %s is not keys host's:\n%s", pub, host.stdout)
	}
}

// TestKeysAuthorizeExecFresh follows the README's exec mode on an account
// without ~/.ssh, whose keys are [[keys]] entries of the configuration (no
// authorized_keys file): keys authorize --exec creates ~/.ssh and
// authorized_keys with modes sshd accepts and the account cannot change,
// a second run (a retry) changes nothing and succeeds, a different role
// is refused without writing, and Nix gets through.
func TestKeysAuthorizeExecFresh(t *testing.T) {
	b := newBuilder(t, modeExec)
	sshDir := filepath.Join(b.account.home, ".ssh")
	if err := os.RemoveAll(sshDir); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(sshDir, "authorized_keys")
	pub := filepath.Join(b.root, "client", "build.pub")
	writeFile(t, pub, b.keys["build"].publicKey+" build@test\n", 0o644)
	authorize := func(role string) result {
		return run(t, nil, nil, nixgateBin, "keys", "authorize", "--config", b.config, "--name", "build", "--role", role, "--exec", ak, pub)
	}
	if r := authorize("build"); r.code != 0 {
		t.Fatalf("keys authorize --exec on a home without ~/.ssh: %s", r)
	}
	for p, mode := range map[string]os.FileMode{sshDir: 0o755, ak: 0o644} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, %v; want mode %04o", p, fi, err, mode)
		}
	}
	first := readFile(t, ak)
	if r := authorize("build"); r.code != 0 || !strings.Contains(r.stdout, "authorized already") {
		t.Fatalf("keys authorize --exec again: %s", r)
	}
	if r := authorize("substitute"); r.code != 1 || !strings.Contains(r.stderr, "authorized already with role build") {
		t.Fatalf("keys authorize --exec with another role: %s", r)
	}
	if got := readFile(t, ak); got != first {
		t.Fatalf("authorized_keys changed on a retry:\nbefore %q\nafter %q", first, got)
	}
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	rs, _ := runCheck(t, "--config", b.config, "--mode", "exec", "--authorized-keys", ak)
	finding(t, rs, "home", "ok", "read-only for "+b.account.name, "")
	finding(t, rs, "authorized_keys", "ok", "1 key(s)", "")

	// client-config for this sshd, whose host key is not in /etc/ssh: the
	// ssh config and known_hosts it prints, and its last line, work.
	hostPub := filepath.Join(b.root, "sshd", "host_ed25519_key.pub")
	writeFile(t, hostPub, mustRun(t, nil, "ssh-keygen", "-y", "-f", filepath.Join(b.root, "sshd", "host_ed25519_key")).stdout, 0o644)
	r := mustRun(t, nil, nixgateBin, "client-config", "--config", b.config, "--mode", "exec", "--host-key", hostPub,
		"--host", "exec-builder", "--address", "127.0.0.1", "--port", fmt.Sprint(b.port), "--key", b.keys["build"].path)
	section := func(header string) string {
		i := strings.Index(r.stdout, header)
		if i < 0 {
			t.Fatalf("no %q in:\n%s", header, r.stdout)
		}
		s := r.stdout[i+len(header):]
		s = s[strings.Index(s, "\n")+1:]
		if j := strings.Index(s, "\n\n"); j >= 0 {
			s = s[:j]
		}
		return s
	}
	sshCfg := filepath.Join(b.root, "client", "exec_ssh_config")
	writeFile(t, sshCfg, section("# ~/.ssh/config")+"\n  BatchMode yes\n  StrictHostKeyChecking yes\n", 0o644)
	knownHosts := filepath.Join(b.root, "client", "exec_known_hosts")
	writeFile(t, knownHosts, section("# ~/.ssh/known_hosts")+"\n", 0o644)
	env := append(append([]string{}, b.clientEnv...), "NIX_SSHOPTS=-F "+sshCfg+" -o UserKnownHostsFile="+knownHosts)
	if ping := run(t, env, nil, "sh", "-c", section("# Prove it works")); ping.code != 0 {
		t.Errorf("client-config --mode exec --host-key: its last line fails: %s\n%s", ping, r.stdout)
	}
}

// TestClientConfigSigningWithoutRoot follows client-config's signing
// advice, as printed, for a builder without root (serve as the account,
// userns): the key is made as the account in its store directory and
// given to the Nix nixgate runs through [nix] env; nothing is written to
// /etc/nix. Then client-config prints the builder's public key, and a
// path the builder built — unsigned before, refused by a client that
// requires signatures — copies with nix copy --from through a substitute
// key into a store that trusts that key alone.
func TestClientConfigSigningWithoutRoot(t *testing.T) {
	b := newBuilderIn(t, modeServe, "userns")
	clientConfig := func() string {
		r := run(t, nil, nil, nixgateBin, "client-config", "--config", b.config, "--host", "nixgate-builder", "--address", "127.0.0.1", "--key", b.keys["build"].path)
		if r.code != 0 {
			t.Fatalf("client-config: %s", r)
		}
		return r.stdout
	}
	// copyFrom builds a new derivation on the builder and copies its
	// output from it, through the substitute key, into a new store that
	// requires signatures by trusted, none when trusted is empty.
	copyFrom := func(trusted string) result {
		nonce := fmt.Sprint(time.Now().UnixNano())
		out := strings.TrimSpace(b.mustNix(t, "nix-build", writeDerivation(t, b.root, nonce), "--no-out-link", "-j0",
			"--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1").stdout)
		env := append(append([]string{}, b.clientEnv...), "NIX_CONFIG=require-sigs = true\ntrusted-public-keys = "+trusted)
		return run(t, env, nil, "nix", "copy", "--from", "ssh://"+b.Host("substitute"), "--to", "local?root="+filepath.Join(b.root, "fresh-"+nonce), out)
	}
	if r := copyFrom(""); r.code == 0 || !strings.Contains(r.stderr, "lacks a valid signature") {
		t.Fatalf("nix copy --from an unsigned builder into a store that requires signatures: %s", r)
	}

	printed := clientConfig()
	printed = printed[strings.Index(printed, "# Use the builder as a substituter too"):]
	printed = printed[:strings.Index(printed, "\n\n")]
	var advice []string
	for _, l := range strings.Split(printed, "\n") {
		if c, ok := strings.CutPrefix(l, "#   "); ok {
			advice = append(advice, c)
		}
	}
	if len(advice) != 2 || !strings.HasPrefix(advice[0], "runuser -u "+b.account.name+" -- sh -c ") || !strings.HasPrefix(advice[1], "env = { ") || strings.Contains(printed, "/etc/nix/") {
		t.Fatalf("client-config's signing advice for a builder without root: %q\n%s", advice, printed)
	}
	if !strings.Contains(printed, "Remote builds work without it (Nix's build hook copies their") {
		t.Errorf("client-config does not say that remote builds need no signing:\n%s", printed)
	}
	mustRun(t, nil, "sh", "-c", advice[0])
	key := filepath.Join(b.account.home, ".nix", "var", "nixgate", "cache-priv-key.pem")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != b.account.uid {
		t.Fatalf("the secret key %s: %v; want it %s's, mode 0600", key, err, b.account.name)
	}
	// "replace [nix] env (line N) with" the printed line.
	lines := strings.Split(readFile(t, b.config), "\n")
	replaced := false
	for i, l := range lines {
		if strings.HasPrefix(l, "env = ") {
			lines[i], replaced = advice[1], true
		}
	}
	if !replaced || !strings.Contains(printed, "replace [nix] env (line") {
		t.Fatalf("client-config does not say to replace the configuration's env line:\n%s", printed)
	}
	writeFile(t, b.config, strings.Join(lines, "\n"), 0o644)
	waitLog(t, b, "reloaded", nil)

	var pub string
	for _, l := range strings.Split(clientConfig(), "\n") {
		if k, ok := strings.CutPrefix(l, "extra-trusted-public-keys = "); ok {
			pub = k
		}
	}
	if !strings.HasPrefix(pub, "nixgate-builder-1:") {
		t.Fatalf("client-config prints no extra-trusted-public-keys line after the advice was followed")
	}
	if r := copyFrom(pub); r.code != 0 {
		t.Errorf("nix copy --from the signing builder into a store that trusts %s: %s", pub, r)
	}
}
