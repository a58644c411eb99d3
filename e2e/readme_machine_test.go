package e2e

// Harness: a machine of a test's own, made from this one, for the
// README's flows (readme_flows_test.go), whose commands write /etc,
// /usr/local/bin and /root, create accounts, restart Nix's daemon and
// bind ports 22 and 2222, as written. It is a mount and a network
// namespace: a network with only lo (127.0.0.1 and ::1), copy-on-write
// views of /etc, /usr/local/bin and /var, an empty /root and /home, and
// a daemon socket directory of its own; what its commands write stays in
// it, in memory, and goes when it ends. Its accounts get uids and gids no
// account of this machine has. The Nix store, /nix/store, is this
// machine's (as in every other end-to-end test); nothing else is shared
// but /tmp, /run and the programs.
//
// Sessions are shells logged in to it (as a reader types, one command at
// a time, in one shell); units are services started from their systemd
// unit files the way systemd would, since PID 1 here is not systemd.

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machine is a machine of a test's own (see above).
type machine struct {
	dir   string    // on this machine: steps, journal, notify sockets
	pid   int       // the process that holds the namespaces
	ns    [2]string // its mount and network namespaces, as /proc/PID/ns reads them
	hosts string    // /etc/hosts as the machine started
	units map[string]*unitProcess
	steps int // the session steps run so far
}

// Debian's login PATHs (/etc/profile), which sessions get.
const (
	rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	userPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
	// servicePath is the PATH systemd gives services.
	servicePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// machineOptions say what a machine starts with.
type machineOptions struct {
	// boot are the services (unit names, such as "nix-daemon" and "ssh")
	// started as the machine starts.
	boot []string
	// keep are directories of this machine the machine shows as they are,
	// at the same paths, even under /root or /home (a Go module cache).
	keep []string
}

// newMachine starts a machine as o says, and ends every process in it
// when the test ends.
func newMachine(t *testing.T, o machineOptions) *machine {
	t.Helper()
	requireTools(t)
	for _, p := range []string{"unshare", "nsenter", "setpriv", "useradd"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("the README's flows need %s (package util-linux)", p)
		}
	}
	if _, err := os.Stat("/nix/var/nix/daemon-socket"); err != nil {
		t.Fatalf("the README's flows need Debian's multi-user Nix (package nix-setup-systemd): %v", err)
	}
	m := &machine{dir: tempDir(t), units: map[string]*unitProcess{}}
	for _, d := range []string{"steps", "journal", "notify"} {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := freeIDRange(t)
	layers := filepath.Join(m.dir, "layers")
	if err := os.Mkdir(layers, 0o755); err != nil {
		t.Fatal(err)
	}
	var keep, keepBack strings.Builder
	for i, d := range o.keep {
		fmt.Fprintf(&keep, "mkdir \"$L/keep%d\" && mount --bind %s \"$L/keep%d\"\n", i, shellQuote(d), i)
		fmt.Fprintf(&keepBack, "mkdir -p %s && mount --bind \"$L/keep%d\" %s\n", shellQuote(d), i, shellQuote(d))
	}
	script := fmt.Sprintf(`set -e
L=%[1]s
mount -t tmpfs -o mode=0755 nixgate-machine "$L"
%[6]sfor d in /etc /usr/local/bin /var; do
  n=$(echo "$d" | tr / _)
  mkdir "$L/up$n" "$L/work$n"
  chown --reference="$d" "$L/up$n" && chmod --reference="$d" "$L/up$n"
  mount -t overlay nixgate-machine -o "lowerdir=$d,upperdir=$L/up$n,workdir=$L/work$n" "$d"
done
for d in /root /home /nix/var/nix/daemon-socket; do
  n=$(echo "$d" | tr / _)
  mkdir "$L/own$n"
  chown --reference="$d" "$L/own$n" && chmod --reference="$d" "$L/own$n"
  mount --bind "$L/own$n" "$d"
done
%[7]s# Nothing of nixgate's from this machine.
rm -rf /etc/nixgate /var/lib/nixgate /var/log/nixgate /usr/local/bin/nixgate /etc/systemd/system/nixgate.service /etc/systemd/system/nixgate.socket
cat >> /etc/login.defs <<EOF
SYS_UID_MIN %[2]d
SYS_UID_MAX %[3]d
SYS_GID_MIN %[2]d
SYS_GID_MAX %[3]d
UID_MIN %[4]d
UID_MAX %[5]d
GID_MIN %[4]d
GID_MAX %[5]d
EOF
/bin/busybox ip link set lo up
echo ready
exec sleep 3600
`, shellQuote(layers), base, base+49, base+50, base+99, keep.String(), keepBack.String())
	holder := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--", "sh", "-c", script)
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	holder.Stderr = &stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	m.pid = holder.Process.Pid
	exited := make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
		holder.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		m.shutdown(t)
		syscall.Kill(m.pid, syscall.SIGKILL)
		<-exited
	})
	select {
	case ok := <-ready:
		if !ok {
			<-exited
			t.Fatalf("the machine did not start: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the machine did not start within 30s")
	}
	for i, kind := range []string{"mnt", "net"} {
		if m.ns[i], err = os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", m.pid, kind)); err != nil {
			t.Fatal(err)
		}
	}
	m.hosts = m.mustRun(t, "cat", "/etc/hosts").stdout
	for _, u := range o.boot {
		m.start(t, u, "/lib/systemd/system/"+u+".service", "root")
	}
	return m
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// freeIDRange returns the first of 100 uids and gids that no account or
// group of this machine has.
func freeIDRange(t testing.TB) int {
	t.Helper()
	used := map[int]bool{}
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		for _, l := range strings.Split(readFile(t, f), "\n") {
			fields := strings.Split(l, ":")
			if len(fields) > 2 {
				if id, err := strconv.Atoi(fields[2]); err == nil {
					used[id] = true
				}
			}
		}
	}
	for i := 0; i < 100; i++ {
		base := 40000 + 100*rand.IntN(190)
		free := true
		for id := base; id < base+100; id++ {
			free = free && !used[id]
		}
		if free {
			return base
		}
	}
	t.Fatal("no 100 free uids between 40000 and 59000")
	return 0
}

// argv returns argv run in the machine as user (a name; "root" runs as
// root) with only env in its environment.
func (m *machine) argv(user string, env []string, argv ...string) []string {
	a := []string{"nsenter", "--target", strconv.Itoa(m.pid), "--mount", "--net", "--"}
	if user != "root" {
		a = append(a, "setpriv", "--reuid", user, "--regid", user, "--init-groups", "--")
	}
	a = append(append(a, "env", "-i"), env...)
	return append(a, argv...)
}

// run runs argv in the machine as root, with root's login environment.
func (m *machine) run(t testing.TB, argv ...string) result {
	t.Helper()
	return run(t, nil, nil, m.argv("root", loginEnv("root", "/root"), argv...)...)
}

// mustRun is run that fails the test on a non-zero exit.
func (m *machine) mustRun(t testing.TB, argv ...string) result {
	t.Helper()
	r := m.run(t, argv...)
	if r.code != 0 {
		t.Fatalf("in the machine, %q failed: %s", argv, r)
	}
	return r
}

// writeFile writes content to path in the machine, as root.
func (m *machine) writeFile(t testing.TB, path, content string) {
	t.Helper()
	r := run(t, nil, []byte(content), m.argv("root", nil, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1"`, "sh", path)...)
	if r.code != 0 {
		t.Fatalf("in the machine, writing %s: %s", path, r)
	}
}

// appendFile appends content to path in the machine, as root.
func (m *machine) appendFile(t testing.TB, path, content string) {
	t.Helper()
	r := run(t, nil, []byte(content), m.argv("root", nil, "sh", "-c", `mkdir -p "$(dirname "$1")" && cat >> "$1"`, "sh", path)...)
	if r.code != 0 {
		t.Fatalf("in the machine, appending to %s: %s", path, r)
	}
}

// resolve makes names resolve to addr alone in the machine (/etc/hosts).
func (m *machine) resolve(t testing.TB, addr string, names ...string) {
	t.Helper()
	m.writeFile(t, "/etc/hosts", m.hosts+addr+" "+strings.Join(names, " ")+"\n")
}

// loginEnv is the environment of a login of user, whose home is home.
func loginEnv(user, home string) []string {
	path := userPath
	if user == "root" {
		path = rootPath
	}
	return []string{"HOME=" + home, "USER=" + user, "LOGNAME=" + user, "PATH=" + path, "SHELL=/bin/sh"}
}

// home returns the home directory of user in the machine.
func (m *machine) home(t testing.TB, user string) string {
	t.Helper()
	f := strings.Split(strings.TrimSpace(m.mustRun(t, "getent", "passwd", user).stdout), ":")
	if len(f) < 6 {
		t.Fatalf("no account %s in the machine", user)
	}
	return f[5]
}

// shutdown stops the machine's units and ends every process left in it
// (by PID: those in its mount or network namespace, which a sandbox's
// own mount namespace leaves), bounded.
func (m *machine) shutdown(t testing.TB) {
	for name := range m.units {
		m.stop(t, name)
	}
	for i := 0; i < 50; i++ {
		left := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == m.pid {
				continue
			}
			mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
			netns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
			if mnt == m.ns[0] || netns == m.ns[1] {
				syscall.Kill(pid, syscall.SIGKILL)
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("processes of the machine would not end")
}

// session is a shell logged in to the machine: each step is a command a
// reader types, run in the same shell, so that what a step sets (PATH,
// a cd) holds for the next, as in a terminal.
type session struct {
	m     *machine
	user  string
	home  string
	dir   string // where it started
	cmd   *exec.Cmd
	in    *os.File
	lines chan string
}

// login starts a shell in the machine as user, in dir, with the login
// environment and extra.
func (m *machine) login(t *testing.T, user, dir string, extra ...string) *session {
	t.Helper()
	s := &session{m: m, user: user, dir: dir, lines: make(chan string, 256)}
	s.home = m.home(t, user)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	argv := m.argv(user, append(loginEnv(user, s.home), extra...), "sh")
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdin = r
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	s.in = w
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		s.in.Close()
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		for range s.lines {
		}
		s.cmd.Wait()
	})
	s.mustDo(t, "cd "+shellQuote(dir))
	return s
}

// do runs step in the session, its input /dev/null, and returns what it
// printed (stdout and stderr) and its exit status.
func (s *session) do(t *testing.T, step string) (string, int) {
	t.Helper()
	s.m.steps++
	file := filepath.Join(s.m.dir, "steps", fmt.Sprintf("%d.sh", s.m.steps))
	writeFile(t, file, step+"\n", 0o644)
	marker := fmt.Sprintf("nixgate-step-%d-%d", s.m.steps, rand.Int64())
	fmt.Fprintf(s.in, ". %s </dev/null 2>&1; printf '\\n%s %%d\\n' \"$?\"\n", file, marker)
	var out []string
	timeout := time.After(commandTimeout)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("the shell of %s ended during %q:\n%s", s.user, step, strings.Join(out, "\n"))
			}
			if rest, found := strings.CutPrefix(l, marker+" "); found {
				code, _ := strconv.Atoi(rest)
				text := strings.TrimSuffix(strings.Join(out, "\n"), "\n")
				t.Logf("%s@machine$ %s\n%s", s.user, step, text)
				return text, code
			}
			out = append(out, l)
		case <-timeout:
			t.Fatalf("%q did not finish within %v:\n%s", step, commandTimeout, strings.Join(out, "\n"))
		}
	}
}

// mustDo is do that fails the test on a non-zero exit.
func (s *session) mustDo(t *testing.T, step string) string {
	t.Helper()
	out, code := s.do(t, step)
	if code != 0 {
		t.Fatalf("as %s, %q failed (exit %d):\n%s", s.user, step, code, out)
	}
	return out
}

// unitProcess is a service the machine runs from its unit file.
type unitProcess struct {
	cmd     *exec.Cmd
	done    chan struct{}
	journal string // its stdout and stderr
	socket  string // the path its socket unit listens on, if any
}

// unitFile is the [Service] settings of a systemd unit file, by name,
// in order.
type unitFile map[string][]string

// readUnit reads the unit file at path in the machine.
func (m *machine) readUnit(t testing.TB, path string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for _, l := range strings.Split(m.mustRun(t, "cat", path).stdout, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		case section == "[Service]" || section == "[Socket]":
			k, v, _ := strings.Cut(l, "=")
			u[k] = append(u[k], v)
		}
	}
	return u
}

// one returns the last value of a setting, or def.
func (u unitFile) one(key, def string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

// command turns an Exec line into argv: systemd's "@" (argv[0] follows
// the path) and "-" prefixes, %h, and $VAR words from env.
func (u unitFile) command(line, home string, env map[string]string) []string {
	line = strings.TrimLeft(line, "-")
	at := strings.HasPrefix(line, "@")
	words := strings.Fields(strings.TrimPrefix(line, "@"))
	var argv []string
	for _, w := range words {
		w = strings.ReplaceAll(w, "%h", home)
		if strings.HasPrefix(w, "$") {
			argv = append(argv, strings.Fields(env[strings.Trim(w, "${}")])...)
			continue
		}
		argv = append(argv, w)
	}
	if at && len(argv) > 1 {
		argv = append(argv[:1], argv[2:]...) // exec's argv[0] is the path's name here
	}
	return argv
}

// start starts the service of the unit file at path (in the machine) as
// user, as systemd would for the settings nixgate's and Debian's units
// use — EnvironmentFile, Environment, ExecStartPre, ExecStart (with %h,
// "@" and $VAR), UMask, StateDirectory, LogsDirectory, RuntimeDirectory,
// Type=notify (it waits for READY=1) — and, for a unit with a socket
// unit, waits for that socket. It does not apply the sandboxing settings
// (TestSystemdUnitsVerify and TestReadmePathsWritableUnderUnit check
// those). The service is stopped, by PID, when the machine ends.
func (m *machine) start(t testing.TB, name, path, user string) {
	t.Helper()
	if _, ok := m.units[name]; ok {
		t.Fatalf("unit %s runs already", name)
	}
	u := m.readUnit(t, path)
	home := m.home(t, user)
	env := map[string]string{}
	for _, f := range u["EnvironmentFile"] {
		r := m.run(t, "cat", strings.TrimPrefix(f, "-"))
		if r.code != 0 && !strings.HasPrefix(f, "-") {
			t.Fatalf("unit %s: EnvironmentFile %s: %s", name, f, r)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(k, "#") {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	for _, e := range u["Environment"] {
		for _, kv := range strings.Fields(e) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	envList := []string{"PATH=" + servicePath, "LANG=C.UTF-8"}
	if user != "root" {
		envList = append(envList, "HOME="+home, "USER="+user, "LOGNAME="+user)
	}
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	dirs := map[string]string{"StateDirectory": "/var/lib", "LogsDirectory": "/var/log", "RuntimeDirectory": "/run"}
	for key, parent := range dirs {
		for _, d := range strings.Fields(u.one(key, "")) {
			if user != "root" {
				t.Fatalf("unit %s: the harness makes %s for system units only", name, key)
			}
			m.mustRun(t, "install", "-d", "-m", u.one(key+"Mode", "0755"), filepath.Join(parent, d))
		}
	}
	for _, pre := range u["ExecStartPre"] {
		argv := u.command(pre, home, env)
		if r := run(t, nil, nil, m.argv(user, envList, argv...)...); r.code != 0 && !strings.HasPrefix(pre, "-") {
			t.Fatalf("unit %s: ExecStartPre %q failed: %s", name, argv, r)
		}
	}
	p := &unitProcess{done: make(chan struct{}), journal: filepath.Join(m.dir, "journal", name+".log")}
	if sock := strings.TrimSuffix(path, ".service") + ".socket"; m.run(t, "test", "-e", sock).code == 0 {
		p.socket = m.readUnit(t, sock).one("ListenStream", "")
		m.run(t, "rm", "-f", p.socket)
	}
	var notify *net.UnixConn
	if u.one("Type", "simple") == "notify" {
		addr := filepath.Join(m.dir, "notify", name+".sock")
		os.Remove(addr)
		var err error
		if notify, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"}); err != nil {
			t.Fatal(err)
		}
		defer notify.Close()
		os.Chmod(addr, 0o666)
		envList = append(envList, "NOTIFY_SOCKET="+addr)
	}
	argv := u.command(u.one("ExecStart", ""), home, env)
	if mask := u.one("UMask", ""); mask != "" {
		argv = append([]string{"sh", "-c", `umask "$0" && exec "$@"`, mask}, argv...)
	}
	journal, err := os.Create(p.journal)
	if err != nil {
		t.Fatal(err)
	}
	full := m.argv(user, envList, argv...)
	p.cmd = exec.Command(full[0], full[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = journal, journal
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); journal.Close(); close(p.done) }()
	m.units[name] = p
	t.Cleanup(func() {
		if t.Failed() {
			if data, err := os.ReadFile(p.journal); err == nil {
				t.Logf("journal of %s:\n%s", name, data)
			}
		}
	})
	switch {
	case notify != nil:
		ready := make(chan bool, 1)
		go func() {
			buf := make([]byte, 4096)
			notify.SetReadDeadline(time.Now().Add(60 * time.Second))
			for {
				n, _, err := notify.ReadFromUnix(buf)
				if err != nil {
					ready <- false
					return
				}
				if strings.Contains(string(buf[:n]), "READY=1") {
					ready <- true
					return
				}
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				t.Fatalf("unit %s sent no READY=1 within 60s: %s", name, readFile(t, p.journal))
			}
		case <-p.done:
			t.Fatalf("unit %s (%q) ended before it was ready: %s", name, argv, readFile(t, p.journal))
		}
	case p.socket != "":
		for i := 0; m.run(t, "test", "-S", p.socket).code != 0; i++ {
			select {
			case <-p.done:
				t.Fatalf("unit %s (%q) ended before it listened: %s", name, argv, readFile(t, p.journal))
			default:
			}
			if i == 100 {
				t.Fatalf("unit %s did not make %s within 10s: %s", name, p.socket, readFile(t, p.journal))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// stop stops a unit as systemd does: SIGTERM to its main process, then,
// after up to 30 s, SIGKILL to what is left of its process group.
func (m *machine) stop(t testing.TB, name string) {
	p := m.units[name]
	if p == nil {
		return
	}
	delete(m.units, name)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("unit %s did not stop within 30s of SIGTERM", name)
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
