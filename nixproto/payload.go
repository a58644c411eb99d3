package nixproto

import (
	"encoding/binary"
	"io"
)

// A payload is the part of an operation that follows its arguments: a
// NAR, a sized NAR, or framed data. It is streamed to Nix (or dropped) as
// it is read; nixgate reads only the structure it needs to find the end
// and the store paths to audit, never holding file contents.

// tee is a payload source that passes every byte it reads to w.
type tee struct {
	r io.Reader
	w io.Writer
}

func (t tee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// frames is a payload source over the client's framed data (a length,
// that many raw bytes, repeated, ending with a zero length): it reads as
// the bytes inside the frames, which it passes on to r.out, and keeps the
// client's frame headers to itself. What reaches Nix is framed again by
// a frameWriter, with headers of nixgate's choosing.
type frames struct {
	r     *reader
	left  uint64
	ended bool
	// err is the error that ended the reading of the frames themselves
	// (not of what is inside them): it stays, and nothing more is read.
	err error
	// n counts the bytes inside the frames.
	n uint64
}

// next reads the client's next frame header; false at the end marker.
func (f *frames) next() (bool, error) {
	if f.ended || f.err != nil {
		return false, f.err
	}
	size, err := f.r.readU64()
	if err != nil {
		f.err = err
		return false, err
	}
	if size == 0 {
		f.ended = true
		return false, nil
	}
	if size > maxClientFrame {
		// Nix reads a frame's length as 32 bits: no Nix client sends
		// more, and what Nix would make of it is not nixgate's.
		f.err = protoErr("frame of %d bytes: Nix reads frames of less than 4 GiB", size)
		return false, f.err
	}
	f.left = size
	return true, nil
}

func (f *frames) Read(p []byte) (int, error) {
	for f.left == 0 {
		if more, err := f.next(); err != nil {
			return 0, err
		} else if !more {
			return 0, io.EOF
		}
	}
	if uint64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.br.Read(p)
	if n > 0 {
		f.left -= uint64(n)
		f.n += uint64(n)
		if _, werr := f.r.out.Write(p[:n]); werr != nil {
			return n, werr
		}
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// skip passes on n bytes inside the frames without reading them into a
// buffer of its own.
func (f *frames) skip(n uint64) error {
	for n > 0 {
		if f.left == 0 {
			if more, err := f.next(); err != nil {
				return err
			} else if !more {
				return io.ErrUnexpectedEOF
			}
		}
		k := min(n, f.left)
		if err := f.r.copyN(k); err != nil {
			return err
		}
		f.left -= k
		f.n += k
		n -= k
	}
	return nil
}

// drain passes on the rest of the frames' contents, to the end marker.
func (f *frames) drain() error {
	for {
		if f.left > 0 {
			if err := f.r.copyN(f.left); err != nil {
				return err
			}
			f.n += f.left
			f.left = 0
		}
		if more, err := f.next(); err != nil || !more {
			return err
		}
	}
}

// firstFrame is the length of the first frame nixgate writes toward Nix
// when the payload holds that much: 2, an operation number that no Nix
// has ever had. Nix's daemon reads framed data only after it has started
// answering the operation, and a check that fails in between leaves the
// frames unread: Nix then reads its next operation from the first frame
// header. nixgate checks first what Nix checks there (check.go), so this
// is the second line: such a Nix reads operation 2 and ends the
// connection, and reads nothing of the client's as an operation. A
// payload of one byte gets a first frame of 1 followed by the end marker,
// which Nix would read as IsValidPath of a path that starts with a NUL:
// invalid, and the connection ends too; an empty payload's end marker
// reads as operation 0, also invalid. Only the first header needs the
// rule: once Nix has begun the frames, its FramedSource reads them to the
// end marker even when what consumes them fails (in Nix 2.8 a failure to
// do so aborts the process), and every length nixgate writes is one Nix
// can read.
const firstFrame = 2

// maxClientFrame is the longest frame a client may send: Nix reads a
// frame's length as an unsigned 32-bit integer.
const maxClientFrame = 1<<32 - 1

// maxFrame bounds the frames nixgate writes toward Nix, far below the
// 32-bit lengths Nix reads (and the memory Nix takes for a frame).
const maxFrame = 1 << 20

// coalesceFrame is the size up to which a frameWriter gathers small
// writes (the structure of AddMultipleToStore's contents arrives a
// string at a time) into one frame; larger writes go out as they come,
// without a copy.
const coalesceFrame = 4 << 10

// frameWriter writes the contents of a framed payload toward Nix as
// frames of nixgate's own: the first of firstFrame bytes, then frames of
// up to coalesceFrame gathered bytes or of what a large write brings (at
// most maxFrame each), and the end marker at end. A client's frame
// headers never reach Nix.
type frameWriter struct {
	w       io.Writer
	started bool
	held    []byte // the first frame's bytes, until there are firstFrame
	buf     []byte // gathered small writes
	hdr     [8]byte
}

func (fw *frameWriter) frame(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), maxFrame)
		binary.LittleEndian.PutUint64(fw.hdr[:], uint64(k))
		if _, err := fw.w.Write(fw.hdr[:]); err != nil {
			return err
		}
		if _, err := fw.w.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

func (fw *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !fw.started {
		take := min(firstFrame-len(fw.held), len(p))
		fw.held = append(fw.held, p[:take]...)
		p = p[take:]
		if len(fw.held) < firstFrame {
			return n, nil
		}
		fw.started = true
		if err := fw.frame(fw.held); err != nil {
			return 0, err
		}
	}
	for len(p) > 0 {
		if len(p) >= coalesceFrame {
			if len(fw.buf) > 0 {
				if err := fw.flush(); err != nil {
					return 0, err
				}
			}
			if err := fw.frame(p); err != nil {
				return 0, err
			}
			break
		}
		if fw.buf == nil {
			fw.buf = make([]byte, 0, coalesceFrame)
		}
		k := min(coalesceFrame-len(fw.buf), len(p))
		fw.buf = append(fw.buf, p[:k]...)
		p = p[k:]
		if len(fw.buf) == coalesceFrame {
			if err := fw.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (fw *frameWriter) flush() error {
	err := fw.frame(fw.buf)
	fw.buf = fw.buf[:0]
	return err
}

// end writes what is held and the end marker.
func (fw *frameWriter) end() error {
	if !fw.started {
		fw.started = true
		if err := fw.frame(fw.held); err != nil {
			return err
		}
	}
	if err := fw.flush(); err != nil {
		return err
	}
	_, err := fw.w.Write(make([]byte, 8))
	return err
}

// src reads the structure of a payload from a source.
type src struct {
	r   io.Reader
	buf []byte
}

func (s src) u64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(s.r, b[:]); err != nil {
		return 0, eof(err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// str reads a string of at most max bytes.
func (s src) str(max uint64) (string, error) {
	n, err := s.u64()
	if err != nil {
		return "", err
	}
	if n > max {
		return "", protoErr("string of %d bytes where at most %d belong", n, max)
	}
	b, err := appendFull(nil, s.r, int(padded(n)))
	if err != nil {
		return "", err
	}
	if !zeros(b[n:]) {
		return "", protoErr("string padding is not zero")
	}
	return string(b[:n]), nil
}

// zeros reports whether b is all zero bytes.
func zeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// padding reads the zero padding after n bytes of contents.
func (s src) padding(n uint64) error {
	var b [8]byte
	p := b[:padded(n)-n]
	if _, err := io.ReadFull(s.r, p); err != nil {
		return eof(err)
	}
	if !zeros(p) {
		return protoErr("NAR: padding is not zero")
	}
	return nil
}

func (s src) strs(max uint64) ([]string, error) {
	n, err := s.u64()
	if err != nil {
		return nil, err
	}
	if n > MaxArgBytes/8 {
		return nil, protoErr("list of %d strings is too long", n)
	}
	var out []string
	for i := uint64(0); i < n; i++ {
		v, err := s.str(max)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s src) expect(tok string) error {
	got, err := s.str(64)
	if err != nil {
		return err
	}
	if got != tok {
		return protoErr("NAR: want %q, got %q", tok, got)
	}
	return nil
}

// skipper is a source that can pass over n bytes without copying them
// out.
type skipper interface{ skip(n uint64) error }

// skip reads n bytes, which the source passes on.
func (s src) skip(n uint64) error {
	if sk, ok := s.r.(skipper); ok {
		return sk.skip(n)
	}
	for n > 0 {
		b := s.buf
		if uint64(len(b)) > n {
			b = b[:n]
		}
		k, err := s.r.Read(b)
		n -= uint64(k)
		if err != nil && n > 0 {
			return eof(err)
		}
	}
	return nil
}

// nar reads one NAR (nix-archive-1) and returns its size in bytes.
func (s src) nar() (uint64, error) {
	c := &countingReader{r: s.r, buf: s.buf}
	s2 := src{r: c, buf: s.buf}
	if err := s2.expect("nix-archive-1"); err != nil {
		return c.n, err
	}
	err := s2.narNode(0)
	return c.n, err
}

func (s src) narNode(depth int) error {
	if depth > maxNARDepth {
		return protoErr("NAR nests deeper than %d", maxNARDepth)
	}
	if err := s.expect("("); err != nil {
		return err
	}
	if err := s.expect("type"); err != nil {
		return err
	}
	typ, err := s.str(64)
	if err != nil {
		return err
	}
	switch typ {
	case "regular":
		tok, err := s.str(64)
		if err != nil {
			return err
		}
		if tok == "executable" {
			if err := s.expect(""); err != nil {
				return err
			}
			if tok, err = s.str(64); err != nil {
				return err
			}
		}
		if tok != "contents" {
			return protoErr("NAR: want %q, got %q", "contents", tok)
		}
		n, err := s.u64()
		if err != nil {
			return err
		}
		if err := s.skip(n); err != nil {
			return err
		}
		if err := s.padding(n); err != nil {
			return err
		}
	case "symlink":
		if err := s.expect("target"); err != nil {
			return err
		}
		if _, err := s.str(4096); err != nil {
			return err
		}
	case "directory":
		for {
			tok, err := s.str(64)
			if err != nil {
				return err
			}
			if tok == ")" {
				return nil
			}
			if tok != "entry" {
				return protoErr("NAR: want %q, got %q", "entry", tok)
			}
			if err := s.expect("("); err != nil {
				return err
			}
			if err := s.expect("name"); err != nil {
				return err
			}
			if _, err := s.str(255); err != nil {
				return err
			}
			if err := s.expect("node"); err != nil {
				return err
			}
			if err := s.narNode(depth + 1); err != nil {
				return err
			}
			if err := s.expect(")"); err != nil {
				return err
			}
		}
	default:
		return protoErr("NAR: unknown type %q", typ)
	}
	return s.expect(")")
}

type countingReader struct {
	r   io.Reader
	buf []byte
	n   uint64
}

func (c *countingReader) skip(n uint64) error {
	c.n += n
	return src{r: c.r, buf: c.buf}.skip(n)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}
