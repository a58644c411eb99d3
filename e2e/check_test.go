package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestCheckExecMode(t *testing.T) {
	b := newBuilder(t, modeExec)
	// The builder's authorized_keys also holds two deliberately plain
	// forced commands; check a file of only the nixgate lines.
	ak := filepath.Join(b.account.home, ".ssh", "authorized_keys")
	var clean []string
	for _, l := range strings.Split(readFile(t, ak), "\n") {
		if strings.Contains(l, " exec --config ") && !strings.Contains(l, "--key ghost") {
			clean = append(clean, l)
		}
	}
	cleanAK := filepath.Join(b.root, "authorized_keys.clean")
	writeFile(t, cleanAK, strings.Join(clean, "\n")+"\n", 0o644)
	args := []string{"--config", b.config, "--mode", "exec", "--authorized-keys", cleanAK}

	rs, code := runCheck(t, args...)
	noFailures(t, rs, code)
	finding(t, rs, "nix", "ok", "nix-store (Nix) 2.8.0", "")
	finding(t, rs, "home", "ok", "read-only", "")
	finding(t, rs, "shell", "ok", "quietly", "")
	finding(t, rs, "lock directory", "ok", "not needed", "")

	t.Run("writable home", func(t *testing.T) {
		mustRun(t, nil, "chmod", "u+w", b.account.home)
		defer mustRun(t, nil, "chmod", "a-w", b.account.home)
		rs, code := runCheck(t, args...)
		finding(t, rs, "home", "fail", b.account.home+" is writable by "+b.account.name, "chmod -R a-w ~"+b.account.name)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
	})
	t.Run("ssh rc", func(t *testing.T) {
		dir := filepath.Join(b.account.home, ".ssh")
		mustRun(t, nil, "chmod", "u+w", dir)
		writeFile(t, filepath.Join(dir, "rc"), "true\n", 0o444)
		defer func() { os.Remove(filepath.Join(dir, "rc")); mustRun(t, nil, "chmod", "a-w", dir) }()
		rs, _ := runCheck(t, args...)
		finding(t, rs, "home", "fail", "rc exists", "rm "+filepath.Join(dir, "rc"))
	})
	t.Run("writable authorized_keys2", func(t *testing.T) {
		// sshd reads it too: exec mode refuses every session for it, and
		// check, which runs exec mode's own check as the account, says so.
		dir := filepath.Join(b.account.home, ".ssh")
		ak2 := filepath.Join(dir, "authorized_keys2")
		mustRun(t, nil, "chmod", "u+w", dir)
		writeFile(t, ak2, "", 0o644)
		mustRun(t, nil, "chown", b.account.name, ak2)
		mustRun(t, nil, "chmod", "a-w", dir)
		defer func() { mustRun(t, nil, "chmod", "u+w", dir); os.Remove(ak2); mustRun(t, nil, "chmod", "a-w", dir) }()
		rs, code := runCheck(t, args...)
		finding(t, rs, "home", "fail", ak2+" is writable by "+b.account.name, "chmod -R a-w ~"+b.account.name)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
		r := b.ssh(t, "build", "nix-store --serve --write", nil)
		if r.code == 0 || !strings.Contains(r.stderr, "nixgate: refused: "+ak2+" is writable by "+b.account.name) {
			t.Errorf("exec with a writable authorized_keys2: %s", r)
		}
	})
	t.Run("lock directory", func(t *testing.T) {
		// A key with max_sessions: check opens exec mode's lock directory
		// as the build account, in nixgate run as it, and fails where exec
		// mode refuses the key's sessions; its fix, run as printed, makes
		// both work.
		doc := readFile(t, b.config)
		b.limitBuildKey(t, "max_sessions = 4\n")
		defer writeFile(t, b.config, doc, 0o644)
		run := filepath.Join(b.root, "serve-state", "run")
		rs, code := runCheck(t, args...)
		noFailures(t, rs, code)
		finding(t, rs, "lock directory", "ok", run+": exec mode keeps the session and build-slot counts of keys build there", "")
		if fi, err := os.Stat(run); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != b.account.uid {
			t.Fatalf("%s after check: %v; want it made by %s, as exec mode makes it", run, err, b.account.name)
		}

		// Root's, and others may search it (else the account could not
		// even open it): the owner is what is wrong.
		mustRun(t, nil, "chown", "root", run)
		mustRun(t, nil, "chmod", "0755", run)
		rs, code = runCheck(t, args...)
		fix := fmt.Sprintf("install -d -o %s -m 0700 %s", b.account.name, run)
		finding(t, rs, "lock directory", "fail", "belongs to uid 0, not to this account", fix)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
		r := b.ssh(t, "build", "nix-store --serve --write", nil)
		if r.code == 0 || !strings.Contains(r.stderr, "nixgate: refused: the builder cannot count sessions and builds") {
			t.Errorf("exec with a lock directory of root's: %s; want the session refused", r)
		}

		mustRun(t, nil, "sh", "-c", fix)
		rs, code = runCheck(t, args...)
		noFailures(t, rs, code)
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	})
	t.Run("nologin shell", func(t *testing.T) {
		mustRun(t, nil, "usermod", "-s", "/usr/sbin/nologin", b.account.name)
		defer mustRun(t, nil, "usermod", "-s", "/bin/sh", b.account.name)
		rs, _ := runCheck(t, args...)
		finding(t, rs, "shell", "fail", "nologin", "usermod -s /bin/sh "+b.account.name)
	})
	t.Run("line without restrict", func(t *testing.T) {
		bad := filepath.Join(b.root, "authorized_keys.bad")
		writeFile(t, bad, strings.Replace(clean[0], "restrict,", "", 1)+"\n", 0o644)
		rs, _ := runCheck(t, "--config", b.config, "--mode", "exec", "--authorized-keys", bad)
		finding(t, rs, "authorized_keys", "fail", "lacks restrict", "restrict,")
	})
	t.Run("key the config lacks", func(t *testing.T) {
		var ghost string
		for _, l := range strings.Split(readFile(t, ak), "\n") {
			if strings.Contains(l, "--key ghost") {
				ghost = l
			}
		}
		bad := filepath.Join(b.root, "authorized_keys.ghost")
		writeFile(t, bad, strings.Join(append(clean, ghost), "\n")+"\n", 0o644)
		rs, code := runCheck(t, "--config", b.config, "--mode", "exec", "--authorized-keys", bad)
		finding(t, rs, "authorized_keys", "fail", "--key ghost, a key the configuration does not have", "named ghost")
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
	})
	t.Run("not in nix-users", func(t *testing.T) {
		// The machine's store through the daemon, which needs nix-users.
		cfg := strings.Replace(readFile(t, b.config), fmt.Sprintf("store = %q\n", b.store), "", 1)
		daemonCfg := filepath.Join(b.root, "etc", "daemon.toml")
		writeFile(t, daemonCfg, cfg, 0o644)
		rs, _ := runCheck(t, "--config", daemonCfg, "--mode", "exec", "--authorized-keys", cleanAK)
		// Through the daemon, builds need trust: said for ssh:// too, and
		// fixed without replacing an existing trusted-users line.
		finding(t, rs, "trusted-users", "warn", "remote builds, over ssh:// and ssh-ng:// alike, fail", "echo 'extra-trusted-users = "+b.account.name+"' >> /etc/nix/nix.conf")
		finding(t, rs, "store", "fail", "cannot reach the Nix daemon's socket", "usermod -aG nix-users "+b.account.name)
		mustRun(t, nil, "usermod", "-aG", "nix-users", b.account.name)
		rs, _ = runCheck(t, "--config", daemonCfg, "--mode", "exec", "--authorized-keys", cleanAK)
		for _, r := range rs {
			if r.Name == "store" && r.Status == "fail" {
				t.Errorf("still failing after usermod -aG nix-users: %+v", r)
			}
		}
	})
	t.Run("Nix not found", func(t *testing.T) {
		cfg := strings.Replace(readFile(t, b.config), "[nix]\n", "[nix]\nbin_dirs = [\"/nonexistent/bin\"]\n", 1)
		noNix := filepath.Join(b.root, "etc", "nonix.toml")
		writeFile(t, noNix, cfg, 0o644)
		rs, code := runCheck(t, "--config", noNix, "--mode", "exec", "--authorized-keys", cleanAK)
		finding(t, rs, "nix", "fail", "nix-store not found in /nonexistent/bin", "nix.bin_dirs")
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
	})
}

func TestCheckServeMode(t *testing.T) {
	b := newBuilder(t, modeServe)
	args := []string{"--config", b.config, "--mode", "serve"}
	rs, code := runCheck(t, args...)
	noFailures(t, rs, code)
	finding(t, rs, "listen", "ok", "served by nixgate already", "")
	finding(t, rs, "host key", "ok", "is private (0600)", "")
	// The store is the account's own (local?root=): its Nix signs, with
	// a key the account makes in that store, given through [nix] env.
	finding(t, rs, "signing", "warn", "does not sign", "runuser -u "+b.account.name+" -- sh -c 'mkdir -p -m 700 "+filepath.Join(b.storeDir, "nix", "var", "nixgate")+" && nix-store --store dummy:// --generate-binary-cache-key $(hostname)-1 ")
	finding(t, rs, "signing", "warn", "does not sign", "extra-secret-key-files = "+filepath.Join(b.storeDir, "nix", "var", "nixgate", "cache-priv-key.pem"))

	key := filepath.Join(b.root, "serve-state", "ssh_host_ed25519_key")
	mustRun(t, nil, "chmod", "644", key)
	defer mustRun(t, nil, "chmod", "600", key)
	rs, code = runCheck(t, args...)
	finding(t, rs, "host key", "fail", "others can read the private host key", "chmod 600 "+key)
	if code != 1 {
		t.Errorf("exit %d; want 1", code)
	}
}

func TestCheckSandboxMode(t *testing.T) {
	b := newBuilderIn(t, modeServe, "userns")
	rs, code := runCheck(t, "--config", b.config, "--mode", "serve")
	noFailures(t, rs, code)
	finding(t, rs, "sandbox", "ok", "sandbox.mode userns runs nix-store as "+b.account.name, "")
	finding(t, rs, "builds", "ok", "in Nix's build sandbox (sandbox = true, no fallback), nested in sandbox.mode userns", "")
}

// TestCheckWhatServeUses covers check's own command line and the
// findings that need no builder: without --config it checks what serve
// would use and says which; --mode is validated; no key that may log in
// is a failure; listen addresses are bound together, as serve binds them.
func TestCheckWhatServeUses(t *testing.T) {
	requireTools(t)
	dir := tempDir(t)
	t.Run("embedded default", func(t *testing.T) {
		if _, err := os.Stat("/etc/nixgate/nixgate.toml"); err == nil {
			t.Skip("/etc/nixgate/nixgate.toml exists, so nixgate serve would use it")
		}
		r := run(t, nil, nil, "sh", "-c", "cd "+dir+" && exec "+nixgateBin+" check --json")
		var rs []checkResult
		if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
			t.Fatalf("nixgate check output is not JSON: %v\n%s", err, r)
		}
		finding(t, rs, "config", "ok", "the embedded default (/etc/nixgate/nixgate.toml does not exist, so nixgate serve would use it)", "")
		finding(t, rs, "keys", "ok", "nixgate serve generates and authorizes one", "")
		// check changes nothing: a state directory it made (as the
		// build user, through Nix opening the store) would be one that
		// user owns, which serve and check then refuse.
		finding(t, rs, "store", "warn", "does not exist yet: nixgate serve creates it at start", "")
		noFailures(t, rs, r.code)
		if _, err := os.Stat(filepath.Join(dir, ".state")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("nixgate check made %s (%v)", filepath.Join(dir, ".state"), err)
		}
	})
	t.Run("mode", func(t *testing.T) {
		r := run(t, nil, nil, nixgateBin, "check", "--mode", "sreve")
		if r.code != 2 || !strings.Contains(r.stderr, `--mode "sreve": want serve or exec`) {
			t.Errorf("check --mode sreve: %s", r)
		}
	})
	port := freePort(t)
	cfg := func(name, listen, keys string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, fmt.Sprintf("user = \"nobody\"\nlisten = %s\nstate_dir = %q\n%s", listen, filepath.Join(dir, "state"), keys), 0o644)
		return p
	}
	key := newClientKey(t, dir, "k")
	withKey := fmt.Sprintf("[[keys]]\nname = \"k\"\nrole = \"build\"\npublic_key = %q\n", key.publicKey)
	t.Run("no key may log in", func(t *testing.T) {
		rs, code := runCheck(t, "--config", cfg("nokey.toml", `["127.0.0.1:0"]`, "[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
		finding(t, rs, "keys", "fail", "no key may log in, so nixgate serve refuses to start", "nixgate keys authorize")
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
	})
	t.Run("every address", func(t *testing.T) {
		rs, _ := runCheck(t, "--config", cfg("dual.toml", fmt.Sprintf(`["0.0.0.0:%d", "[::]:%d"]`, port, port), withKey))
		finding(t, rs, "listen", "ok", fmt.Sprintf("0.0.0.0:%d is free", port), "")
		finding(t, rs, "listen", "ok", fmt.Sprintf("[::]:%d is free (IPv6 only: IPv4 is listed too)", port), "")
	})
	t.Run("overlapping addresses", func(t *testing.T) {
		rs, code := runCheck(t, "--config", cfg("overlap.toml", fmt.Sprintf(`["127.0.0.1:%d", "0.0.0.0:%d"]`, port, port), withKey))
		finding(t, rs, "listen", "fail", fmt.Sprintf("0.0.0.0:%d overlaps 127.0.0.1:%d", port, port), "remove one")
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
	})
}

// TestCheckDaemonSandboxOff: with the machine's daemon store and its
// nix.conf saying sandbox = false (Debian's nix-bin ships it so), check
// warns that builds run unsandboxed as Nix's build users, and says how
// to turn the sandbox on.
func TestCheckDaemonSandboxOff(t *testing.T) {
	conf, err := os.ReadFile("/etc/nix/nix.conf")
	if err != nil || !regexp.MustCompile(`(?m)^\s*sandbox\s*=\s*false\s*$`).Match(conf) {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI's Debian nix-bin is to say sandbox = false in /etc/nix/nix.conf: %v", err)
		}
		t.Skipf("this machine's /etc/nix/nix.conf does not say sandbox = false (Debian's nix-bin does): %v", err)
	}
	b, _ := newDaemonBuilder(t, modeServe)
	rs, _ := runCheck(t, "--config", b.config, "--mode", "serve")
	finding(t, rs, "builds", "warn", "without Nix's build sandbox (/etc/nix/nix.conf: sandbox = false)", "set sandbox = true in the daemon's nix.conf")
}
