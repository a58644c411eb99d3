package nixproto

import (
	"bytes"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// benchSession is a worker session that imports one path of size bytes
// as Nix 2.8 sends it over ssh-ng:// (AddMultipleToStore, framed), then
// reads it back (NarFromPath).
func benchSession(size int) []byte {
	contents := bytes.Repeat([]byte("nixgate!"), size/8)
	nar := (&enc{}).str("nix-archive-1", "(", "type", "regular", "contents").b
	nar = append(appendU64(nar, uint64(len(contents))), contents...)
	nar = (&enc{b: nar}).str(")").b
	inner := (&enc{}).u64(1).str("/nix/store/00000000000000000000000000000000-big", "", "sha256:0").strs().u64(0, uint64(len(nar)), 0).strs().str("").b
	inner = append(inner, nar...)
	op := (&enc{}).u64(44, 0, 0).framed(inner, 32<<10).u64(38).str("/nix/store/00000000000000000000000000000000-big").b
	return slices.Concat(workerHello(1<<8|34), op)
}

// BenchmarkFilter is the filter's own cost: a 256 MiB import through the
// filter (build key) against a plain copy of the same bytes
// (BenchmarkPlainCopy); docs/BENCHMARKS.md reports the ratio.
func BenchmarkFilter(b *testing.B) {
	client := benchSession(256 << 20)
	server := workerServerHello(1<<8 | 34)
	b.SetBytes(int64(len(client)))
	b.ResetTimer()
	for range b.N {
		f := New(Options{Protocol: policy.ProtocolWorker, Policy: buildKey})
		nixIn, nixOut, err := f.Attach(bytes.NewReader(client), io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		go nixOut.Write(server)
		n, _ := io.CopyBuffer(io.Discard, nixIn, make([]byte, 256<<10))
		<-f.Done()
		a, err := f.Result()
		f.Close()
		nixIn.Close()
		// The client's frames of 32 KiB reach Nix as nixgate's own, with
		// about as many headers.
		if d := n - int64(len(client)); err != nil || a.Ops["AddMultipleToStore"] != 1 || a.Ops["NarFromPath"] != 1 || d > int64(len(client))/1000 || -d > int64(len(client))/1000 {
			b.Fatalf("passed %d of %d bytes, ops %v, err %v", n, len(client), a.Ops, err)
		}
	}
}

// BenchmarkPlainCopy copies the session of BenchmarkFilter through a
// pipe, as Nix's stdin is, without the filter.
func BenchmarkPlainCopy(b *testing.B) {
	client := benchSession(256 << 20)
	b.SetBytes(int64(len(client)))
	b.ResetTimer()
	for range b.N {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		growPipe(w)
		go func() {
			io.CopyBuffer(w, bytes.NewReader(client), make([]byte, 256<<10))
			w.Close()
		}()
		n, _ := io.CopyBuffer(io.Discard, r, make([]byte, 256<<10))
		r.Close()
		if n != int64(len(client)) {
			b.Fatalf("copied %d of %d bytes", n, len(client))
		}
	}
}
