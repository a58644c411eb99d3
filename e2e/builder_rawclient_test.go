package e2e

// Harness: a raw client of the Nix worker protocol, to send what a real
// Nix client never would.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawWorker is a worker-protocol client of the tests' own: it speaks
// nix-daemon --stdio through the real ssh client as a hostile key holder
// would, sending any operation with any arguments.
type rawWorker struct {
	t       testing.TB
	cmd     *exec.Cmd
	w       io.WriteCloser
	r       *bufio.Reader
	stderr  *lockedBuffer // ssh's stderr, written while the test reads it
	version uint64        // the session's version
	cancel  context.CancelFunc
	closed  sync.Once
}

// dialWorker runs nix-daemon --stdio with key and says hello at version.
func (b *builder) dialWorker(t testing.TB, key string, version uint64) *rawWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	cmd := exec.CommandContext(ctx, "ssh", "-F", b.sshConfig, b.Host(key), "--", "nix-daemon --stdio")
	return startWorker(t, cmd, cancel, version)
}

// startWorker starts cmd, a program that speaks nix-daemon --stdio on
// its standard streams, and says hello at version; cancel ends cmd's
// context.
func startWorker(t testing.TB, cmd *exec.Cmd, cancel context.CancelFunc, version uint64) *rawWorker {
	t.Helper()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &rawWorker{t: t, cmd: cmd, w: w, r: bufio.NewReader(out), stderr: stderr, cancel: cancel}
	t.Cleanup(c.close)
	c.send(u64s(0x6e697863, version))
	if magic := c.u64(); magic != 0x6478696f {
		t.Fatalf("worker hello: magic %#x; stderr %s", magic, stderr.String())
	}
	server := c.u64()
	c.version = min(version, server)
	if c.version&0xff >= 38 {
		c.send(u64s(0)) // no features
		c.strs()
	}
	c.send(u64s(0, 0)) // no CPU affinity, no reserveSpace
	if c.version&0xff >= 33 {
		c.str() // Nix's version
	}
	if c.version&0xff >= 35 {
		c.u64() // trust
	}
	if msg, failed := c.stderrUntilLast(); failed {
		t.Fatalf("worker start-up failed: %s", msg)
	}
	return c
}

// close ends the session (closing its stdin) and waits for ssh to exit.
func (c *rawWorker) close() { c.closed.Do(c.doClose) }

// endsWithin reports whether the session's stream from the builder
// ends within d, reading (and dropping) what comes before; the client is
// killed when it does not.
func (c *rawWorker) endsWithin(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c.r)
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		c.kill()
		<-done
		return false
	}
}

// kill ends the client's process group at once and waits for it.
func (c *rawWorker) kill() {
	c.closed.Do(func() {
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		c.cmd.Wait()
		c.cancel()
	})
}

func (c *rawWorker) doClose() {
	c.w.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	c.cancel()
}

func (c *rawWorker) send(b []byte) {
	c.t.Helper()
	if _, err := c.w.Write(b); err != nil {
		c.t.Fatalf("writing to the worker: %v; stderr %s", err, c.stderr.String())
	}
}

func (c *rawWorker) u64() uint64 {
	c.t.Helper()
	var b [8]byte
	if _, err := io.ReadFull(c.r, b[:]); err != nil {
		c.t.Fatalf("reading from the worker: %v; stderr %s", err, c.stderr.String())
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (c *rawWorker) str() string {
	c.t.Helper()
	n := c.u64()
	if n > 1<<24 {
		c.t.Fatalf("string of %d bytes from the worker", n)
	}
	b := make([]byte, (n+7)&^7)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("reading from the worker: %v", err)
	}
	return string(b[:n])
}

func (c *rawWorker) strs() []string {
	n := c.u64()
	var out []string
	for i := uint64(0); i < n; i++ {
		out = append(out, c.str())
	}
	return out
}

func (c *rawWorker) fields() {
	n := c.u64()
	for i := uint64(0); i < n; i++ {
		if c.u64() == 0 {
			c.u64()
		} else {
			c.str()
		}
	}
}

// stderrUntilLast reads the daemon's log messages up to LAST or ERROR;
// for ERROR it returns the message and true.
func (c *rawWorker) stderrUntilLast() (string, bool) {
	c.t.Helper()
	for i := 0; i < 100000; i++ {
		switch msg := c.u64(); msg {
		case 0x616c7473: // LAST
			return "", false
		case 0x63787470: // ERROR
			if c.version&0xff >= 26 {
				if typ := c.str(); typ != "Error" {
					c.t.Fatalf("malformed error: type %q", typ)
				}
				c.u64() // level
				c.str() // name
				text := c.str()
				if havePos := c.u64(); havePos != 0 {
					c.t.Fatalf("malformed error: havePos %d", havePos)
				}
				for n := c.u64(); n > 0; n-- {
					c.u64()
					c.str()
				}
				return text, true
			}
			text := c.str()
			c.u64() // status
			return text, true
		case 0x6f6c6d67: // NEXT
			c.str()
		case 0x53545254: // START_ACTIVITY
			c.u64()
			c.u64()
			c.u64()
			c.str()
			c.fields()
			c.u64()
		case 0x53544f50: // STOP_ACTIVITY
			c.u64()
		case 0x52534c54: // RESULT
			c.u64()
			c.u64()
			c.fields()
		case 0x64617416: // WRITE
			c.str()
		default:
			c.t.Fatalf("unexpected message %#x from the worker; stderr %s", msg, c.stderr.String())
		}
	}
	c.t.Fatal("the worker sent too many log messages")
	return "", false
}

// call sends op and reads the daemon's messages; failed reports an ERROR,
// with its message.
func (c *rawWorker) call(op []byte) (msg string, failed bool) {
	c.t.Helper()
	c.send(op)
	return c.stderrUntilLast()
}

var errNotValid = errors.New("not valid")

// isValid asks IsValidPath, which also shows the session is still in
// step after what came before.
func (c *rawWorker) isValid(path string) (bool, error) {
	c.t.Helper()
	if msg, failed := c.call(wop(1).str(path).b); failed {
		return false, fmt.Errorf("IsValidPath: %s", msg)
	}
	return c.u64() != 0, nil
}

// wopEnc builds a worker operation.
type wopEnc struct{ b []byte }

func wop(code uint64) *wopEnc { return &wopEnc{b: u64s(code)} }

func (e *wopEnc) u64(vs ...uint64) *wopEnc {
	e.b = append(e.b, u64s(vs...)...)
	return e
}

func (e *wopEnc) str(ss ...string) *wopEnc {
	for _, s := range ss {
		e.b = binary.LittleEndian.AppendUint64(e.b, uint64(len(s)))
		e.b = append(e.b, s...)
		e.b = append(e.b, make([]byte, (8-len(s)%8)%8)...)
	}
	return e
}

func (e *wopEnc) strs(ss ...string) *wopEnc {
	e.u64(uint64(len(ss)))
	return e.str(ss...)
}

// framed appends data as one frame and the end marker.
func (e *wopEnc) framed(data []byte) *wopEnc {
	if len(data) > 0 {
		e.u64(uint64(len(data)))
		e.b = append(e.b, data...)
	}
	return e.u64(0)
}

// narOf returns the NAR of a regular file holding contents.
func narOf(contents string) []byte {
	return (&wopEnc{}).str("nix-archive-1", "(", "type", "regular", "contents", contents, ")").b
}

// setOptions is SetOptions with Nix's usual fixed fields and overrides.
func setOptions(overrides ...string) []byte {
	e := wop(19).u64(0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1)
	e.u64(uint64(len(overrides) / 2))
	return e.str(overrides...).b
}

// buildPaths sends BuildPaths for drv's output "out" and reports
// whether the build succeeded (its message when not).
func (c *rawWorker) buildPaths(drv string) (string, bool) {
	c.t.Helper()
	if msg, failed := c.call(wop(9).strs(drv + "!out").u64(0).b); failed {
		return msg, false
	}
	return "", c.u64() == 1
}
