package policy

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Lix 2.93.0 (and only that release) did not send its command as the SSH
// command. It ran "bash" remotely, wrote "echo started\n", waited for the
// line "started", and then wrote "exec " followed by the command it would
// otherwise have sent. nixgate plays bash's part of that dialogue without
// running a shell, and decides the command like any other.
const (
	// LixBootstrapCommand is the SSH command Lix 2.93.0 sends.
	LixBootstrapCommand = "bash"
	lixHello            = "echo started"
	lixHelloReply       = "started\n"
	lixExecPrefix       = "exec "
)

// ReadLixBootstrap plays the remote shell's part of Lix 2.93.0's start-up
// dialogue on r and w (the session's stdin and stdout) and returns the
// command Lix asked to exec, still to be decided. It reads one byte at a
// time so that nothing after the command line is consumed: those bytes
// belong to the Nix protocol.
func ReadLixBootstrap(r io.Reader, w io.Writer) (string, error) {
	line, err := readLine(r, len(lixHello)+1)
	if err != nil {
		return "", errorf("Lix start-up: %w", err)
	}
	if line != lixHello {
		return "", errorf("Lix start-up: got %q, want %q (a shell is not offered here)", line, lixHello)
	}
	if _, err := io.WriteString(w, lixHelloReply); err != nil {
		return "", errorf("Lix start-up: %w", err)
	}
	line, err = readLine(r, MaxCommandLen+len(lixExecPrefix))
	if err != nil {
		return "", errorf("Lix start-up: %w", err)
	}
	cmd, ok := strings.CutPrefix(line, lixExecPrefix)
	if !ok {
		return "", errorf("Lix start-up: got %q, want \"exec COMMAND\" (a shell is not offered here)", line)
	}
	return cmd, nil
}

// readLine reads up to and without the next '\n', at most max bytes.
func readLine(r io.Reader, max int) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() <= max {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(buf[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", errors.New("connection closed before a full line")
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("line longer than %d bytes", max)
}
