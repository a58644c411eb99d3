package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSetOptionsCannotReachRoot is the attack of a build key on a
// builder whose build account is a trusted user of Nix's daemon: a
// SetOptions with post-build-hook, then a build. Without the filter (a
// full_trust key, the control) the daemon runs the hook as root; with it
// the override is dropped and logged, and the build still works.
func TestSetOptionsCannotReachRoot(t *testing.T) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) {
			b, d := newDaemonBuilder(t, mode)
			if mode == modeServe {
				// serve found no daemon at start: it takes sessions once
				// its next health check sees the daemon answer.
				b.waitHealthy(t, 1)
			}
			dir := filepath.Dir(d.socket)
			marker := filepath.Join(dir, "hook-ran")
			hook := filepath.Join(dir, "hook.sh")
			writeFile(t, hook, "#!/bin/sh\nid -u > "+marker+"\n", 0o755)

			// The control: the attack works without the filter.
			c := b.dialWorker(t, "trusted", 1<<8|34)
			if msg, failed := c.call(setOptions("post-build-hook", hook)); failed {
				t.Fatalf("SetOptions with full trust: %s", msg)
			}
			drv := d.instantiate(t, fmt.Sprint("control-", time.Now().UnixNano()))
			if msg, ok := c.buildPaths(drv); !ok {
				t.Fatalf("build with full trust failed: %s", msg)
			}
			if got, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(got)) != "0" {
				t.Fatalf("control: the hook did not run as root (%q, %v): the attack this test guards against is not reproduced", got, err)
			}
			os.Remove(marker)
			c.close()

			// A build key: the same attack, at several versions.
			for _, version := range []uint64{1<<8 | 23, 1<<8 | 34, 1<<8 | 38} {
				c := b.dialWorker(t, "build", version)
				if msg, failed := c.call(setOptions("post-build-hook", hook, "build-users-group", "", "max-silent-time", "600")); failed {
					t.Fatalf("SetOptions at %#x: %s", version, msg)
				}
				drv := d.instantiate(t, fmt.Sprint("attack-", version, "-", time.Now().UnixNano()))
				if msg, ok := c.buildPaths(drv); !ok {
					t.Fatalf("build at %#x failed: %s", version, msg)
				}
				if got, err := os.ReadFile(marker); err == nil {
					t.Fatalf("at %#x the post-build-hook ran (as uid %s) for a build key", version, strings.TrimSpace(string(got)))
				}
				c.close()
			}
			rec := findRecord(t, b, logWait, func(r map[string]any) bool {
				return r["msg"] == "session ended" && r["key"] == "build" && fmt.Sprint(r["dropped_settings"]) == "[post-build-hook build-users-group]"
			})
			if rec == nil {
				t.Errorf("no session record names the dropped settings:\n%s", readFile(t, b.log))
			}
			// The opt-out is said at start-up and in every session record.
			if rec := findRecord(t, b, logWait, func(r map[string]any) bool { return r["key"] == "trusted" && r["msg"] == "session ended" }); rec == nil || rec["full_trust"] != true {
				t.Errorf("the trusted key's session record does not say full_trust: %v", rec)
			}
			if mode == modeServe && !strings.Contains(readFile(t, b.serveLog), `key "trusted" has full_trust`) {
				t.Errorf("nixgate serve did not say at start-up that a key has full_trust")
			}
		})
	}
}

// storeListing lists the builder store's paths.
func storeListing(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "nix", "store"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestRefusedOps sends, as a raw client, every operation a role may not
// send, at several protocol versions: each gets nixgate's error, the
// session stays in step (IsValidPath after each still answers), and the
// builder's store is unchanged.
func TestRefusedOps(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		kept := b.addPath(t, "kept", "must survive every refused op\n")
		b.mustNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), kept)
		before := storeListing(t, b.storeDir)
		root := filepath.Join(b.root, "gcroot")
		newPath := "/nix/store/00000000000000000000000000000000-injected"
		nar := narOf("injected\n")

		forBoth := map[string][]byte{
			"CollectGarbage":     wop(20).u64(2).strs().u64(0, 0, 0, 0, 0).b, // delete dead
			"OptimiseStore":      wop(34).b,
			"VerifyStore":        wop(35).u64(1, 1).b, // check contents, repair
			"AddPermRoot":        wop(47).str(kept, root).b,
			"AddIndirectRoot":    wop(12).str(root).b,
			"AddSignatures":      wop(37).str(kept).strs("fake:c2ln").b,
			"QueryAllValidPaths": wop(23).b,
			"FindRoots":          wop(14).b,
		}
		substituteOnly := map[string][]byte{
			"AddToStoreNar": wop(39).str(newPath, "", "0000000000000000000000000000000000000000000000000000000000000000").
				strs().u64(0, uint64(len(nar)), 0).strs().str("").u64(0, 1).framed(nar).b,
			"AddMultipleToStore": wop(44).u64(0, 1).framed(append((&wopEnc{}).u64(1).str(newPath, "", "0000").strs().
				u64(0, uint64(len(nar)), 0).strs().str("").b, nar...)).b,
			"AddTextToStore":  wop(8).str("injected.txt", "text").strs().b,
			"BuildPaths":      wop(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b,
			"BuildDerivation": wop(36).str("/nix/store/00000000000000000000000000000000-x.drv").u64(1).str("out", newPath, "", "").strs().str("x86_64-linux", "/bin/sh").strs("-c", "true").u64(1).str("out", newPath).u64(0).b,
			"AddBuildLog":     wop(45).str(kept).framed([]byte("log")).b,
		}
		for _, role := range []string{"substitute", "build"} {
			for _, version := range []uint64{1<<8 | 23, 1<<8 | 25, 1<<8 | 26, 1<<8 | 34, 1<<8 | 38} {
				ops := map[string][]byte{}
				for k, v := range forBoth {
					ops[k] = v
				}
				if role == "build" {
					ops["BuildPaths"] = wop(9).strs(kept).u64(1).b // repair
				} else {
					for k, v := range substituteOnly {
						ops[k] = v
					}
					if version&0xff >= 25 {
						ops["AddToStore"] = wop(7).str("injected", "text:sha256").strs().u64(0).framed([]byte("injected\n")).b
					} else {
						ops["AddToStore"] = append(wop(7).str("injected").u64(1, 1).str("sha256").b, nar...)
					}
				}
				// Refused for every key: Nix reads their arguments after
				// it starts answering.
				ops["QueryRealisation"] = wop(43).str("sha256:" + strings.Repeat("0", 64) + "!out").b
				if version&0xff < 31 {
					ops["RegisterDrvOutput"] = wop(42).str("sha256:"+strings.Repeat("0", 64)+"!out", kept).b
				} else {
					ops["RegisterDrvOutput"] = wop(42).str("{}").b
				}
				c := b.dialWorker(t, role, version)
				names := slices.Sorted(maps.Keys(ops))
				for _, name := range names {
					msg, failed := c.call(ops[name])
					want := fmt.Sprintf("nixgate: key %q (role %s) ", role, role)
					if !failed || !strings.HasPrefix(msg, want) || !strings.Contains(msg, name+" refused") {
						t.Fatalf("%s at %#x, %s: got %q (error %v); want nixgate's refusal", role, version, name, msg, failed)
					}
					if ok, err := c.isValid(kept); err != nil || !ok {
						t.Fatalf("%s at %#x: after %s the session is out of step: %v %v", role, version, name, ok, err)
					}
				}
				c.close()
			}
		}
		if after := storeListing(t, b.storeDir); !slices.Equal(before, after) {
			t.Errorf("the builder's store changed:\nbefore %q\nafter  %q", before, after)
		}
		if _, err := os.Lstat(root); err == nil {
			t.Errorf("a refused AddPermRoot or AddIndirectRoot made %s", root)
		}
		if !inStore(b.storeDir, kept) {
			t.Errorf("%s is gone from the builder's store", kept)
		}
		rec := findRecord(t, b, logWait, func(r map[string]any) bool {
			return r["msg"] == "session ended" && r["key"] == "substitute" && r["refused_count"] != nil
		})
		if rec == nil {
			t.Errorf("no session record lists the refused ops")
		}
		if b.mode == modeServe {
			for _, m := range []string{
				`nixgate_ops_total{decision="deny",key="substitute",op="AddToStoreNar"}`,
				`nixgate_ops_total{decision="deny",key="build",op="CollectGarbage"}`,
				`nixgate_ops_total{decision="allow",key="build",op="IsValidPath"}`,
			} {
				if v := b.metric(t, m); v < 1 {
					t.Errorf("%s = %v; want at least 1", m, v)
				}
			}
		}
	})
}

// TestBuildTimeoutCap: a key's build_timeout holds whatever the client
// asks: a build that sleeps past it fails with Nix's own timeout error,
// though the client asked for an hour.
func TestBuildTimeoutCap(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		b.limitBuildKey(t, "build_timeout = \"3s\"\n")
		drv := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 60)
		start := time.Now()
		r := b.nix(t, "nix-build", drv, "--no-out-link", "-j0", "--option", "build-timeout", "3600",
			"--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
		if r.code == 0 || !strings.Contains(r.stderr, "timed out after 3 seconds") {
			t.Fatalf("a build past the key's build_timeout: %s", r)
		}
		t.Logf("failed as it should after %v", time.Since(start).Round(time.Second))
	})
	// Through Nix's root daemon, nix-store --serve does not pass a serve
	// build's options on (Nix's own FIXME): the cap reaches the daemon
	// as a setting nixgate gives nix-store, which hands it over when it
	// connects.
	t.Run("serve-daemon", func(t *testing.T) {
		b, _ := newDaemonBuilder(t, modeServe)
		b.limitBuildKey(t, "build_timeout = \"3s\"\n")
		b.waitHealthy(t, 1)
		drv := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 60)
		r := b.nix(t, "nix-build", drv, "--no-out-link", "-j0", "--option", "build-timeout", "3600",
			"--builders", "ssh://"+b.Host("build")+" x86_64-linux - 1")
		if r.code == 0 || !strings.Contains(r.stderr, "timed out after 3 seconds") {
			t.Fatalf("a build through the daemon past the key's build_timeout: %s", r)
		}
	})
}

// TestBuildSilenceAndLogCaps: a key's max_silent_time and max_log_size
// hold over ssh:// and ssh-ng://, in both modes, though the client asks
// for an hour of silence and an unlimited log: a silent build fails
// with Nix's own silence error, a chatty one with its log-size error.
func TestBuildSilenceAndLogCaps(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		b.limitBuildKey(t, "max_silent_time = \"3s\"\nmax_log_size = 4096\n")
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			build := func(drv string) result {
				t.Helper()
				return b.nix(t, "nix-build", drv, "--no-out-link", "-j0",
					"--option", "max-silent-time", "3600", "--option", "max-build-log-size", "0",
					"--builders", scheme+"://"+b.Host("build")+" x86_64-linux - 1")
			}
			silent := writeSlowDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 60)
			if r := build(silent); r.code == 0 || !strings.Contains(r.stderr, "timed out after 3 seconds of silence") {
				t.Errorf("via %s a build silent past the key's max_silent_time: %s", scheme, r)
			}
			chatty := writeChattyDerivation(t, b.root, fmt.Sprint(time.Now().UnixNano()), 100000)
			if r := build(chatty); r.code == 0 || !strings.Contains(r.stderr, "killed after writing more than 4096 bytes of log output") {
				t.Errorf("via %s a build logging past the key's max_log_size: %s", scheme, r)
			}
		}
	})
}

// writeChattyDerivation writes a derivation whose build logs lines
// lines of 16 bytes before it succeeds.
func writeChattyDerivation(t testing.TB, root, nonce string, lines int) string {
	t.Helper()
	file := writeDerivation(t, root, nonce)
	expr := readFile(t, file)
	expr = strings.Replace(expr, `"echo built remotely`, fmt.Sprintf(`"${bb}/bin/busybox yes nixgate-chatter | ${bb}/bin/busybox head -n %d; echo built remotely`, lines), 1)
	writeFile(t, file, expr, 0o644)
	return file
}

// writeCoresDerivation writes a derivation whose output holds the
// NIX_BUILD_CORES Nix gave its builder.
func writeCoresDerivation(t testing.TB, root, nonce string) string {
	t.Helper()
	file := writeDerivation(t, root, nonce)
	expr := readFile(t, file)
	old := fmt.Sprintf(`"echo built remotely %s > $out"`, nonce)
	if !strings.Contains(expr, old) {
		t.Fatalf("unexpected derivation:\n%s", expr)
	}
	writeFile(t, file, strings.Replace(expr, old, fmt.Sprintf(`"echo $NIX_BUILD_CORES %s > $out"`, nonce), 1), 0o644)
	return file
}

// TestBuildCoresCap: a key's build_cores holds over ssh:// (whose
// protocol has no cores to rewrite: nixgate gives its Nix the cap) and
// ssh-ng:// (whose Nix 2.8 client sends no SetOptions: nixgate sends its
// own), whatever the client asks: the builder sees NIX_BUILD_CORES=1,
// where a key without the cap gets the builder's own. And the ssh-ng://
// build works, the session starting with nixgate's SetOptions.
func TestBuildCoresCap(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		b.limitBuildKey(t, "build_cores = 1\nmax_jobs = 1\n")
		cores := func(key, scheme string) string {
			t.Helper()
			nonce := fmt.Sprint(time.Now().UnixNano())
			r := b.mustNix(t, "nix-build", writeCoresDerivation(t, b.root, nonce), "--no-out-link", "-j0", "--cores", "8",
				"--builders", scheme+"://"+b.Host(key)+" x86_64-linux - 1")
			f := strings.Fields(readStore(t, b.storeDir, strings.TrimSpace(r.stdout)))
			if len(f) != 2 || f[1] != nonce {
				t.Fatalf("%s via %s: output %q", key, scheme, f)
			}
			return f[0]
		}
		if own := cores("trusted", "ssh"); own == "1" {
			t.Skipf("the builder's Nix gives builds 1 core of its own: a cap of 1 cannot be told apart")
		}
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			if got := cores("build", scheme); got != "1" {
				t.Errorf("via %s a key with build_cores = 1 built with NIX_BUILD_CORES=%s", scheme, got)
			}
		}
	})
}

// ansiEscape matches the colour codes of Nix's messages.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestNoSetOptionsNoEscape: a raw worker client of a key with
// build_timeout = "3s" builds without sending SetOptions — as Nix's
// ssh-ng:// client always does — on a builder whose store is Nix's root
// daemon, which nix-daemon --stdio only relays bytes to: without nixgate
// the daemon's own settings (no timeout) would apply. The build still
// fails with Nix's timeout after 3 seconds, its output is not made, and
// the session stays in step.
func TestNoSetOptionsNoEscape(t *testing.T) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) {
			b, d := newDaemonBuilder(t, mode)
			b.limitBuildKey(t, "build_timeout = \"3s\"\n")
			if mode == modeServe {
				b.waitHealthy(t, 1)
			}
			nonce := fmt.Sprint("nosetoptions-", time.Now().UnixNano())
			drv := d.instantiateScript(t, nonce, "/bin/sleep 20; echo "+nonce+" > $out")
			out := strings.TrimSpace(mustRun(t, d.env(), "nix-store", "-q", "--outputs", drv).stdout)
			for _, version := range []uint64{1<<8 | 23, 1<<8 | 34, 1<<8 | 38} {
				c := b.dialWorker(t, "build", version)
				start := time.Now()
				msg, ok := c.buildPaths(drv)
				msg = ansiEscape.ReplaceAllString(msg, "")
				if ok || !strings.Contains(msg, "timed out after 3 seconds") {
					t.Fatalf("at %#x a build without SetOptions, past the key's build_timeout: ok %v, %q after %v; want Nix's timeout", version, ok, msg, time.Since(start).Round(time.Second))
				}
				if valid, err := c.isValid(out); err != nil || valid {
					t.Fatalf("at %#x after the build: %s valid %v, %v; want not valid, the session in step", version, out, valid, err)
				}
				c.close()
			}
		})
	}
}

// TestMaxJobsCap: a raw worker client asks for eight jobs in its
// SetOptions and builds two derivations in one BuildPaths through Nix's
// root daemon. Without a cap the two build at once; once the key has
// max_jobs = 1, whatever the client asked, one builds after the other.
func TestMaxJobsCap(t *testing.T) {
	for _, mode := range []string{modeExec, modeServe} {
		t.Run(mode, func(t *testing.T) {
			b, d := newDaemonBuilder(t, mode)
			if mode == modeServe {
				b.waitHealthy(t, 1)
			}
			// twoAtOnce builds two new timed derivations with jobs = 8
			// asked, and reports whether their builds overlapped.
			twoAtOnce := func() bool {
				t.Helper()
				var drvs, outs []string
				for i := 0; i < 2; i++ {
					nonce := fmt.Sprint("jobs-", i, "-", time.Now().UnixNano())
					drv := d.instantiateScript(t, nonce, "/usr/bin/cut -d' ' -f1 /proc/uptime > $out; /bin/sleep 3; /usr/bin/cut -d' ' -f1 /proc/uptime >> $out; echo "+nonce+" >> $out")
					drvs = append(drvs, drv+"!out")
					outs = append(outs, strings.TrimSpace(mustRun(t, d.env(), "nix-store", "-q", "--outputs", drv).stdout))
				}
				c := b.dialWorker(t, "build", 1<<8|34)
				defer c.close()
				opts := wop(19).u64(0, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 1).u64(0).b
				if msg, failed := c.call(opts); failed {
					t.Fatalf("SetOptions: %s", msg)
				}
				if msg, failed := c.call(wop(9).strs(drvs...).u64(0).b); failed || c.u64() != 1 {
					t.Fatalf("BuildPaths of two derivations: %q", ansiEscape.ReplaceAllString(msg, ""))
				}
				s0, e0 := interval(t, outs[0])
				s1, e1 := interval(t, outs[1])
				return s0 < e1 && s1 < e0
			}
			if !twoAtOnce() {
				t.Fatalf("without a cap, two derivations of one BuildPaths with 8 jobs asked built one after the other: the test cannot tell the cap apart")
			}
			b.limitBuildKey(t, "max_jobs = 1\n")
			if twoAtOnce() {
				t.Errorf("a key with max_jobs = 1 built two derivations at once")
			}
		})
	}
}
