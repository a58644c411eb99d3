package sandbox

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// RefuseRoot returns the error with which nixgate refuses to run Nix
// commands as the account called name when its uid is 0, the one rule
// for both modes and nixgate check: serve mode for a user with uid 0
// (LookupAccount), exec mode when sshd runs it as root. Nil when uid is
// not 0.
func RefuseRoot(name string, uid uint64) error {
	if uid != 0 {
		return nil
	}
	return errorf("account %q has uid 0: %w", name, ErrRoot)
}

// ErrRoot is what RefuseRoot's errors wrap.
var ErrRoot = errors.New("nixgate never runs Nix commands as root")

// LookupAccount returns the account called name and, when credential is
// set, the credential to run its commands with: its uid, primary gid and
// supplementary groups. Serve mode uses the credential when it runs as
// root; an account with uid 0 is refused (RefuseRoot).
func LookupAccount(name string, credential bool) (Account, *syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return Account{}, nil, errorf("account %q: %w", name, err)
	}
	a := Account{Name: u.Username, Home: u.HomeDir}
	if !credential {
		return a, nil, nil
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return Account{}, nil, errorf("account %q: %w", name, err)
	}
	if err := RefuseRoot(name, uid); err != nil {
		return Account{}, nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return Account{}, nil, errorf("groups of %q: %w", name, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return Account{}, nil, errorf("groups of %q: %w", name, err)
		}
		cred.Groups = append(cred.Groups, uint32(g))
	}
	return a, cred, nil
}

// IO is where a started command reads and writes. Nil readers and
// writers mean /dev/null. A Stdin that is an *os.File (the read end of a
// pipe) is the process's stdin itself, and Start closes the caller's
// copy; a Stderr that is an *os.File is the process's stderr itself, and
// its bytes are not counted.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Terminal, when not nil, runs the command on a new pseudo-terminal
	// of that size instead: Stdin is typed on it, Stdout gets all it
	// shows, and Stderr is not used. Nil means pipes.
	Terminal *Terminal
}

// Process is a started command in a process group of its own (on a
// terminal: in a session of its own, which is also its process group).
type Process struct {
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	in, out, err atomic.Int64

	// On a terminal: the terminal's controlling side, closed by Wait,
	// and output, closed when all it showed has been copied.
	tty       *os.File
	ttyMu     sync.Mutex // Resize and Wait's close take turns
	ttyClosed bool
	output    chan struct{}
}

// stdinPipeSize is the pipe buffer asked for a command's stdin.
const stdinPipeSize = 1 << 20

// outputGrace is how long Wait lets a process's descendants hold its
// stdout and stderr open after it exited.
const outputGrace = 2 * time.Second

// Start starts c in a new process group, as cred when it is not nil, in
// directory dir, wired to stdio (on a terminal when stdio.Terminal is
// set). Copying stdin never delays Wait: it stops when the process has
// exited.
func (c *Command) Start(cred *syscall.Credential, dir string, stdio IO) (*Process, error) {
	cmd := &exec.Cmd{Path: c.Path, Args: c.Argv, Env: c.Env, Dir: dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if c.Namespace {
		if cred != nil {
			return nil, errorf("a namespace sandbox runs as nixgate's own user, not as another")
		}
		cmd.SysProcAttr = namespaceAttr()
		cmd.SysProcAttr.Setpgid = true
	}
	cmd.WaitDelay = outputGrace
	p := &Process{cmd: cmd}
	if stdio.Terminal != nil {
		return c.startOnTerminal(cmd, p, stdio.Terminal, stdio)
	}
	if stdio.Stdout != nil {
		cmd.Stdout = countingWriter{stdio.Stdout, &p.out}
	}
	if f, ok := stdio.Stderr.(*os.File); ok {
		// The caller's own stderr (exec mode): given as it is, with no
		// pipe and copy between, and so not counted.
		cmd.Stderr = f
	} else if stdio.Stderr != nil {
		cmd.Stderr = countingWriter{stdio.Stderr, &p.err}
	}
	var stdinRead *os.File
	if f, ok := stdio.Stdin.(*os.File); ok {
		cmd.Stdin, stdinRead = f, f
		stdio.Stdin = nil
	} else if stdio.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, errorf("%w", err)
		}
		growPipe(w)
		cmd.Stdin, p.stdin, stdinRead = r, w, r
	}
	err := cmd.Start()
	if stdinRead != nil {
		stdinRead.Close() // the child has it now
	}
	if err != nil {
		if p.stdin != nil {
			p.stdin.Close()
		}
		return nil, c.startError(err)
	}
	if stdio.Stdin != nil {
		go func() {
			n, _ := io.CopyBuffer(p.stdin, stdio.Stdin, make([]byte, 256<<10))
			p.in.Add(n)
			p.stdin.Close()
		}()
	}
	return p, nil
}

// Pid returns the process id, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Wait waits for the process to exit and for its output to be copied. It
// returns the exit status, or the signal that ended the process.
func (p *Process) Wait() (status int, signal syscall.Signal, err error) {
	err = p.cmd.Wait()
	if p.stdin != nil {
		p.stdin.Close()
	}
	if p.tty != nil {
		p.waitTerminal()
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return -1, 0, err
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) || errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if ws.Signaled() {
		return -1, ws.Signal(), err
	}
	return ws.ExitStatus(), 0, err
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Bytes returns how many bytes went to stdin, and came from stdout and
// stderr, so far.
func (p *Process) Bytes() (in, out, errOut int64) {
	return p.in.Load(), p.out.Load(), p.err.Load()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// ReadFrom copies the command's output in large pieces, through the
// writer's own ReadFrom when it has one.
func (c countingWriter) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := c.w.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		c.n.Add(n)
		return n, err
	}
	buf := make([]byte, 64<<10)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := c.w.Write(buf[:n])
			total += int64(w)
			c.n.Add(int64(w))
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
