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

// frames is a payload source over framed data (a length, that many raw
// bytes, repeated, ending with a zero length): it passes the frames on
// unchanged and reads as the bytes inside them.
type frames struct {
	r     *reader
	left  uint64
	ended bool
	// n counts the bytes inside the frames.
	n uint64
}

func (f *frames) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.ended {
			return 0, io.EOF
		}
		size, err := f.r.passU64()
		if err != nil {
			return 0, err
		}
		if size == 0 {
			f.ended = true
			return 0, io.EOF
		}
		f.left = size
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
			if f.ended {
				return io.ErrUnexpectedEOF
			}
			size, err := f.r.passU64()
			if err != nil {
				return err
			}
			if size == 0 {
				f.ended = true
				return io.ErrUnexpectedEOF
			}
			f.left = size
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

// drain passes on the rest of the frames, to the end marker.
func (f *frames) drain(buf []byte) error {
	if f.left > 0 {
		if err := f.r.copyN(f.left); err != nil {
			return err
		}
		f.n += f.left
		f.left = 0
	}
	for !f.ended {
		size, err := f.r.passU64()
		if err != nil {
			return err
		}
		if size == 0 {
			f.ended = true
			break
		}
		if err := f.r.copyN(size); err != nil {
			return err
		}
		f.n += size
	}
	return nil
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
	return string(b[:n]), nil
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

// skip reads n bytes, which the source passes on.
func (s src) skip(n uint64) error {
	if fr, ok := s.r.(*frames); ok {
		return fr.skip(n)
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
	c := &countingReader{r: s.r}
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
		if err := s.skip(padded(n)); err != nil {
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
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}
