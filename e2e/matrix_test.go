package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The version matrix: Nix clients of each version users run (Debian
// 12's 2.8, trixie's 2.26, sid's 2.34) against builders of each, through
// nixgate serve and exec mode, over ssh:// and ssh-ng://.
//
// A builder of version X is nixgate (the host's build of it) whose Nix —
// nix-store --serve and nix-daemon --stdio, and the root nix-daemon that
// builds — is X's: for a chroot's Nix, nixgate's bin_dirs hold wrappers
// that run the chroot's binaries as the build account (in a user and
// mount namespace of its own, with /proc and /dev), talking to a root
// nix-daemon of the chroot on a store of the chroot's own. A client of
// version Y runs in Y's chroot (as root, with /proc and /dev), on a
// store of its own, with OpenSSH's client from the chroot.

// nixWrappers writes, into a directory of its own, nix-store and
// nix-daemon that run the binaries of the chroot at root as the caller,
// with the daemon's socket path made the chroot's, and returns the
// directory.
func nixWrappers(t testing.TB, root string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nixgate-wrappers-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, name := range []string{"nix-store", "nix-daemon"} {
		writeFile(t, filepath.Join(dir, name), fmt.Sprintf(`#!/bin/sh
# %[2]s of the Nix in %[1]s, for the build account: a user namespace of
# its own lets it chroot; its daemon socket is the chroot's path.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
root=%[1]s
if [ -n "$NIX_DAEMON_SOCKET_PATH" ]; then
  NIX_DAEMON_SOCKET_PATH=/${NIX_DAEMON_SOCKET_PATH#"$root"/}
  export NIX_DAEMON_SOCKET_PATH
fi
exec unshare --user --map-root-user --mount -- sh -c 'mount --rbind /proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" /usr/bin/%[2]s "$@"' "$root" "$@"
`, root, name), 0o755)
	}
	return dir
}

// matrixClient is a Nix client of one version for one builder.
type matrixClient struct {
	n nixUnderTest
	// dir holds its files, as the host sees them; inside is a host path
	// as the client sees it.
	dir    string
	inside func(string) string
	env    []string
}

// newMatrixClient sets up a client of Nix n for builder b: its own
// store, the builder's keys, known host key and an ssh_config naming
// them, all where n's Nix sees them.
func newMatrixClient(t testing.TB, n nixUnderTest, b *builder) *matrixClient {
	t.Helper()
	base := os.TempDir()
	if n.chroot != "" {
		base = filepath.Join(n.chroot, "tmp")
	}
	dir, err := os.MkdirTemp(base, "nixgate-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &matrixClient{n: n, dir: dir, inside: func(p string) string { return p }}
	if n.chroot != "" {
		c.inside = func(p string) string { return "/" + strings.TrimPrefix(strings.TrimPrefix(p, n.chroot), "/") }
	}
	// The builder's client files, with their paths made this client's.
	src := filepath.Dir(b.sshConfig)
	cfg := readFile(t, b.sshConfig)
	for name, k := range b.keys {
		key := filepath.Join(dir, "keys", name)
		writeFile(t, key, readFile(t, k.path), 0o600)
		cfg = strings.ReplaceAll(cfg, k.path+"\n", c.inside(key)+"\n")
	}
	writeFile(t, filepath.Join(dir, "known_hosts"), readFile(t, filepath.Join(src, "known_hosts")), 0o644)
	cfg = strings.ReplaceAll(cfg, filepath.Join(src, "known_hosts"), c.inside(filepath.Join(dir, "known_hosts")))
	writeFile(t, filepath.Join(dir, "ssh_config"), cfg, 0o644)
	writeFile(t, filepath.Join(dir, "nix", "nix.conf"), fmt.Sprintf(`store = local?root=%s
substituters =
experimental-features = nix-command
sandbox = false
`, c.inside(filepath.Join(dir, "store"))), 0o644)
	c.env = []string{
		"HOME=" + c.inside(dir),
		"NIX_CONF_DIR=" + c.inside(filepath.Join(dir, "nix")),
		"NIX_SSHOPTS=-F " + c.inside(filepath.Join(dir, "ssh_config")),
		"NIX_REMOTE=",
		"XDG_CACHE_HOME=" + c.inside(filepath.Join(dir, "cache")),
	}
	return c
}

// addBuilder lets the client reach builder fb too, as prefix-KEY (its
// hosts are builder-KEY to fb's own clients).
func (c *matrixClient) addBuilder(t testing.TB, fb *builder, prefix string) {
	t.Helper()
	src := filepath.Dir(fb.sshConfig)
	cfg := readFile(t, fb.sshConfig)
	for name, k := range fb.keys {
		key := filepath.Join(c.dir, "keys", prefix+name)
		writeFile(t, key, readFile(t, k.path), 0o600)
		cfg = strings.ReplaceAll(cfg, k.path+"\n", c.inside(key)+"\n")
	}
	known := filepath.Join(c.dir, prefix+"known_hosts")
	writeFile(t, known, readFile(t, filepath.Join(src, "known_hosts")), 0o644)
	cfg = strings.ReplaceAll(cfg, filepath.Join(src, "known_hosts"), c.inside(known))
	cfg = strings.ReplaceAll(cfg, "Host builder-", "Host "+prefix)
	f := filepath.Join(c.dir, "ssh_config")
	writeFile(t, f, readFile(t, f)+cfg, 0o644)
}

// nix runs a Nix command as this client.
func (c *matrixClient) nix(t testing.TB, argv ...string) result {
	t.Helper()
	if c.n.chroot == "" {
		return run(t, append([]string{"PATH=/usr/bin:/bin"}, c.env...), nil, argv...)
	}
	return run(t, nil, nil, chrootArgv(c.n.chroot, append(slices.Clone(c.env), argv...)...)...)
}

// addPath adds a file holding content to the client's store.
func (c *matrixClient) addPath(t testing.TB, name, content string) string {
	t.Helper()
	f := filepath.Join(c.dir, "payload", name)
	writeFile(t, f, content, 0o644)
	r := c.nix(t, "nix-store", "--add", c.inside(f))
	if r.code != 0 {
		t.Fatalf("nix-store --add: %s", r)
	}
	return strings.TrimSpace(r.stdout)
}

// derivation writes a derivation that builds with the host's busybox
// (copied where the client sees it) and returns its file as the client
// sees it.
func (c *matrixClient) derivation(t testing.TB, nonce string, secs int) string {
	t.Helper()
	file := writeDerivation(t, c.dir, nonce)
	expr := strings.ReplaceAll(readFile(t, file), c.dir, c.inside(c.dir))
	if secs > 0 {
		expr = strings.Replace(expr, `"echo built remotely`, fmt.Sprintf(`"${bb}/bin/busybox sleep %d; echo built remotely`, secs), 1)
	}
	writeFile(t, file, expr, 0o644)
	return c.inside(file)
}

// matrixCell is one cell of the version matrix: what worked.
type matrixCell struct {
	client, builder, mode, scheme string
	passed, failed                []string
}

// matrixResults collects the cells as the subtests run.
type matrixResults struct {
	mu    sync.Mutex
	cells []*matrixCell
}

func (m *matrixResults) add(c *matrixCell) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells = append(m.cells, c)
}

// TestVersionMatrix runs, for every builder version and mode, clients of
// every version over ssh:// and ssh-ng://: nix store ping (info), nix
// copy --to and --from, a remote build with --builders, a substitute
// key's copy --to refused, and over ssh-ng:// a build in the builder's
// store (--store ssh-ng:// --eval-store auto). Each builder also holds a
// build key's build_timeout for a client of its own version. A failure
// names the client's and the builder's version, the mode and the scheme
// in its subtest's name. docs/development.md's version table is made from the
// cells (NIXGATE_MATRIX_README=1 writes it; otherwise a table that
// differs fails the test).
func TestVersionMatrix(t *testing.T) {
	versions := nixVersions(t)
	results := &matrixResults{}
	// Where builds go while a builder drains.
	fallback := newBuilder(t, modeServe)
	for _, bn := range versions {
		for _, mode := range []string{modeServe, modeExec} {
			t.Run(fmt.Sprintf("builder%s/%s", bn.name, mode), func(t *testing.T) {
				testMatrixBuilder(t, bn, mode, versions, results, fallback)
			})
		}
	}
	// Every cell, or a run of some (go test -run) that says nothing of
	// the README.
	if n := len(versions); t.Failed() || n < 3 || len(results.cells) != n*2*n*2 {
		return
	}
	checkMatrixTable(t, results)
}

func testMatrixBuilder(t *testing.T, bn nixUnderTest, mode string, clients []nixUnderTest, results *matrixResults, fallback *builder) {
	b, d := newMatrixBuilder(t, mode, bn)
	// The builder signs what it serves with a key of its own (nix store
	// sign, as root through its daemon); clients trust its public half.
	keyDir := filepath.Dir(d.socket)
	secret, public := filepath.Join(keyDir, "signing.sec"), filepath.Join(keyDir, "signing.pub")
	mustRun(t, nil, "nix-store", "--generate-binary-cache-key", "nixgate-matrix-"+bn.name, secret, public)
	pub := strings.TrimSpace(readFile(t, public))
	onDaemon := func(argv ...string) result {
		t.Helper()
		argv = append(d.env(), argv...)
		if d.chroot != "" {
			return run(t, nil, nil, chrootArgv(d.chroot, argv...)...)
		}
		return run(t, nil, nil, append([]string{"env", "PATH=/usr/bin:/bin"}, argv...)...)
	}
	onBuilder := func(name, content string) string {
		t.Helper()
		f := filepath.Join(filepath.Dir(d.socket), name)
		writeFile(t, f, content, 0o644)
		r := onDaemon("nix-store", "--add", d.inside(f))
		if r.code != 0 {
			t.Fatalf("adding %s on the builder: %s", name, r)
		}
		p := strings.TrimSpace(r.stdout)
		if r := onDaemon("nix", "store", "sign", "--key-file", d.inside(secret), p); r.code != 0 {
			t.Fatalf("signing %s on the builder: %s", p, r)
		}
		return p
	}
	// nixgate check names the builder's Nix and the protocols it speaks.
	t.Run("check", func(t *testing.T) {
		rs, _ := runCheck(t, "--config", b.config, "--mode", mode)
		finding(t, rs, "protocol", "ok", "Nix "+bn.name+".", "")
		for _, r := range rs {
			if r.Name == "protocol" {
				t.Logf("check: %s", r.Message)
				want := fmt.Sprintf("serve protocol 2.7 over ssh:// and worker protocol %d.%d over ssh-ng://", bn.protocol>>8, bn.protocol&0xff)
				if !strings.Contains(r.Message, want) {
					t.Errorf("check says %q; want %q", r.Message, want)
				}
			}
		}
	})
	for _, cn := range clients {
		c := newMatrixClient(t, cn, b)
		for _, scheme := range []string{"ssh", "ssh-ng"} {
			t.Run(fmt.Sprintf("client%s/%s", cn.name, scheme), func(t *testing.T) {
				cell := &matrixCell{client: cn.name, builder: bn.name, mode: mode, scheme: scheme}
				defer results.add(cell)
				step := func(name string, r result, ok bool) {
					t.Helper()
					if ok {
						cell.passed = append(cell.passed, name)
						return
					}
					cell.failed = append(cell.failed, name)
					t.Errorf("client %s, builder %s, %s, %s://: %s: %s", cn.name, bn.name, mode, scheme, name, r)
				}
				store := scheme + "://" + b.Host("build")
				nonce := fmt.Sprint(cn.name, "-", bn.name, "-", mode, "-", scheme, "-", time.Now().UnixNano())

				ping := []string{"nix", "store", "info", "--store", store}
				if cn.name == "2.8" {
					ping = []string{"nix", "store", "ping", "--store", store}
				}
				r := c.nix(t, ping...)
				// Nix 2.26 and later say the builder's version over
				// ssh-ng://: the Nix under test is the one answering.
				step("ping", r, r.code == 0 && (cn.name == "2.8" || scheme == "ssh" || strings.Contains(r.stdout+r.stderr, "Version: "+bn.name+".")))

				p := c.addPath(t, "to-"+nonce, "copied to the builder\n")
				r = c.nix(t, "nix", "copy", "--to", store, p)
				step("copy --to", r, r.code == 0)

				q := onBuilder("from-"+nonce, "copied from the builder\n")
				r = c.nix(t, "nix", "copy", "--from", store, q)
				ok := r.code == 0
				if ok {
					r = c.nix(t, "nix-store", "--check-validity", q)
					ok = r.code == 0
				}
				step("copy --from", r, ok)

				r = c.nix(t, "nix-build", c.derivation(t, nonce, 0), "--no-out-link", "-j0",
					"--builders", store+" x86_64-linux - 1")
				step("remote build", r, r.code == 0 && strings.Contains(readOutput(t, c, r.stdout), "built remotely "+nonce))

				sub := onBuilder("substituted-"+nonce, "substituted from the builder\n")
				r = c.nix(t, "nix-store", "--realise", sub, "--option", "substituters", scheme+"://"+b.Host("substitute"),
					"--option", "trusted-public-keys", pub)
				step("substituter (substitute key)", r, r.code == 0 && strings.TrimSpace(r.stdout) == sub)

				s := c.addPath(t, "refused-"+nonce, "not for a substitute key\n")
				r = c.nix(t, "nix", "copy", "--to", scheme+"://"+b.Host("substitute"), s)
				step("substitute key read-only", r, r.code != 0 && strings.Contains(r.stderr, "nixgate: "))

				if scheme == "ssh-ng" {
					r = c.nix(t, "nix", "build", "--no-link", "--json", "--store", store, "--eval-store", "auto",
						"-f", c.derivation(t, nonce+"-store", 0))
					step("build in the builder's store", r, r.code == 0 && strings.Contains(r.stdout, `"out":"/nix/store/`))
				}
			})
		}
	}
	// Drained, the builder turns its clients away with a line they print,
	// and Nix builds on the next builder it has.
	for _, cn := range clients {
		if cn.name != bn.name {
			continue
		}
		t.Run("drain", func(t *testing.T) {
			c := newMatrixClient(t, cn, b)
			c.addBuilder(t, fallback, "fallback-")
			b.drain(t, "--reason", "matrix")
			defer mustRun(t, nil, nixgateBin, "drain", "--config", b.config, "--off")
			for _, scheme := range []string{"ssh", "ssh-ng"} {
				nonce := fmt.Sprint("drain-", cn.name, "-", mode, "-", scheme, "-", time.Now().UnixNano())
				// The drained builder is the faster: Nix tries it first.
				builders := scheme + "://" + b.Host("build") + " x86_64-linux - 1 10 ; " + scheme + "://fallback-build x86_64-linux - 1 1"
				r := c.nix(t, "nix-build", c.derivation(t, nonce, 0), "--no-out-link", "-j0", "--builders", builders)
				if r.code != 0 || !strings.Contains(r.stderr, "builder draining: matrix") || !strings.Contains(readOutput(t, c, r.stdout), "built remotely "+nonce) {
					t.Errorf("client %s, builder %s, %s, %s://: a build while the builder drains: %s; want nixgate's line and the build on the next builder", cn.name, bn.name, mode, scheme, r)
				}
			}
		})
	}

	// The build key's build_timeout, for a client of the builder's own
	// version (the caps reach its Nix however it is asked).
	for _, cn := range clients {
		if cn.name != bn.name {
			continue
		}
		t.Run("build_timeout", func(t *testing.T) {
			b.limitBuildKey(t, "build_timeout = \"3s\"\n")
			c := newMatrixClient(t, cn, b)
			for _, scheme := range []string{"ssh", "ssh-ng"} {
				r := c.nix(t, "nix-build", c.derivation(t, fmt.Sprint("timeout-", scheme, "-", time.Now().UnixNano()), 60), "--no-out-link", "-j0",
					"--option", "build-timeout", "3600", "--builders", scheme+"://"+b.Host("build")+" x86_64-linux - 1")
				if r.code == 0 || !strings.Contains(ansiEscape.ReplaceAllString(r.stderr, ""), "timed out after 3 seconds") {
					t.Errorf("client %s, builder %s, %s, %s://: a build past the key's build_timeout: %s", cn.name, bn.name, mode, scheme, r)
				}
			}
		})
	}
}

// readOutput reads the build's output, whose path nix-build printed, in
// the client's store (a local?root= store: on disk under its root).
func readOutput(t testing.TB, c *matrixClient, stdout string) string {
	t.Helper()
	out := strings.TrimSpace(stdout)
	if !strings.HasPrefix(out, "/nix/store/") {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(c.dir, "store", out))
	if err != nil {
		t.Logf("the build's output: %v", err)
	}
	return string(b)
}

// newMatrixBuilder is a builder of mode whose Nix is n's, every part of
// it: the root daemon that builds, and nix-store --serve and nix-daemon
// --stdio that nixgate runs. The build account is in the daemon's
// trusted-users, as the README sets a builder up.
func newMatrixBuilder(t testing.TB, mode string, n nixUnderTest) (*builder, *nixDaemon) {
	t.Helper()
	if n.chroot == "" {
		b, d := newDaemonBuilderOf(t, mode, n, true)
		if mode == modeServe {
			b.waitHealthy(t, 1)
		}
		return b, d
	}
	dir, err := os.MkdirTemp(filepath.Join(n.chroot, "tmp"), "nixgate-daemon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b := newBuilderWith(t, mode, builderOptions{daemonSocket: filepath.Join(dir, "socket"), binDir: nixWrappers(t, n.chroot)})
	d := startChrootDaemon(t, n.chroot, dir, fmt.Sprint(b.account.uid))
	if mode == modeServe {
		b.waitHealthy(t, 1)
	}
	return b, d
}

// docs/development.md's version table lies between these lines.
const (
	matrixBegin = "<!-- version matrix: made by TestVersionMatrix (NIXGATE_MATRIX_README=1 make e2e) -->\n"
	matrixEnd   = "<!-- end of the version matrix -->\n"
)

// matrixTable renders the cells: a row per client and builder, a column
// per mode and scheme, each the steps that passed.
func matrixTable(cells []*matrixCell) string {
	type key struct{ client, builder string }
	rows := map[key]map[string]*matrixCell{}
	var order []key
	for _, c := range cells {
		k := key{c.client, c.builder}
		if rows[k] == nil {
			rows[k] = map[string]*matrixCell{}
			order = append(order, k)
		}
		rows[k][c.mode+" "+c.scheme] = c
	}
	slices.SortFunc(order, func(a, b key) int {
		if c := versionCompare(a.client, b.client); c != 0 {
			return c
		}
		return versionCompare(a.builder, b.builder)
	})
	cols := []string{"serve ssh", "serve ssh-ng", "exec ssh", "exec ssh-ng"}
	var sb strings.Builder
	sb.WriteString("| client | builder | serve, ssh:// | serve, ssh-ng:// | exec, ssh:// | exec, ssh-ng:// |\n|---|---|---|---|---|---|\n")
	for _, k := range order {
		fmt.Fprintf(&sb, "| Nix %s | Nix %s |", k.client, k.builder)
		for _, col := range cols {
			c := rows[k][col]
			switch {
			case c == nil:
				sb.WriteString(" — |")
			case len(c.failed) > 0:
				fmt.Fprintf(&sb, " fails: %s |", strings.Join(c.failed, ", "))
			default:
				sb.WriteString(" all pass |")
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// versionCompare orders "2.8" before "2.26".
func versionCompare(a, b string) int {
	var am, an, bm, bn int
	fmt.Sscanf(a, "%d.%d", &am, &an)
	fmt.Sscanf(b, "%d.%d", &bm, &bn)
	if am != bm {
		return am - bm
	}
	return an - bn
}

// checkMatrixTable compares docs/development.md's version table with the one
// this run made, or, with NIXGATE_MATRIX_README=1, writes it there.
func checkMatrixTable(t *testing.T, results *matrixResults) {
	t.Helper()
	table := matrixTable(results.cells)
	t.Logf("the version matrix:\n%s", table)
	readme := filepath.Join("..", "docs", "development.md")
	doc := readFile(t, readme)
	i := strings.Index(doc, matrixBegin)
	j := strings.Index(doc, matrixEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/development.md has no version matrix between %q and %q", matrixBegin, matrixEnd)
	}
	current := doc[i+len(matrixBegin) : j]
	if current == table {
		return
	}
	if os.Getenv("NIXGATE_MATRIX_README") == "1" {
		writeFile(t, readme, doc[:i+len(matrixBegin)]+table+doc[j:], 0o644)
		t.Logf("docs/development.md's version matrix written")
		return
	}
	t.Errorf("docs/development.md's version matrix is not what this run found (NIXGATE_MATRIX_README=1 make e2e writes it):\ndocs/development.md:\n%s\nthis run:\n%s", current, table)
}
