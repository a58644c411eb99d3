package nixproto

import (
	"bufio"
	"io"
	"sync"
)

// bulkSize is the size of the buffers a store copy gets while its NAR
// flows: large, for few system calls per byte, and taken from a pool
// only for the length of the copy, so that hundreds of idle sessions stay
// small (bufSize each).
const bulkSize = 256 << 10

type bulkBufs struct {
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
}

var bulkPool = sync.Pool{New: func() any { return new(bulkBufs) }}

// withBulk runs a payload copy with large buffers on both sides: a big
// reader over the client's stream and a big writer over the stream to
// Nix. Afterwards the big writer is flushed; the big reader is given back
// only when it holds nothing read ahead. Else it stays the session's
// reader (those bytes come first), kept in f.kept, and the next copy
// uses it as it is: a session holds at most one big reader, however many
// payloads a client sends at once.
func (f *Filter) withBulk(run func() error) error {
	b := f.kept
	if b == nil {
		b = bulkPool.Get().(*bulkBufs)
		if b.r == nil {
			// Not NewReaderSize(small, …), which returns small itself
			// when it is big enough.
			b.r = bufio.NewReaderSize(nil, bulkSize)
			b.w = bufio.NewWriterSize(nil, bulkSize)
		}
		b.r.Reset(f.req.small)
	}
	b.w.Reset(f.nix)
	f.req.br, f.req.out, f.bulk = b.r, bulkWriter{b.w, f}, b.w
	err := run()
	if ferr := b.w.Flush(); err == nil {
		err = ferr
	}
	f.req.out, f.bulk = io.Discard, nil
	b.w.Reset(nil)
	if b.r.Buffered() == 0 {
		f.req.br = f.req.small
		b.r.Reset(nil)
		bulkPool.Put(b)
		f.kept = nil
	} else {
		f.kept = b
	}
	return err
}

// directWrite is the size from which a piece of payload goes to Nix
// as it is, rather than through the big writer's buffer, when that
// holds nothing before it.
const directWrite = 16 << 10

// bulkWriter is the big writer toward Nix while a payload is copied. A
// piece of directWrite or more, with nothing buffered before it (in the
// big writer or in f.nix), goes to Nix's stdin as it is: the filter
// flushes both before each read from the client (flushingReader), so
// during a long copy most pieces are whole reads from the client, which
// the buffers would only have copied once more before the same write.
type bulkWriter struct {
	*bufio.Writer
	f *Filter
}

func (w bulkWriter) Write(p []byte) (int, error) {
	if len(p) >= directWrite && w.Buffered() == 0 && w.f.nix.Buffered() == 0 {
		return w.f.nixDirect.Write(p)
	}
	return w.Writer.Write(p)
}

// readFromAdaptive copies src to w: in bufSize pieces while Nix says
// little, in bulkSize pieces from the pool while reads come back half
// full or more (a NAR on its way to the client), back to small when they
// shrink to a few KiB.
func readFromAdaptive(w io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, bufSize)
	buf := small
	var big *bulkBufs
	defer func() {
		if big != nil {
			bulkPool.Put(big)
		}
	}()
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case n >= len(small)/2 && big == nil:
			big = bulkPool.Get().(*bulkBufs)
			if big.buf == nil {
				big.buf = make([]byte, bulkSize)
			}
			buf = big.buf
		case n < 4<<10 && big != nil:
			bulkPool.Put(big)
			big, buf = nil, small
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
