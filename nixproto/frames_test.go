package nixproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestFrameWriter checks the frames nixgate writes toward Nix: the
// contents whole, the first frame firstFrame bytes long (1 or none for a
// shorter payload), no frame over maxFrame, the end marker last, however
// the contents arrive.
func TestFrameWriter(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), (3*maxFrame)/10)
	for _, tt := range []struct {
		name   string
		writes [][]byte
	}{
		{"empty", nil},
		{"one byte", [][]byte{{'a'}}},
		{"two bytes", [][]byte{{'a', 'b'}}},
		{"one byte at a time", [][]byte{{'a'}, {'b'}, {'c'}, {'d'}}},
		{"small then large", [][]byte{[]byte("abc"), big}},
		{"large", [][]byte{big}},
		{"many small", slices.Repeat([][]byte{[]byte("12345678")}, 20000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			fw := &frameWriter{w: &out}
			var want []byte
			for _, w := range tt.writes {
				if n, err := fw.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				want = append(want, w...)
			}
			if err := fw.end(); err != nil {
				t.Fatal(err)
			}
			b := out.Bytes()
			var got []byte
			for i := 0; ; i++ {
				if len(b) < 8 {
					t.Fatalf("frame %d: stream ends without the end marker", i)
				}
				n := binary.LittleEndian.Uint64(b)
				b = b[8:]
				if n == 0 {
					break
				}
				if i == 0 && n != uint64(min(len(want), firstFrame)) {
					t.Errorf("first frame of %d bytes; want %d", n, min(len(want), firstFrame))
				}
				if n > maxFrame || n > uint64(len(b)) {
					t.Fatalf("frame %d of %d bytes (%d left)", i, n, len(b))
				}
				got = append(got, b[:n]...)
				b = b[n:]
			}
			if len(b) != 0 {
				t.Errorf("%d bytes after the end marker", len(b))
			}
			if !bytes.Equal(got, want) {
				t.Errorf("contents differ: got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// TestClientFrameTooLong is the first way found to hide operations: a
// frame length of 2^32 or more, which Nix cannot read. nixgate ends the
// session, and Nix has the operation's arguments but nothing of the
// frame.
func TestClientFrameTooLong(t *testing.T) {
	v := uint64(1<<8 | 34)
	hidden := slices.Concat(setOptions1("post-build-hook", "/tmp/x"), (&enc{}).u64(1).str("/nix/store/a").b)
	op := (&enc{}).u64(44, 0, 0).u64(1<<32 | uint64(len(hidden)))
	client := slices.Concat(workerHello(v), op.b, hidden, (&enc{}).u64(0).b)
	r := filterSession(t, Options{Protocol: policy.ProtocolWorker, Policy: fullTrust}, client, workerServerHello(v))
	if r.err == nil {
		t.Fatalf("the session went on after a frame Nix cannot read")
	}
	want := slices.Concat(workerHello(v), (&enc{}).u64(44, 0, 0).b)
	if !bytes.Equal(r.toNix, want) {
		t.Errorf("Nix got %x; want the hello and the operation's arguments only, %x", r.toNix, want)
	}
}

// answerAddMultiple is a Nix that answers each AddMultipleToStore it
// reads (after the hello of version 1.34) with LAST, as Nix does: it
// follows the frames to the operation's end.
func answerAddMultiple(in io.Reader, out io.Writer) {
	r := bufio.NewReader(in)
	u64 := func() (uint64, error) {
		var b [8]byte
		_, err := io.ReadFull(r, b[:])
		return binary.LittleEndian.Uint64(b[:]), err
	}
	for range 4 { // magic, version, affinity, reserveSpace
		if _, err := u64(); err != nil {
			return
		}
	}
	for {
		code, err := u64()
		if err != nil || code != 44 {
			return
		}
		u64()
		u64()
		for {
			n, err := u64()
			if err != nil {
				return
			}
			if n == 0 {
				break
			}
			r.Discard(int(n))
		}
		out.Write((&enc{}).u64(stderrLast).b)
	}
}

// TestPipelinedPayloadsHoldOneBuffer: payload operations sent at once
// (each copy leaving bytes read ahead) keep one big reader for the
// session, not one more per operation (2000 empty AddMultipleToStore held
// about 500 MiB before).
func TestPipelinedPayloadsHoldOneBuffer(t *testing.T) {
	v := uint64(1<<8 | 34)
	op := (&enc{}).u64(44, 0, 0).framed((&enc{}).u64(0).b, 8).b
	client := slices.Concat(workerHello(v), bytes.Repeat(op, 2000))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := attachAnswering(t, New(Options{Protocol: policy.ProtocolWorker, Policy: buildKey}), bytes.NewReader(client), workerServerWhole(v), answerAddMultiple)
	s.nixGot(t)
	runtime.GC()
	runtime.ReadMemStats(&after)
	a, err := s.f.Result()
	s.nixExited()
	if err != nil || a.Ops["AddMultipleToStore"] != 2000 {
		t.Fatalf("ops %v, err %v; want 2000 AddMultipleToStore", a.Ops, err)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("the live heap grew by %d MiB for one session", grew>>20)
	}
}

// TestPayloadChecks: what Nix checks after it starts answering and
// before it reads the payload, nixgate checks first: the refused op's
// payload is read to its end and nothing of it reaches Nix, the op after
// it arrives whole; a passed op reaches Nix with nixgate's frames.
func TestPayloadChecks(t *testing.T) {
	const drv = "6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1.drv"
	addToStore := func(method string) []byte {
		return (&enc{}).u64(7).str("x", method).strs().u64(0).framed([]byte("text"), 3).b
	}
	buildLog := func(path string) []byte {
		return (&enc{}).u64(45).str(path).framed([]byte("log\n"), 1).b
	}
	for _, tt := range []struct {
		name    string
		version uint64
		trust   uint64
		op      []byte
		pass    bool
	}{
		{"text:sha256", 1<<8 | 34, trustTrusted, addToStore("text:sha256"), true},
		{"fixed:r:sha512", 1<<8 | 38, trustTrusted, addToStore("fixed:r:sha512"), true},
		{"fixed:md5", 1<<8 | 25, trustTrusted, addToStore("fixed:md5"), true},
		{"text:sha1 (Nix 2.8 refuses)", 1<<8 | 34, trustTrusted, addToStore("text:sha1"), false},
		{"fixed:git:sha1 (experimental)", 1<<8 | 38, trustTrusted, addToStore("fixed:git:sha1"), false},
		{"fixed:blake3 (experimental)", 1<<8 | 38, trustTrusted, addToStore("fixed:blake3"), false},
		{"fixed:sha256:junk", 1<<8 | 38, trustTrusted, addToStore("fixed:sha256:junk"), false},
		{"nar:sha256", 1<<8 | 38, trustTrusted, addToStore("nar:sha256"), false},
		{"AddBuildLog trusted", 1<<8 | 35, trustTrusted, buildLog(drv), true},
		{"AddBuildLog trust unknown (trusted by a store that did not say)", 1<<8 | 38, trustUnknown, buildLog(drv), true},
		{"AddBuildLog untrusted", 1<<8 | 38, trustNot, buildLog(drv), false},
		{"AddBuildLog trust not said (1.34)", 1<<8 | 34, trustTrusted, buildLog(drv), false},
		{"AddBuildLog of a path not a derivation", 1<<8 | 38, trustTrusted, buildLog("6cp643dzvlxxpkgbg5kzmwj47sam9zs2-hello-2.12.1"), false},
		{"AddBuildLog of a full path", 1<<8 | 38, trustTrusted, buildLog("/nix/store/" + drv), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hello := workerHello(tt.version)
			client := slices.Concat(hello, tt.op, sentinel(policy.ProtocolWorker))
			server := slices.Concat(workerServerHello(tt.version), workerServerTail(tt.version, tt.trust))
			o := observedSession(t, Options{Protocol: policy.ProtocolWorker, Policy: fullTrust}, client, server)
			if o.err != nil {
				t.Fatalf("the session ended: %v", o.err)
			}
			if !bytes.HasSuffix(o.toNix, sentinel(policy.ProtocolWorker)) {
				t.Fatalf("the op after it did not arrive whole: the filter lost its place")
			}
			if tt.pass {
				if len(o.passed) != 2 || o.refused != 0 {
					t.Errorf("passed %v, %d refused; want it passed", o.passed, o.refused)
				}
				return
			}
			if want := slices.Concat(hello, sentinel(policy.ProtocolWorker)); !bytes.Equal(o.toNix, want) {
				t.Errorf("Nix got %x; want nothing of the refused op", o.toNix)
			}
			if msgs := workerErrorMessages(o.toClient, tt.version); len(msgs) != 1 || !strings.Contains(msgs[0], "refused") {
				t.Errorf("the client got %q; want one refusal", msgs)
			}
		})
	}
}
