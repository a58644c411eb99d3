//go:build bench

package e2e

// Issue 23, "copy at the speed of a local pipe": nix copy --to through
// nixgate serve against the same Nix at the other end of a plain pipe,
// with OpenSSH's sshd and a copy without any remote side (the store's
// own floor) beside them, wall time and CPU per process, in one
// interleaved run. Run it with bench/throughput.sh.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The lines around BenchmarkThroughput's section of docs/BENCHMARKS.md.
const (
	throughputBegin = "<!-- throughput:begin -->"
	throughputEnd   = "<!-- throughput:end -->"
)

// Schemes of a route; the store floor has none.
const (
	schemeSSH = "ssh"
	schemeNG  = "ssh-ng"
)

// tpRoute is one way nix copy --to reaches a store.
type tpRoute struct {
	key     string   // its name in metrics: floor, pipe, openssh, nixgate, nixgate-LABEL
	name    string   // what the report calls it
	variant string   // a nixgate variant's label (NIXGATE_BENCH_VARIANTS); empty otherwise
	scheme  string   // schemeSSH or schemeNG; empty for the store floor
	from    *builder // whose client store and environment run nix copy
	env     []string // added to that environment (the local pipe's PATH)
	to      string   // nix copy's --to; empty for the store floor, a new local?root= each copy
	// server is the PID whose CPU is the server side: nixgate serve
	// (serve set: its own CPU, and its children's, the remote Nix, apart)
	// or OpenSSH's sshd listener (its children's: per-connection sshd and
	// Nix together); 0 for none.
	server int
	serve  bool
	recv   *builder // whose store receives the copy; nil for the store floor
}

// tpKind is one kind of payload: the store paths one nix copy copies.
type tpKind struct {
	name  string
	paths []string
}

// tpSample is one copy: wall time in ms and CPU seconds of the client
// (nix copy and its ssh, or for the local pipe the remote Nix too), the
// server (nixgate serve itself, or sshd with Nix) and the server's Nix
// (nixgate serve's child; -1 where it is not apart).
type tpSample struct {
	wall, client, server, nix float64
	orphaned                  bool // the remote Nix outlived its session's server process
}

// tpSeries are the samples of one route and payload.
type tpSeries []tpSample

// medians returns the median of each of s's measures, and of the CPU
// seconds of all processes together.
func (s tpSeries) medians() (m tpSample, total float64) {
	var wall, client, server, nix, sum []float64
	for _, x := range s {
		wall, client, server, nix = append(wall, x.wall), append(client, x.client), append(server, x.server), append(nix, x.nix)
		sum = append(sum, x.client+x.server+max(x.nix, 0))
	}
	return tpSample{wall: median(wall), client: median(client), server: median(server), nix: median(nix)}, median(sum)
}

// BenchmarkThroughput measures nix copy --to of one 256 MiB path and of
// 2,000 small paths in one command, over ssh:// and ssh-ng://, through:
// the store's floor (a local?root= store, no remote side); a local pipe
// (an ssh that runs the remote Nix directly, as the build account, as
// nixgate serve runs it); OpenSSH's sshd with its plain forced commands;
// nixgate serve; and nixgate serve of every NIXGATE_BENCH_VARIANTS
// binary. Each round runs every route once, in an order rotated per
// round; NIXGATE_BENCH_ROUNDS rounds (7). It prints its Markdown section
// and writes it into docs/BENCHMARKS.md.
func BenchmarkThroughput(b *testing.B) {
	rounds := 7
	if s := os.Getenv("NIXGATE_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("NIXGATE_BENCH_ROUNDS=%q: want a count of at least 1", s)
		}
		rounds = n
	}
	variants := parseVariants(b, os.Getenv("NIXGATE_BENCH_VARIANTS"))

	ossh := newBuilder(b, modeExec)
	ng := newBuilder(b, modeServe)
	becomeSubreaper(b)
	vbs := make([]*builder, len(variants))
	for i, v := range variants {
		vbs[i] = newBuilderWith(b, modeServe, builderOptions{bin: v.bin})
	}

	// Before any copy: each nixgate build's nix store ping round trip
	// and memory per idle authenticated connection, alternating builds.
	ngs := append([]*builder{ng}, vbs...)
	pings := make([][]float64, len(ngs))
	idle := make([]int64, len(ngs))
	for i, x := range ngs {
		// Room for the idle connections from one address (as BenchmarkReport).
		cfg := readFile(b, x.config)
		writeFile(b, x.config, strings.Replace(cfg, "[limits]\n", "[limits]\nmax_startups = 1024\nper_source_max_startups = 1024\nper_source_rate = 100000\n", 1), 0o644)
		x.waitReload(b)
		idle[i] = idleMemory(b, x, "build", tpIdleConns, func() int64 { return treeRSS(x.serve.Process.Pid) })
	}
	for r := 0; r < tpPings; r++ {
		for i := range ngs {
			x := ngs[(i+r)%len(ngs)]
			pings[(i+r)%len(ngs)] = append(pings[(i+r)%len(ngs)], timed(b, func() { x.mustNix(b, "nix", "store", "ping", "--store", "ssh://"+x.Host("build")) }))
		}
	}

	// The payloads, the same store paths in every client store.
	senders := append([]*builder{ossh, ng}, vbs...)
	kinds := addPayloads(b, ng.root, senders)

	pipe := writeLocalPipe(b, ng)
	routes := []*tpRoute{{key: "floor", name: "store floor (local?root=, no SSH)", from: ng}}
	for _, scheme := range []string{schemeSSH, schemeNG} {
		// OpenSSH's key and the forced command it runs (keyLines).
		forced := map[string]struct{ key, command string }{schemeSSH: {"direct", "nix-store --serve --write"}, schemeNG: {"direct-ng", "nix-daemon --stdio"}}[scheme]
		routes = append(routes,
			&tpRoute{key: "pipe", name: "local pipe (no SSH)", scheme: scheme, from: ng, env: pipe, to: scheme + "://nixgate-local-pipe", recv: ng},
			&tpRoute{key: "openssh", name: "OpenSSH, forced " + forced.command, scheme: scheme, from: ossh, to: scheme + "://" + ossh.Host(forced.key), server: ossh.sshd.Process.Pid, recv: ossh},
			&tpRoute{key: "nixgate", name: "nixgate serve", scheme: scheme, from: ng, to: scheme + "://" + ng.Host("build"), server: ng.serve.Process.Pid, serve: true, recv: ng})
		for i, v := range variants {
			routes = append(routes, &tpRoute{key: "nixgate-" + v.label, name: "nixgate serve " + v.label, variant: v.label, scheme: scheme, from: vbs[i], to: scheme + "://" + vbs[i].Host("build"), server: vbs[i].serve.Process.Pid, serve: true, recv: vbs[i]})
		}
	}

	series := map[*tpRoute]map[string]tpSeries{}
	for _, rt := range routes {
		series[rt] = map[string]tpSeries{}
	}
	var roundTimes []float64
	for r := 0; r < rounds; r++ {
		start := time.Now()
		order := kinds
		if r%2 == 1 {
			order = []tpKind{kinds[1], kinds[0]}
		}
		for _, k := range order {
			for i := range routes {
				rt := routes[(i+r)%len(routes)]
				series[rt][k.name] = append(series[rt][k.name], copyOnce(b, rt, k))
			}
		}
		roundTimes = append(roundTimes, time.Since(start).Seconds())
		fmt.Printf("throughput: round %d of %d took %.0f s\n", r+1, rounds, roundTimes[r])
	}

	section := throughputSection(routes, kinds, series, rounds, roundTimes)
	section += idleSection(variants, pings, idle)
	fmt.Print(section)
	path := repoFile(b, "docs/BENCHMARKS.md")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(withThroughput(string(old), throughputBegin+"\n"+section+throughputEnd+"\n")), 0o644); err != nil {
		b.Fatal(err)
	}
	// The key ratios: wall time over the local pipe's, per route, scheme
	// and payload.
	for _, rt := range routes {
		if rt.scheme == "" || rt.key == "pipe" {
			continue
		}
		pipeRoute := findRoute(routes, "pipe", rt.scheme)
		for i, k := range kinds {
			unit := fmt.Sprintf("%s/pipe-%s-%s", rt.key, rt.scheme, []string{"256MiB", "2000paths"}[i])
			m, _ := series[rt][k.name].medians()
			p, _ := series[pipeRoute][k.name].medians()
			b.ReportMetric(m.wall/p.wall, unit)
		}
	}
	b.ReportMetric(0, "ns/op")
}

// tpPings and tpIdleConns size the ping and idle memory series.
const (
	tpPings     = 30
	tpIdleConns = 128
)

// idleSection is the report's table of each nixgate build's ping round
// trip and memory per idle connection, measured before the copies.
func idleSection(variants []tpVariant, pings [][]float64, idle []int64) string {
	var s strings.Builder
	fmt.Fprintf(&s, "\nBefore the copies, each nixgate build's `nix store ping --store ssh://…` round trip (%d runs each, alternating builds) and the RSS added by %d idle authenticated connections, per connection:\n\n", tpPings, tpIdleConns)
	s.WriteString("| nixgate | ping median | ping p90 | memory per idle connection | target |\n|---|---|---|---|---|\n")
	for i := range pings {
		label := "this build"
		if i > 0 {
			label = variants[i-1].label
		}
		per := float64(idle[i]) / tpIdleConns / 1024
		fmt.Fprintf(&s, "| %s | %.1f ms | %.1f ms | %.0f KiB | < 200 KiB %s |\n", label, median(pings[i]), pct(pings[i], 0.9), per, verdict(per < 200))
	}
	return s.String()
}

// tpVariant is a nixgate binary measured beside this one.
type tpVariant struct{ label, bin string }

// parseVariants reads NIXGATE_BENCH_VARIANTS, label=/path/to/nixgate
// entries separated by commas.
func parseVariants(t testing.TB, s string) []tpVariant {
	t.Helper()
	var vs []tpVariant
	for _, e := range strings.Split(s, ",") {
		if strings.TrimSpace(e) == "" {
			continue
		}
		label, bin, ok := strings.Cut(e, "=")
		if !ok || label == "" || strings.ContainsAny(label, " \t") || bin == "" {
			t.Fatalf("NIXGATE_BENCH_VARIANTS: %q is not label=/path/to/nixgate", e)
		}
		if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("NIXGATE_BENCH_VARIANTS: %s: not an executable file (%v)", bin, err)
		}
		vs = append(vs, tpVariant{label, bin})
	}
	return vs
}

// findRoute returns the route of key and scheme.
func findRoute(routes []*tpRoute, key, scheme string) *tpRoute {
	for _, rt := range routes {
		if rt.key == key && rt.scheme == scheme {
			return rt
		}
	}
	return nil
}

// addPayloads writes the two payloads under dir, adds them to the client
// store of every sender (a few nix-store --add processes each), checks
// that they are the same store paths everywhere, and removes the files.
func addPayloads(t testing.TB, dir string, senders []*builder) []tpKind {
	t.Helper()
	dir = filepath.Join(dir, "throughput-payload")
	bigFile := filepath.Join(dir, "big", "throughput-256MiB")
	data := make([]byte, 256<<20)
	rand.Read(data)
	writeFile(t, bigFile, string(data), 0o644)
	data = nil
	var small []string
	var smallBytes int64
	for i := 0; i < 2000; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(60<<10+1))
		buf := make([]byte, 4<<10+int(n.Int64()))
		rand.Read(buf)
		f := filepath.Join(dir, "small", fmt.Sprintf("throughput-small-%04d", i))
		writeFile(t, f, string(buf), 0o644)
		small = append(small, f)
		smallBytes += int64(len(buf))
	}
	var bigPaths, smallPaths []string
	for i, bd := range senders {
		bp := addFiles(t, bd, []string{bigFile})
		var sp []string
		for j := 0; j < len(small); j += 500 {
			sp = append(sp, addFiles(t, bd, small[j:min(j+500, len(small))])...)
		}
		if i == 0 {
			bigPaths, smallPaths = bp, sp
		} else if !slices.Equal(bp, bigPaths) || !slices.Equal(sp, smallPaths) {
			t.Fatalf("the payloads are other store paths in %s's client store than in the first", bd.root)
		}
	}
	os.RemoveAll(dir)
	return []tpKind{
		{name: "256 MiB, one path", paths: bigPaths},
		{name: fmt.Sprintf("2,000 paths of 4–64 KiB (%.0f MiB)", float64(smallBytes)/(1<<20)), paths: smallPaths},
	}
}

// addFiles adds files to bd's client store with one nix-store --add and
// returns their store paths, in order.
func addFiles(t testing.TB, bd *builder, files []string) []string {
	t.Helper()
	r := bd.mustNix(t, append([]string{"nix-store", "--add"}, files...)...)
	paths := strings.Fields(r.stdout)
	if len(paths) != len(files) {
		t.Fatalf("nix-store --add of %d files printed %d paths", len(files), len(paths))
	}
	return paths
}

// nixCommand is how nixgate serve runs a Nix program: argv, environment
// and working directory, as its process shows them.
type nixCommand struct {
	argv, env []string
	dir       string
}

// probeNix opens a session of the key build on bd's nixgate serve running
// command, greets with hello and reads the reply (Nix runs then), and
// returns how nixgate runs Nix: its child process's argv, environment and
// working directory. It waits until that child is gone.
func probeNix(t testing.TB, bd *builder, command string, hello []byte, reply int) nixCommand {
	t.Helper()
	c := bd.mustDial(t, "build")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start(command); err != nil {
		t.Fatal(err)
	}
	in.Write(hello)
	buf := make([]byte, reply)
	read := make(chan error, 1)
	go func() { _, err := out.Read(buf); read <- err }()
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("%s: no reply: %v", command, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no reply within 30 s", command)
	}
	var kids []int
	for i := 0; i < 300 && len(kids) == 0; i++ {
		kids = childrenOf(bd.serve.Process.Pid)
		if len(kids) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(kids) != 1 {
		t.Fatalf("%s: nixgate serve has %d children; want its Nix alone", command, len(kids))
	}
	pid := kids[0]
	cmdline, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	environ, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	cwd, err3 := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("reading nixgate's Nix (pid %d): %v %v %v", pid, err1, err2, err3)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil || int(st.Uid) != bd.account.uid {
		t.Fatalf("nixgate's Nix (pid %d) is not the build account's (uid %d): %v", pid, st.Uid, err)
	}
	in.Close()
	s.Close()
	c.Close()
	waitReaped(t, bd.serve.Process.Pid, 30*time.Second)
	split := func(b []byte) []string { return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00") }
	return nixCommand{argv: split(cmdline), env: split(environ), dir: cwd}
}

// writeLocalPipe writes the local pipe's ssh: a script that, given
// Nix's ssh arguments (the host, options, then the command as one last
// argument), runs the Nix nixgate serve would run for that command,
// exactly as bd's nixgate serve runs it (probeNix: argv, environment,
// working directory), as the build account, with no SSH between. It
// returns the environment that puts it first in the client's PATH.
func writeLocalPipe(t testing.TB, bd *builder) []string {
	t.Helper()
	var s strings.Builder
	s.WriteString(`#!/bin/sh
# The local pipe of BenchmarkThroughput: Nix's ssh, replaced by the remote
# Nix itself, run as nixgate serve runs it. Nix calls ssh HOST OPTIONS…
# COMMAND. Not exec'd: Nix kills its ssh when the copy is done, and the
# remote Nix, left behind, ends as it does behind a server, on the end
# of its input (the benchmark reaps it and counts its CPU).
for last; do :; done
case "$last" in
`)
	for _, c := range []struct {
		command string
		hello   []byte
		reply   int
	}{{"nix-store --serve --write", serveHello, len(serveReply)}, {"nix-daemon --stdio", daemonHello, len(daemonReply)}} {
		nc := probeNix(t, bd, c.command, c.hello, c.reply)
		fmt.Fprintf(&s, "%s)\n\tcd %s || exit 1\n\tsetpriv --reuid %d --regid %d --clear-groups -- env -i", shellQuote(c.command), shellQuote(nc.dir), bd.account.uid, bd.account.gid)
		for _, kv := range nc.env {
			s.WriteString(" " + shellQuote(kv))
		}
		for _, a := range nc.argv {
			s.WriteString(" " + shellQuote(a))
		}
		s.WriteString("\n\texit $? ;;\n")
	}
	s.WriteString("esac\necho \"local pipe: unexpected ssh arguments: $*\" >&2\nexit 1\n")
	dir := filepath.Join(bd.root, "local-pipe")
	writeFile(t, filepath.Join(dir, "ssh"), s.String(), 0o755)
	return []string{"PATH=" + dir + ":" + os.Getenv("PATH")}
}

// copyOnce runs one nix copy --to of k along rt, bounded, with its CPU
// per process, then checks that the paths arrived and removes them from
// the receiving store, so that the next round copies again.
func copyOnce(t testing.TB, rt *tpRoute, k tpKind) tpSample {
	t.Helper()
	to, floor := rt.to, ""
	if to == "" {
		floor = filepath.Join(rt.from.root, "store-floor")
		to = "local?root=" + floor
	}
	var before procCPU
	if rt.server != 0 {
		before = readProcCPU(t, rt.server)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix", append([]string{"copy", "--to", to}, k.paths...)...)
	cmd.Env = append(append(os.Environ(), rt.from.clientEnv...), rt.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err := cmd.Run()
	wall := ms(time.Since(start))
	if err != nil || ctx.Err() != nil {
		t.Fatalf("nix copy --to %s of %s (%s): %v\n%s", to, k.name, rt.name, err, out.String())
	}
	s := tpSample{wall: wall, client: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), nix: -1}
	// The copy's remote processes have ended once the account has none
	// left; one orphaned on the way (OpenSSH's sshd does not wait for
	// the command of a session whose client is gone) was reaped here.
	var orphans float64
	if rt.recv != nil {
		orphans = reapOrphans(t, rt.recv.account.uid, 30*time.Second)
		s.orphaned = orphans > 0
	}
	switch {
	case rt.server != 0 && rt.serve:
		waitReaped(t, rt.server, 30*time.Second)
		after := readProcCPU(t, rt.server)
		s.server, s.nix = after.self-before.self, after.children-before.children+orphans
	case rt.server != 0:
		waitReaped(t, rt.server, 30*time.Second)
		after := readProcCPU(t, rt.server)
		s.server = after.children - before.children + orphans
	default:
		// The local pipe's remote Nix, when it outlived the ssh script.
		s.client += orphans
	}
	if floor != "" {
		mustRun(t, nil, append([]string{"nix-store", "--store", to, "--check-validity"}, k.paths...)...)
		os.RemoveAll(floor)
		return s
	}
	// As the store's owner: Nix run as root would leave root's files
	// (SQLite's WAL) in the account's store.
	store := rt.recv.store
	asAccount(t, rt.recv, append([]string{"nix-store", "--store", store, "--check-validity"}, k.paths...)...)
	asAccount(t, rt.recv, append([]string{"nix-store", "--store", store, "--delete"}, k.paths...)...)
	return s
}

// asAccount runs argv as bd's build account in a clean environment like
// the one nixgate gives Nix, failing the test on a non-zero exit.
func asAccount(t testing.TB, bd *builder, argv ...string) result {
	t.Helper()
	a := bd.account
	return mustRun(t, nil, append([]string{"setpriv", "--reuid", strconv.Itoa(a.uid), "--regid", strconv.Itoa(a.gid), "--clear-groups", "--",
		"env", "-i", "-C", "/", "HOME=" + a.home, "USER=" + a.name, "LOGNAME=" + a.name, "PATH=/usr/local/bin:/usr/bin:/bin",
		"NIX_CONFIG=substituters =\nexperimental-features = nix-command"}, argv...)...)
}

// procCPU are a process's CPU times in seconds, from /proc/PID/stat: its
// own (utime+stime, all its threads) and those of its children it has
// waited for (cutime+cstime).
type procCPU struct{ self, children float64 }

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times.
var clockTicks = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, err2 := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && err2 == nil && n > 0 {
		return float64(n)
	}
	return 100
}()

func readProcCPU(t testing.TB, pid int) procCPU {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:]) // f[0] is field 3, state
	if len(f) < 15 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	tick := func(i int) float64 {
		n, err := strconv.ParseInt(f[i-3], 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat field %d: %v", pid, i, err)
		}
		return float64(n) / clockTicks
	}
	return procCPU{self: tick(14) + tick(15), children: tick(16) + tick(17)}
}

// childrenOf lists the processes whose parent is pid, zombies included
// (they are gone only once reaped).
func childrenOf(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if p, err := strconv.Atoi(e.Name()); err == nil && parentOf(p) == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

// parentOf is pid's parent; 0 when it cannot be read.
func parentOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:]) // f[1] is field 4, ppid
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// waitReaped waits, up to within, until pid has no children left, so
// that their CPU is in its cutime and cstime.
func waitReaped(t testing.TB, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		kids := childrenOf(pid)
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, k := range kids {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
				desc = append(desc, fmt.Sprintf("%d %q", k, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
			}
			t.Fatalf("process %d still has children after %v: %s", pid, within, strings.Join(desc, "; "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// throughputSection renders the Markdown section of the run.
func throughputSection(routes []*tpRoute, kinds []tpKind, series map[*tpRoute]map[string]tpSeries, rounds int, roundTimes []float64) string {
	sshVersion, _, _ := strings.Cut(strings.TrimSpace(cmdOut("ssh", "-V")), ",")
	var s strings.Builder
	fmt.Fprintf(&s, "\n## Throughput: nix copy --to against a local pipe (issue 23)\n\n")
	fmt.Fprintf(&s, "Written by `bench/throughput.sh` (BenchmarkThroughput in e2e/bench_throughput_test.go) on %s, %d cores, %s; Nix %s, %s; %d rounds, %s. ",
		cpuModel(), runtime.NumCPU(), memTotal(), strings.TrimPrefix(strings.TrimSpace(cmdOut("nix", "--version")), "nix (Nix) "), sshVersion, rounds, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&s, "Each round copies every payload once along every route, in an order rotated per round (a round took %.0f s, median). The routes:\n\n", median(roundTimes))
	s.WriteString("- **store floor**: `nix copy --to local?root=DIR`, one process, no remote side; DIR removed after each copy.\n")
	s.WriteString("- **local pipe**: `nix copy --to ssh://…` / `ssh-ng://…` with `ssh` replaced, first in the client's PATH, by a script that runs the remote Nix (`nix-store --serve --write`, `nix-daemon --stdio`) itself, with the argv, environment and working directory nixgate serve gives it (read from its process), as the build account, into the same store nixgate serve uses: Nix at both ends of a pipe, no SSH. The issue's target is a copy through nixgate at this speed.\n")
	s.WriteString("- **OpenSSH**: OpenSSH's sshd with the plain forced commands `nix-store --serve --write` and `nix-daemon --stdio` (no nixgate).\n")
	s.WriteString("- **nixgate serve**: this build, key `build`; \"nixgate serve LABEL\" rows are other nixgate binaries (`NIXGATE_BENCH_VARIANTS`, `BASE=` of bench/throughput.sh) serving stores of their own in the same run.\n\n")
	s.WriteString("Wall time is `nix copy`'s, the median of the rounds, with the fastest and slowest beside it. CPU seconds per copy, medians: **client** is `nix copy` with its `ssh` (its rusage, which holds the children it waited for; for the local pipe the remote Nix too, which Nix leaves running when it kills its ssh, and which the benchmark, its child subreaper, reaps and counts); **server** is nixgate serve's own process (the change of its utime and stime in /proc), or for OpenSSH sshd's per-connection processes and Nix together (the change of the listener's cutime and cstime, plus a Nix that sshd left running when the session ended, reaped and counted the same way); **server's Nix** is the Nix nixgate serve ran (the change of serve's cutime and cstime once the session's Nix was reaped). Every copy's paths were checked valid in the receiving store, then deleted there by the build account.\n\n")
	s.WriteString("| payload | scheme | route | wall | min–max | / local pipe | / store floor | CPU-s client | CPU-s server | CPU-s server's Nix | CPU-s total | target |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	cpu := func(x float64) string {
		if x < 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f", x)
	}
	for ki, k := range kinds {
		floor, _ := series[routes[0]][k.name].medians()
		for _, rt := range routes {
			m, total := series[rt][k.name].medians()
			var walls []float64
			for _, x := range series[rt][k.name] {
				walls = append(walls, x.wall)
			}
			scheme, vsPipe, target := "—", "—", ""
			if rt.scheme != "" {
				scheme = rt.scheme + "://"
				p, _ := series[findRoute(routes, "pipe", rt.scheme)][k.name].medians()
				ratio := m.wall / p.wall
				vsPipe = fmt.Sprintf("%.2f×", ratio)
				if ki == 0 && rt.serve && rt.variant == "" {
					target = "≤ 1.35× " + verdict(ratio <= 1.35)
				}
			}
			server, nix := "—", "—"
			if rt.server != 0 {
				server, nix = cpu(m.server), "(in server)"
				if rt.serve {
					nix = cpu(m.nix)
				}
			}
			fmt.Fprintf(&s, "| %s | %s | %s | %.0f ms | %.0f–%.0f | %s | %.2f× | %s | %s | %s | %s | %s |\n",
				k.name, scheme, rt.name, m.wall, pct(walls, 0), pct(walls, 1), vsPipe, m.wall/floor.wall, cpu(m.client), server, nix, cpu(total), target)
		}
	}
	// nixgate serve's own CPU per copy, each build, and this build's
	// against each earlier one's (BASE=), with the target: at
	// most half.
	var builds []*tpRoute
	for _, rt := range routes {
		if rt.serve && rt.scheme == schemeSSH {
			builds = append(builds, rt)
		}
	}
	s.WriteString("\nnixgate serve's own CPU seconds per copy (medians), each build:\n\n| payload | scheme |")
	for _, rt := range builds {
		label := "this build"
		if rt.variant != "" {
			label = rt.variant
		}
		fmt.Fprintf(&s, " %s |", label)
	}
	for _, rt := range builds[1:] {
		fmt.Fprintf(&s, " this build / %s | target |", rt.variant)
	}
	s.WriteString("\n|---|---|" + strings.Repeat("---|", len(builds)+2*(len(builds)-1)) + "\n")
	for ki, k := range kinds {
		for _, scheme := range []string{schemeSSH, schemeNG} {
			fmt.Fprintf(&s, "| %s | %s:// |", k.name, scheme)
			cpus := make([]float64, len(builds))
			for i, rt := range builds {
				m, _ := series[findRoute(routes, rt.key, scheme)][k.name].medians()
				cpus[i] = m.server
				fmt.Fprintf(&s, " %.2f |", m.server)
			}
			for i := range builds[1:] {
				ratio := cpus[0] / cpus[i+1]
				target := ""
				if ki == 0 {
					target = "≤ 0.5× " + verdict(ratio <= 0.5)
				}
				fmt.Fprintf(&s, " %.2f× | %s |", ratio, target)
			}
			s.WriteString("\n")
		}
	}
	s.WriteString("\n")
	orphaned, copies := 0, 0
	for _, rt := range routes {
		if rt.key != "openssh" {
			continue
		}
		for _, k := range kinds {
			for _, x := range series[rt][k.name] {
				copies++
				if x.orphaned {
					orphaned++
				}
			}
		}
	}
	fmt.Fprintf(&s, "OpenSSH's sshd left Nix running after the session in %d of its %d copies.\n", orphaned, copies)
	return s.String()
}

// withThroughput returns doc with its throughput block (the lines from
// throughputBegin to throughputEnd) replaced by block, or with block
// appended when doc has none; an empty block leaves doc as it is.
func withThroughput(doc, block string) string {
	if block == "" {
		return doc
	}
	if old := throughputBlock(doc); old != "" {
		return strings.Replace(doc, old, block, 1)
	}
	if doc != "" && !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	return doc + "\n" + block
}

// throughputBlock returns doc's throughput block, its marker lines and
// the newline after the last included; empty when doc has none.
func throughputBlock(doc string) string {
	i := strings.Index(doc, throughputBegin)
	if i < 0 {
		return ""
	}
	j := strings.Index(doc[i:], throughputEnd)
	if j < 0 {
		return ""
	}
	end := i + j + len(throughputEnd)
	if end < len(doc) && doc[end] == '\n' {
		end++
	}
	return doc[i:end]
}

// TestWithThroughput checks the splice BenchmarkThroughput and
// BenchmarkReport share: a block replaced in place, appended when absent,
// and kept through a rewrite of the rest.
func TestWithThroughput(t *testing.T) {
	block := throughputBegin + "\nnew\n" + throughputEnd + "\n"
	for _, tt := range []struct{ doc, want string }{
		{"", "\n" + block},
		{"# b\n", "# b\n\n" + block},
		{"# b", "# b\n\n" + block},
		{"# b\n" + throughputBegin + "\nold\n" + throughputEnd + "\n## after\n", "# b\n" + block + "## after\n"},
		{"# b\n" + throughputBegin + "\nold\n" + throughputEnd, "# b\n" + block},
	} {
		if got := withThroughput(tt.doc, block); got != tt.want {
			t.Errorf("withThroughput(%q) = %q; want %q", tt.doc, got, tt.want)
		}
	}
	rewritten := withThroughput("# report\n", throughputBlock("# old report\n"+block+"## more\n"))
	if rewritten != "# report\n\n"+block {
		t.Errorf("a rewrite keeps %q", rewritten)
	}
	if got := withThroughput("# report\n", throughputBlock("# no block\n")); got != "# report\n" {
		t.Errorf("a rewrite without a block gives %q", got)
	}
}
