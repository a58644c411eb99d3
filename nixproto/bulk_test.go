package nixproto

import (
	"bufio"
	"bytes"
	"testing"
)

// writes records each write that reaches Nix's stdin, and whether it
// was the caller's own slice (not a copy).
type writes struct {
	all    bytes.Buffer
	calls  int
	direct []bool
	last   []byte // the slice the test wrote last
}

func (w *writes) Write(p []byte) (int, error) {
	w.calls++
	w.direct = append(w.direct, len(p) > 0 && len(w.last) > 0 && &p[0] == &w.last[0])
	return w.all.Write(p)
}

// TestBulkWriterWritesLargePiecesDirectly: a large piece with nothing
// buffered before it reaches Nix as the caller's slice, in one write; a
// large piece behind buffered bytes is buffered after them; the bytes
// reach Nix in the order written.
func TestBulkWriterWritesLargePiecesDirectly(t *testing.T) {
	out := &writes{}
	f := &Filter{nixDirect: out}
	f.nix = bufio.NewWriterSize(out, bufSize)
	big := bufio.NewWriterSize(f.nix, bulkSize)
	w := bulkWriter{big, f}
	var want bytes.Buffer
	write := func(p []byte) {
		t.Helper()
		out.last = p
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
		want.Write(p)
	}
	flush := func() {
		t.Helper()
		if err := big.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.nix.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	piece := func(size int, b byte) []byte { return bytes.Repeat([]byte{b}, size) }

	write(piece(directWrite, 'a')) // nothing buffered: straight through
	if out.calls != 1 || !out.direct[0] {
		t.Fatalf("a large piece with nothing before it: %d writes, direct %v; want one, direct", out.calls, out.direct)
	}
	write(piece(100, 'b'))         // small: buffered
	write(piece(directWrite, 'c')) // behind buffered bytes: buffered too
	if out.calls != 1 {
		t.Fatalf("pieces behind buffered bytes reached Nix before a flush (%d writes)", out.calls)
	}
	flush()
	if out.calls != 2 || out.direct[1] {
		t.Fatalf("after the flush: %d writes (direct %v); want the buffered bytes in one write, copied", out.calls, out.direct)
	}
	f.nix.WriteString("header") // bytes in f.nix's own buffer
	write(piece(directWrite, 'd'))
	if out.calls != 2 {
		t.Fatal("a large piece passed bytes buffered in f.nix")
	}
	flush()
	write(piece(directWrite-1, 'e')) // below directWrite: buffered
	if out.calls != 3 {
		t.Fatalf("a piece below directWrite was written at once (%d writes)", out.calls)
	}
	flush()
	want2 := append(append(append([]byte{}, want.Bytes()[:directWrite+100+directWrite]...), "header"...), want.Bytes()[directWrite+100+directWrite:]...)
	if !bytes.Equal(out.all.Bytes(), want2) {
		t.Fatal("the bytes reached Nix out of order")
	}
}
