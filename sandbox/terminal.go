package sandbox

import (
	"io"
	"os/exec"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Terminal asks for a command to run on a new pseudo-terminal (the
// operator's shell): its stdin, stdout and stderr are the terminal, which
// is its controlling terminal in a session of its own.
type Terminal struct {
	// Term is the terminal type the client named: TERM for a shell
	// started on it (see Shell).
	Term string
	// Rows and Cols are the window size. Zero leaves the terminal's own
	// (0x0) size.
	Rows, Cols uint16
}

// startOnTerminal starts cmd on a new pseudo-terminal of size t: what
// stdio.Stdin gives is typed on it, and all it shows goes to
// stdio.Stdout (stdio.Stderr is not used: a terminal has one output).
func (c *Command) startOnTerminal(cmd *exec.Cmd, p *Process, t *Terminal, stdio IO) (*Process, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, errorf("opening a terminal: %w", err)
	}
	defer tty.Close() // the child has it now
	if t.Rows != 0 || t.Cols != 0 {
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: t.Rows, Cols: t.Cols}); err != nil {
			ptmx.Close()
			return nil, errorf("sizing the terminal: %w", err)
		}
	}
	if ptmx, err = pollable(ptmx); err != nil {
		return nil, errorf("opening a terminal: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// A session of its own (which is also its process group: setpgid
	// would fail for a session leader), with the terminal, the child's
	// stdin, as its controlling terminal.
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	if err := cmd.Start(); err != nil {
		ptmx.Close()
		return nil, c.startError(err)
	}
	p.tty = ptmx
	p.output = make(chan struct{})
	go func() {
		defer close(p.output)
		var out io.Writer = io.Discard
		if stdio.Stdout != nil {
			out = countingWriter{stdio.Stdout, &p.out}
		}
		// Until every holder of the terminal has closed it (EIO), or
		// Wait closes it.
		io.Copy(out, ptmx)
	}()
	if stdio.Stdin != nil {
		go func() {
			n, _ := io.Copy(ptmx, stdio.Stdin) // ends when Wait closes the terminal
			p.in.Add(n)
		}()
	}
	return p, nil
}

// waitTerminal lets what the command showed reach Stdout (for at most
// outputGrace: a process it left behind may hold the terminal open),
// then closes the terminal.
func (p *Process) waitTerminal() {
	select {
	case <-p.output:
	case <-time.After(outputGrace):
	}
	p.ttyMu.Lock()
	defer p.ttyMu.Unlock()
	p.tty.Close()
	p.ttyClosed = true
}

// Resize sets the window size of the process's terminal. It does nothing
// for a process without one, or once the process has ended.
func (p *Process) Resize(rows, cols uint16) error {
	if p.tty == nil {
		return nil
	}
	p.ttyMu.Lock()
	defer p.ttyMu.Unlock()
	if p.ttyClosed {
		return nil
	}
	sc, err := p.tty.SyscallConn()
	if err != nil {
		return errorf("resizing the terminal: %w", err)
	}
	var ierr error
	if err := sc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return errorf("resizing the terminal: %w", err)
	}
	if ierr != nil {
		return errorf("resizing the terminal: %w", ierr)
	}
	return nil
}
