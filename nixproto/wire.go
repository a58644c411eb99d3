package nixproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Limits on what one operation may carry outside its NARs and framed
// data, which are streamed, not held. Nix's own messages stay far below
// them; a derivation with large structured attributes is the biggest.
const (
	// MaxStringLen is the longest string nixgate reads in an operation's
	// arguments.
	MaxStringLen = 64 << 20
	// MaxArgBytes is the most an operation's arguments may take in all,
	// which nixgate holds until it has decided the operation.
	MaxArgBytes = 96 << 20
	// maxNARDepth bounds the nesting of directories in a NAR.
	maxNARDepth = 256
)

// bufSize is the size of each of a session's buffers (the client's
// stream, the stream to Nix, Nix's replies, payloads): large enough that
// a NAR flows in few system calls, small enough that hundreds of
// sessions at once stay cheap.
const bufSize = 64 << 10

// ErrProtocol is wrapped by the errors of a client stream nixgate cannot
// parse.
var ErrProtocol = errorf("protocol error")

func protoErr(format string, args ...any) error {
	return errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// reader reads the client's stream. Every byte of an operation's header
// and arguments is kept in raw until the operation is decided and passed
// on or dropped; payloads (NARs, framed data) are streamed by the copy
// methods instead.
type reader struct {
	br *bufio.Reader
	// small is the session's own reader of bufSize; br is small, or a
	// big reader over it while a payload is copied (withBulk) or while
	// one holds bytes read ahead of the last copy.
	small *bufio.Reader
	raw   []byte
	// out is where streamed payload bytes go: Nix's stdin, or
	// io.Discard for a refused operation.
	out io.Writer
}

func newReader(r io.Reader) *reader {
	small := bufio.NewReaderSize(r, bufSize)
	return &reader{br: small, small: small, out: io.Discard}
}

// startOp forgets the previous operation's bytes.
func (r *reader) startOp() { r.raw = r.raw[:0] }

func (r *reader) take(n int) ([]byte, error) {
	if len(r.raw)+n > MaxArgBytes {
		return nil, protoErr("operation arguments exceed %d bytes", MaxArgBytes)
	}
	start := len(r.raw)
	var err error
	if r.raw, err = appendFull(r.raw, r.br, n); err != nil {
		return nil, err
	}
	return r.raw[start:], nil
}

// appendFull appends n bytes read from src to b, growing b as the bytes
// arrive rather than by what a length field claims.
func appendFull(b []byte, src io.Reader, n int) ([]byte, error) {
	const chunk = 64 << 10
	for n > 0 {
		k := min(n, chunk)
		start := len(b)
		b = slices.Grow(b, k)[:start+k]
		if _, err := io.ReadFull(src, b[start:]); err != nil {
			return b[:start], eof(err)
		}
		n -= k
	}
	return b, nil
}

// eof turns a short read into io.ErrUnexpectedEOF: the stream ended
// inside something.
func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// u64 reads one little-endian 64-bit integer.
func (r *reader) u64() (uint64, error) {
	b, err := r.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// bool reads an integer used as a flag, and re-encodes it in raw as 0
// or 1: Nix reads some flags as any non-zero integer and others as
// exactly 0 or 1, so Nix gets the one form all read alike.
func (r *reader) bool() (bool, error) {
	n, err := r.u64()
	if err != nil {
		return false, err
	}
	if n > 1 {
		binary.LittleEndian.PutUint64(r.raw[len(r.raw)-8:], 1)
	}
	return n != 0, nil
}

// str reads a string: a length, the bytes, zero padding to 8.
func (r *reader) str() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > MaxStringLen {
		return "", protoErr("string of %d bytes exceeds %d", n, MaxStringLen)
	}
	b, err := r.take(int(padded(n)))
	if err != nil {
		return "", err
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", protoErr("string padding is not zero")
		}
	}
	return string(b[:n]), nil
}

// strs reads a list or set of strings: a count, then the strings.
func (r *reader) strs() ([]string, error) {
	n, err := r.u64()
	if err != nil {
		return nil, err
	}
	if n > MaxArgBytes/8 {
		return nil, protoErr("list of %d strings is too long", n)
	}
	var out []string
	for i := uint64(0); i < n; i++ {
		s, err := r.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// count reads a count of items of at least min bytes each.
func (r *reader) count(min uint64) (uint64, error) {
	n, err := r.u64()
	if err != nil {
		return 0, err
	}
	if n > MaxArgBytes/min {
		return 0, protoErr("count %d is too large", n)
	}
	return n, nil
}

// skipU64s reads n integers whose values do not matter.
func (r *reader) skipU64s(n int) error {
	_, err := r.take(8 * n)
	return err
}

func padded(n uint64) uint64 { return (n + 7) &^ 7 }

// copyN streams n payload bytes from the client to r.out without holding
// them, passing on what has arrived without waiting for more.
func (r *reader) copyN(n uint64) error {
	for n > 0 {
		avail := r.br.Buffered()
		if avail == 0 {
			if _, err := r.br.Peek(1); err != nil {
				return eof(err)
			}
			avail = r.br.Buffered()
		}
		k := avail
		if uint64(k) > n {
			k = int(n)
		}
		b, _ := r.br.Peek(k)
		if _, err := r.out.Write(b); err != nil {
			return err
		}
		r.br.Discard(k)
		n -= uint64(k)
	}
	return nil
}

// readU64 reads one integer of a payload's structure, which is not
// passed on.
func (r *reader) readU64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r.br, b[:]); err != nil {
		return 0, eof(err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// appendU64 appends n in wire form.
func appendU64(b []byte, n uint64) []byte { return binary.LittleEndian.AppendUint64(b, n) }

// appendString appends s in wire form.
func appendString(b []byte, s string) []byte {
	b = appendU64(b, uint64(len(s)))
	b = append(b, s...)
	return append(b, make([]byte, padded(uint64(len(s)))-uint64(len(s)))...)
}

// appendStrings appends a list of strings in wire form.
func appendStrings(b []byte, ss []string) []byte {
	b = appendU64(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}
