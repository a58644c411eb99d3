package usage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ChildCommand is the hidden command (nixgate ChildCommand …) that reads
// or writes a store in a process of its own, for AddIn and SumsIn; the
// binary's main hands it to ChildMain.
const ChildCommand = "__usage-store"

// childMemory bounds the address space of that process: a store of
// hourly counters needs a few MiB (and the Go runtime reserves about a
// GiB it never uses); a damaged one can make bbolt loop or allocate
// without end.
const childMemory = 4 << 30

// AddIn is Add, run in a process of exe (a nixgate binary) when exe is
// not empty: a store that someone else can write (the build account's,
// in exec mode) may be damaged so that bbolt panics, allocates without
// end or loops, which no recover can stop. That process has an address
// space of 4 GiB and is killed after timeout (zero: DefaultTimeout) and
// a grace of recordGrace. Empty exe runs Add here.
func AddIn(exe, stateDir, key string, at time.Time, c Counters, timeout time.Duration) error {
	if exe == "" {
		return Add(stateDir, key, at, c, timeout)
	}
	in, err := json.Marshal(c)
	if err != nil {
		return errorf("%w", err)
	}
	_, err = runChild(exe, Path(stateDir), timeout, in, "add", stateDir, key, strconv.FormatInt(at.UnixNano(), 10), timeout.String())
	return err
}

// SumsIn is Sums, run in a process of exe as AddIn runs Add.
func SumsIn(exe, stateDir string, since time.Time, timeout time.Duration) (map[string]Counters, error) {
	if exe == "" {
		return Sums(stateDir, since, timeout)
	}
	s := ""
	if !since.IsZero() {
		s = strconv.FormatInt(since.UnixNano(), 10)
	}
	out, err := runChild(exe, Path(stateDir), timeout, nil, "sums", stateDir, s, timeout.String())
	if err != nil {
		return nil, err
	}
	sums := map[string]Counters{}
	if err := json.Unmarshal(out, &sums); err != nil {
		return nil, errorf("reading %s: %w", Path(stateDir), err)
	}
	return sums, nil
}

// runChild runs exe ChildCommand args with stdin and returns its
// stdout; its stderr's last line is the error when it fails.
func runChild(exe, store string, timeout time.Duration, stdin []byte, args ...string) ([]byte, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+recordGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, append([]string{ChildCommand}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &limitedBuffer{b: &stderr, max: 64 << 10}
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	if line := lastLine(stderr.String()); strings.HasPrefix(line, "usage: ") {
		return nil, errors.New(line) // the child's own error
	}
	why := err.Error()
	_, fatal, crashed := strings.Cut(stderr.String(), "fatal error: ")
	fatal, _, _ = strings.Cut(fatal, "\n")
	switch {
	case ctx.Err() != nil:
		why = "no answer within " + (timeout + recordGrace).String()
	case strings.Contains(fatal, "out of memory"):
		why = "reading it took more than 4 GiB"
	case crashed:
		why = "reading it ended in " + fatal
	}
	return nil, errorf("%s may be damaged (%s): move it aside, and nixgate starts a new one (the counts in it are lost)", store, why)
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// ChildMain is the process AddIn and SumsIn run: "add STATE_DIR KEY
// UNIX_NANOS TIMEOUT" with the counters as JSON on stdin, or "sums
// STATE_DIR [UNIX_NANOS] TIMEOUT", which writes the sums as JSON to
// stdout. It fails with one line on stderr.
func ChildMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if !raceBuild {
		syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: childMemory, Max: childMemory})
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, err.Error())
		return 1
	}
	nanos := func(s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return time.Unix(0, n), err
	}
	// The process ends itself at its deadline too: its parent may be
	// gone by then (an exec-mode session that ended), and a store
	// damaged on purpose could keep bbolt, and its lock, busy for good.
	deadline := func(timeout time.Duration) {
		time.AfterFunc(timeout+recordGrace, func() {
			fmt.Fprintf(stderr, "usage: no answer from the store within %v: it may be damaged; move it aside, and nixgate starts a new one\n", timeout+recordGrace)
			os.Exit(3)
		})
	}
	switch {
	case len(args) == 5 && args[0] == "add":
		at, err := nanos(args[3])
		timeout, err2 := time.ParseDuration(args[4])
		var c Counters
		if err != nil || err2 != nil {
			return fail(errorf("%s: bad arguments %q", ChildCommand, args))
		}
		deadline(timeout)
		if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&c); err != nil {
			return fail(errorf("%s: %w", ChildCommand, err))
		}
		if err := Add(args[1], args[2], at, c, timeout); err != nil {
			return fail(err)
		}
		return 0
	case len(args) == 4 && args[0] == "sums":
		since, err := nanos(args[2])
		timeout, err2 := time.ParseDuration(args[3])
		if err != nil || err2 != nil {
			return fail(errorf("%s: bad arguments %q", ChildCommand, args))
		}
		deadline(timeout)
		sums, err := Sums(args[1], since, timeout)
		if err != nil {
			return fail(err)
		}
		if err := json.NewEncoder(stdout).Encode(sums); err != nil {
			return fail(errorf("%w", err))
		}
		return 0
	}
	return fail(errorf("%s: bad arguments %q", ChildCommand, args))
}
