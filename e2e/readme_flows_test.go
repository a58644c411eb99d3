package e2e

// The README's flows (and docs/exec-mode.md's), run as written: each test
// reads its flow's commands from its file (readme_extract_test.go), changes what its
// substitutions say (each with its reason, each bound to match), and
// runs them in a machine of its own (readme_machine_test.go), where
// /etc/nixgate, /usr/local/bin, /etc/nix/nix.conf, /root, the accounts
// and ports 22 and 2222 are the test's to use as the README does. Where
// the README's builder listens on every address (0.0.0.0 and [::]), the
// client reaches it through 127.0.0.1 and then through ::1: the names
// the README uses (builder.example.org) resolves to one address at a
// time.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goBuild stands the test's nixgate (built once by TestMain, with the
// race detector when the tests have it) in for the README's go build.
func goBuild() substitution {
	return substitution{
		readme: `go build -o (\S+) \./cmd/nixgate`,
		test:   "install -D -m 755 " + nixgateBin + " ${1}",
		why:    "the binary TestMain built from this tree, with the race detector when the tests have it, instead of a build of its own",
	}
}

// The stand-ins for systemd and logind.
var (
	restartNixDaemon = standIn{
		readme: "systemctl restart nix-daemon",
		why:    "PID 1 is not systemd: stop the daemon the machine started and start nix-daemon.service's ExecStart again",
		do: func(t *testing.T, s *session) {
			s.m.stop(t, "nix-daemon")
			s.m.start(t, "nix-daemon", "/lib/systemd/system/nix-daemon.service", "root")
		},
	}
	enableNixgate = standIn{
		readme: "systemctl enable --now nixgate",
		why:    "PID 1 is not systemd: start the installed /etc/systemd/system/nixgate.service's ExecStart as systemd would, and wait for its READY=1",
		do: func(t *testing.T, s *session) {
			s.m.start(t, "nixgate", "/etc/systemd/system/nixgate.service", "root")
		},
	}
	enableUserNixgate = standIn{
		readme: "systemctl --user enable --now nixgate",
		why:    "no systemd user manager: start the installed ~/.config/systemd/user/nixgate.service's ExecStart as its user, as systemd would, and wait for its READY=1",
		do: func(t *testing.T, s *session) {
			s.m.start(t, "nixgate", filepath.Join(s.home, ".config/systemd/user/nixgate.service"), s.user)
		},
	}
	enableLinger = standIn{
		readme: `loginctl enable-linger "$USER"`,
		why:    "no logind: lingering keeps user services running after their user logs out, and the test never logs out",
		do:     func(t *testing.T, s *session) {},
	}
)

func makeRunFlow() readmeFlow {
	return readmeFlow{heading: "## The two commands", blocks: 2, sectionBlocks: 3, shows: []int{1}}
}

func builderWithRootFlow() readmeFlow {
	return readmeFlow{
		heading: "## A builder in five minutes", intro: "**With root**", blocks: 1, sectionBlocks: 2,
		subs:     []substitution{goBuild()},
		standIns: []standIn{restartNixDaemon, enableNixgate},
	}
}

func builderWithoutRootFlow() readmeFlow {
	return readmeFlow{
		heading: "## A builder in five minutes", intro: "**Without root**", blocks: 1, sectionBlocks: 2,
		subs:     []substitution{goBuild()},
		standIns: []standIn{enableUserNixgate, enableLinger},
	}
}

func execModeFlow() readmeFlow {
	return readmeFlow{
		doc: "docs/exec-mode.md", heading: "## Exec mode, in five steps", blocks: 7, sectionBlocks: 7, shows: []int{4},
		subs:     []substitution{goBuild()},
		standIns: []standIn{restartNixDaemon},
	}
}

// TestReadmeFlowPlans reads every flow of the README and makes its plan:
// the sections and blocks are where the tests look, every substitution
// and stand-in applies, and every command that needs systemd has a
// stand-in. It needs neither root nor Nix, so a README edit that breaks a
// flow's test fails here first.
func TestReadmeFlowPlans(t *testing.T) {
	for name, f := range map[string]readmeFlow{
		"make run": makeRunFlow(), "with root": builderWithRootFlow(), "without root": builderWithoutRootFlow(), "exec mode": execModeFlow(),
	} {
		t.Run(name, func(t *testing.T) {
			p := f.mustPlan(t)
			for _, seg := range p.segments {
				for _, st := range seg.steps {
					how := "runs"
					if st.standIn != nil {
						how = "stand-in (" + st.standIn.why + ")"
					}
					t.Logf("on the %s: %q %s", seg.where, st.text, how)
				}
			}
		})
	}
}

// checkout copies the repository's files — tracked, and new ones git
// does not ignore, as they are in the worktree — to a new directory, as
// a fresh clone of what is about to be committed; nothing else (no bin,
// no .state).
func checkout(t *testing.T) string {
	t.Helper()
	repo := repoFile(t, ".")
	r := mustRun(t, nil, "git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	dir := filepath.Join(tempDir(t), "nixgate")
	for _, f := range strings.Split(strings.TrimRight(r.stdout, "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(repo, f))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the worktree, or not a file
		}
		copyFile(t, filepath.Join(repo, f), filepath.Join(dir, f), fi.Mode().Perm()|0o444)
	}
	return dir
}

// runFlow runs a plan's segments, each in the session of its place, and
// returns what its last step printed, and what each step printed by its
// text (a stand-in's, nothing). After a client segment it copies
// the public keys the client made (~/.ssh/*.pub) into the builder's
// working directory, as the README tells the reader to ("copy the .pub
// to the builder").
func runFlow(t *testing.T, p flowPlan, builder, client *session) (string, map[string]string) {
	t.Helper()
	var out string
	outs := map[string]string{}
	for _, seg := range p.segments {
		s, before := builder, []string(nil)
		if seg.where == onClient {
			if client == nil {
				t.Fatalf("the flow has a client segment, and the test no client: %+v", seg.steps)
			}
			s, before = client, client.publicKeys(t)
		}
		for _, st := range seg.steps {
			if st.standIn != nil {
				t.Logf("stand-in for %q: %s", st.readme, st.standIn.why)
				st.standIn.do(t, s)
				out = ""
				continue
			}
			out = s.mustDo(t, st.text)
			outs[st.text] = out
		}
		if seg.where != onClient {
			continue
		}
		for _, pub := range client.publicKeys(t) {
			if !containsString(before, pub) {
				key := client.m.mustRun(t, "cat", pub).stdout
				writeFile(t, filepath.Join(builder.dir, filepath.Base(pub)), key, 0o644)
				t.Logf("copied %s to the builder's %s", pub, builder.dir)
			}
		}
	}
	return out, outs
}

// publicKeys lists the public keys in the session user's ~/.ssh; none
// for a nil session.
func (s *session) publicKeys(t *testing.T) []string {
	if s == nil {
		return nil
	}
	r := s.m.run(t, "sh", "-c", `ls -1 "$1"/.ssh/*.pub 2>/dev/null || true`, "sh", s.home)
	return strings.Fields(r.stdout)
}

func containsString(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// clientSide is the client of a flow: root, as the README's clients are
// ("as root, for the Nix daemon"), with a Nix configuration of its own
// whose store is not the builder's (a builder and a client that share
// /nix/store wait for each other's locks forever): the client's /etc/nix
// is confDir, its /etc/nix/machines confDir/machines.
type clientSide struct {
	*session
	confDir, storeDir string
}

// newClient logs root in to m as the client.
func newClient(t *testing.T, m *machine) clientSide {
	t.Helper()
	c := clientSide{confDir: filepath.Join(m.dir, "client", "nix"), storeDir: filepath.Join(m.dir, "client", "store")}
	writeFile(t, filepath.Join(c.confDir, "nix.conf"), fmt.Sprintf("store = local?root=%s\nsubstituters =\n", c.storeDir), 0o644)
	c.session = m.login(t, "root", "/root", "NIX_CONF_DIR="+c.confDir)
	return c
}

// clientConfigSection returns the part of client-config's output under
// the comment line that starts with header, up to the next blank line.
func clientConfigSection(t *testing.T, out, header string) string {
	t.Helper()
	i := strings.Index("\n"+out, "\n"+header)
	if i < 0 {
		t.Fatalf("client-config printed no %q:\n%s", header, out)
	}
	s := out[i:]
	s = s[strings.Index(s, "\n")+1:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

// pasteAndProve does what the README says after client-config: paste
// what it printed on the client — the parts the README's paragraph
// starting with pastePhrase names — and prove it with the command that
// paragraph quotes after "proves it:" ($USER being the builder's user),
// which must be client-config's own last line. It proves it, and builds a derivation on the builder,
// through 127.0.0.1 and then through ::1.
func pasteAndProve(t *testing.T, p flowPlan, builder *session, c clientSide, printed string) {
	t.Helper()
	para, err := readmeParagraph(p.after, "proves it:")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(para, "proves it:")
	quoted := inlineCode(after)
	lines := strings.Split(strings.TrimSpace(printed), "\n")
	proof := lines[len(lines)-1]
	if len(quoted) > 0 {
		quoted[0] = strings.ReplaceAll(quoted[0], "$USER", builder.user)
	}
	if len(quoted) == 0 || quoted[0] != proof {
		t.Fatalf("the README says %q proves it; client-config's last line is %q", quoted, proof)
	}
	paste, err := readmeParagraph(p.after, "Paste ")
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"machines line", "`~/.ssh/config`", "`~/.ssh/known_hosts`"} {
		if !strings.Contains(paste, part) {
			t.Fatalf("the README does not tell the reader to paste the %s: %q", part, paste)
		}
	}
	c.m.writeFile(t, filepath.Join(c.confDir, "machines"), clientConfigSection(t, printed, "# /etc/nix/machines")+"\n")
	c.m.appendFile(t, filepath.Join(c.home, ".ssh/config"), clientConfigSection(t, printed, "# ~/.ssh/config")+"\n\n")
	c.m.appendFile(t, filepath.Join(c.home, ".ssh/known_hosts"), clientConfigSection(t, printed, "# ~/.ssh/known_hosts")+"\n")
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			c.m.resolve(t, addr, "builder.example.org")
			c.mustDo(t, proof)
			nonce := fmt.Sprint(time.Now().UnixNano())
			drv := writeDerivation(t, c.m.dir, nonce)
			out := lastLine(c.mustDo(t, "nix-build "+drv+" --no-out-link -j0"))
			if got := readStore(t, c.storeDir, out); got != "built remotely "+nonce+"\n" {
				t.Errorf("the remote build's output %s holds %q", out, got)
			}
		})
	}
}

// lastStep fails the test unless the plan ends with a command that
// starts with prefix.
func lastStep(t *testing.T, p flowPlan, prefix string) {
	t.Helper()
	seg := p.segments[len(p.segments)-1]
	if last := seg.steps[len(seg.steps)-1]; seg.where != onBuilder || !strings.HasPrefix(last.text, prefix) {
		t.Fatalf("the flow ends with %q on the %s; the test expects %s… on the builder", last.text, seg.where, prefix)
	}
}

// TestReadmeMakeRun follows "The two commands": a fresh checkout, make
// run in the background, and the command it prints, run as printed; what
// it prints is what the README shows.
func TestReadmeMakeRun(t *testing.T) {
	p := makeRunFlow().mustPlan(t)
	if len(p.segments) != 1 || len(p.segments[0].steps) != 1 || !strings.HasPrefix(p.segments[0].steps[0].text, "make run") {
		t.Fatalf("the first block of the two commands is not `make run`: %+v", p.segments)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	// The reader's Go: on PATH, with its configuration, its module cache
	// (the machine has no network) and its build cache.
	var goEnv, goDirs []string
	for _, k := range []string{"GOENV", "GOCACHE", "GOMODCACHE"} {
		v := strings.TrimSpace(mustRun(t, nil, goBin, "env", k).stdout)
		goEnv = append(goEnv, k+"="+v)
		if k == "GOENV" {
			v = filepath.Dir(v)
		}
		if fi, err := os.Stat(v); err == nil && fi.IsDir() {
			goDirs = append(goDirs, v)
		}
	}
	m := newMachine(t, machineOptions{keep: goDirs})
	dir := checkout(t)
	env := append(loginEnv("root", "/root"), goEnv...)
	for i := range env {
		if strings.HasPrefix(env[i], "PATH=") {
			env[i] += ":" + filepath.Dir(goBin)
		}
	}
	h := startHinted(t, dir, m.argv("root", env, "sh", "-c", `cd "$0" && eval "$1"`, dir, p.segments[0].steps[0].text))
	if !strings.Contains(h.notice, "authorized (role build)") {
		t.Errorf("make run did not say it authorized a client key:\n%s", h.notice)
	}
	shown := strings.Split(strings.TrimRight(p.shown[0].text, "\n"), "\n")
	got := []string{h.ready, "  " + h.command}
	if len(shown) != len(got) {
		t.Errorf("README.md:%d shows %d lines of make run's; it prints %d: %q", p.shown[0].line, len(shown), len(got), got)
	}
	for i := 0; i < len(shown) && i < len(got); i++ {
		if g := strings.ReplaceAll(got[i], dir, "$PWD"); g != shown[i] {
			t.Errorf("make run printed\n%s\nwhere the README (README.md:%d) shows\n%s", g, p.shown[0].line+i, shown[i])
		}
	}
	s := m.login(t, "root", dir)
	s.mustDo(t, h.command)
}

// TestReadmeBuilderWithRoot follows "A builder in five minutes", with
// root: Nix's daemon, the account, the client's key, the configuration
// listening on 0.0.0.0 and [::], the systemd unit, check,
// client-config; then the client pastes what it printed, proves it and
// builds, through 127.0.0.1 and ::1.
func TestReadmeBuilderWithRoot(t *testing.T) {
	f := builderWithRootFlow()
	p := f.mustPlan(t)
	lastStep(t, p, "nixgate client-config")
	m := newMachine(t, machineOptions{boot: []string{"nix-daemon"}})
	builder := m.login(t, "root", checkout(t))
	client := newClient(t, m)
	printed, _ := runFlow(t, p, builder, client.session)
	pasteAndProve(t, p, builder, client, printed)
}

// TestReadmeBuilderWithoutRoot follows "A builder in five minutes",
// without root: an ordinary account, its own ~/.nix store in the userns
// sandbox, the user unit; then the client (root) pastes what
// client-config printed, proves it and builds, through 127.0.0.1 and ::1.
// Where the kernel refuses user namespaces this fails: the sandbox is the
// point of the flow.
func TestReadmeBuilderWithoutRoot(t *testing.T) {
	p := builderWithoutRootFlow().mustPlan(t)
	lastStep(t, p, "nixgate client-config")
	m := newMachine(t, machineOptions{boot: []string{"nix-daemon"}})
	m.mustRun(t, "useradd", "--create-home", "--shell", "/bin/sh", "reader")
	dir := checkout(t)
	builder := m.login(t, "reader", dir)
	client := newClient(t, m)
	printed, outs := runFlow(t, p, builder, client.session)
	// The account can change its own configuration, keys file and state,
	// which the userns sandbox hides from Nix and its builds: check says
	// so, and asks for no chown to root, which the account cannot run.
	const checkStep = "nixgate check --config ~/.config/nixgate/nixgate.toml"
	checked, ok := outs[checkStep]
	if !ok {
		t.Fatalf("the flow ran no %q: %q", checkStep, outs)
	}
	if !strings.Contains(checked, "but not by a build: sandbox.mode userns hides nixgate's files") || strings.Contains(checked, "chown root:") {
		t.Errorf("check without root, in userns mode:\n%s", checked)
	}
	for _, l := range strings.Split(checked, "\n") {
		if strings.HasPrefix(l, "WARN  files") || strings.HasPrefix(l, "FAIL  files") {
			t.Errorf("check without root, in userns mode: %q", l)
		}
	}
	pasteAndProve(t, p, builder, client, printed)
}

// TestReadmeExecMode follows "Exec mode, in five steps" behind Debian's
// own OpenSSH sshd (its stock configuration, port 22 on every address):
// the account, the configuration, the client's key, the forced command
// (as the README shows it), the read-only home, check --mode exec and
// client-config --mode exec; then the client pastes, proves it and
// builds, through 127.0.0.1 and ::1.
func TestReadmeExecMode(t *testing.T) {
	p := execModeFlow().mustPlan(t)
	lastStep(t, p, "nixgate client-config")
	m := newMachine(t, machineOptions{boot: []string{"nix-daemon", "ssh"}})
	builder := m.login(t, "root", checkout(t))
	client := newClient(t, m)
	printed, outs := runFlow(t, p, builder, client.session)

	// The state directory the README makes is the one check wants: no
	// warning about it (sessions counted, the lock directory in it), and
	// the drain file out of the account's reach.
	checked, ok := outs["nixgate check --mode exec"]
	if !ok {
		t.Fatalf("the flow ran no `nixgate check --mode exec`: %q", outs)
	}
	for _, want := range []string{
		"OK    usage           exec-mode sessions are counted in /var/lib/nixgate/usage.db, which nixremote can write",
		"OK    files           the drain state /var/lib/nixgate/drain cannot be changed by nixremote",
	} {
		if !strings.Contains(checked, want) {
			t.Errorf("check --mode exec says no %q:\n%s", want, checked)
		}
	}
	for _, l := range strings.Split(checked, "\n") {
		if !strings.HasPrefix(l, "OK") && (strings.Contains(l, "/var/lib/nixgate") || strings.Contains(l, "state_dir")) {
			t.Errorf("check --mode exec, after the README made the state directory: %q", l)
		}
	}

	// The forced-command line is the one the README shows.
	shown := strings.TrimSpace(p.shown[0].text)
	prefix, _, ok := strings.Cut(shown, "AAAA…")
	if !ok {
		t.Fatalf("README.md:%d shows no key (AAAA…): %q", p.shown[0].line, shown)
	}
	if ak := m.mustRun(t, "cat", "/home/nixremote/.ssh/authorized_keys").stdout; !strings.HasPrefix(ak, prefix+"AAAA") {
		t.Errorf("keys authorize --exec wrote\n%s\nwhere the README (README.md:%d) shows\n%s", ak, p.shown[0].line, shown)
	}
	pasteAndProve(t, p, builder, client, printed)
}
