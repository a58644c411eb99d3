package nixproto

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// answerCodes are the worker operations whose answers replies follows.
var answerCodes = []uint64{1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 18, 19, 20, 21, 22, 23, 26, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 44, 45, 46, 47}

// genAnswer is an answer Nix could give to op code at version v: log
// messages and activities, then LAST and a result of the op's form
// (daemon.cc), or an error. It is the test's own writing of the forms.
func genAnswer(rng *rand.Rand, code, v uint64, withPath bool) []byte {
	e := &enc{}
	for range rng.IntN(3) {
		switch rng.IntN(4) {
		case 0:
			e.u64(stderrNext).str(strings.Repeat("log ", rng.IntN(40)))
		case 1:
			e.u64(stderrStartActivity, 5, 3, 105).str("building").u64(2, 0, 7, 1).str("x").u64(0)
		case 2:
			e.u64(stderrResult, 5, 101).u64(1, 1).str("a build log line")
		case 3:
			e.u64(stderrStopActivity, 5)
		}
	}
	if code == 16 { // ExportPath's export
		e.u64(stderrWrite).str(strings.Repeat("x", rng.IntN(100)))
	}
	if rng.IntN(8) == 0 {
		return append(e.b, WorkerError(v, "error: "+strings.Repeat("e", rng.IntN(50)))...)
	}
	e.u64(stderrLast)
	path := "/nix/store/00000000000000000000000000000000-x"
	paths := func() { e.strs(slices.Repeat([]string{path}, rng.IntN(4))...) }
	info := func() {
		e.str("", "sha256:00")
		paths()
		e.u64(1700000000, 4096, uint64(rng.IntN(2)))
		e.strs("cache:sig")
		e.str("")
	}
	buildResult := func() {
		e.u64(uint64(rng.IntN(14))).str("")
		if minor(v) >= 29 {
			e.u64(1, 0, 1700000000, 1700000005)
		}
		if minor(v) >= 37 {
			e.u64(1, 12345, 0)
		}
		if minor(v) >= 28 {
			n := rng.IntN(3)
			e.u64(uint64(n))
			for range n {
				if withPath {
					e.str("out", path).strs("sig")
				} else {
					e.str("sha256:00!out", `{"id":"sha256:00!out"}`)
				}
			}
		}
	}
	switch code {
	case 19, 39, 44:
	case 1, 3, 9, 10, 11, 12, 13, 16, 34, 35, 37, 45:
		e.u64(uint64(rng.IntN(2)))
	case 4, 8, 18, 29, 47:
		e.str(path)
	case 5, 6, 22, 23, 28, 31, 32, 33:
		paths()
	case 7:
		e.str(path)
		info()
	case 14, 41:
		e.u64(2).str("out", path, "dev", "")
	case 20:
		paths()
		e.u64(1<<20, 0)
	case 21:
		e.u64(1).str("").strs(path).u64(10, 20)
	case 26:
		if rng.IntN(2) == 0 {
			e.u64(0)
		} else {
			e.u64(1)
			info()
		}
	case 30:
		e.u64(1).str(path, "").strs().u64(10, 20)
	case 36:
		buildResult()
	case 46:
		e.u64(2)
		e.str(path + ".drv!out")
		buildResult()
		e.str(path)
		buildResult()
	case 38:
		e.nar(strings.Repeat("n", rng.IntN(3000)))
	case 40:
		paths()
		paths()
		paths()
		e.u64(10, 20)
	}
	return e.b
}

// followed is a replies of a filter of its own, at version v, whose
// client output is out.
func followed(v uint64, features ...string) (*replies, *syncBuffer) {
	f := New(Options{Protocol: policy.ProtocolWorker, Policy: fullTrust})
	f.version = v
	f.features = features
	out := &syncBuffer{}
	f.reply = &replyWriter{f: f, w: out, helloDone: true}
	f.reply.track = newReplies(f)
	f.reply.track.helloPassed()
	return f.reply.track, out
}

// noFlush is the flush of a Nix that has everything already.
func noFlush() error { return nil }

// feedInPieces feeds b to t in pieces of random sizes, some of a byte.
func feedInPieces(rng *rand.Rand, t *replies, b []byte) {
	for len(b) > 0 {
		n := 1 + rng.IntN(64)
		if rng.IntN(4) == 0 {
			n = 1 + rng.IntN(len(b))
		}
		n = min(n, len(b))
		t.feed(slices.Clone(b[:n]))
		b = b[n:]
	}
}

// TestRepliesFollowEveryAnswer: for sessions of random operations at
// each version, the answers Nix could give, cut into pieces of any size,
// are read whole, one by one, and reach the client unchanged.
func TestRepliesFollowEveryAnswer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range []uint64{1<<8 | 23, 1<<8 | 27, 1<<8 | 28, 1<<8 | 29, 1<<8 | 34, 1<<8 | 37, 1<<8 | 38} {
		for _, withPath := range []bool{false, true} {
			if withPath && minor(v) < 38 {
				continue
			}
			for range 50 {
				var feats []string
				if withPath {
					feats = []string{FeatureRealisationWithPath}
				}
				tr, out := followed(v, feats...)
				var want []byte
				for range 1 + rng.IntN(12) {
					code := answerCodes[rng.IntN(len(answerCodes))]
					tr.expect(&op{req: policy.OpRequest{Code: code}}, noFlush)
					want = append(want, genAnswer(rng, code, v, withPath)...)
				}
				feedInPieces(rng, tr, want)
				if tr.fail != nil || tr.f.hasFailed() {
					t.Fatalf("%s: the answers were not followed: %v", versionName(v), tr.fail)
				}
				if len(tr.queue) != 0 {
					t.Fatalf("%s: %d answers not read whole", versionName(v), len(tr.queue))
				}
				if !bytes.Equal(out.Bytes(), want) {
					t.Fatalf("%s: the client got other bytes than Nix sent", versionName(v))
				}
				tr.close()
			}
		}
	}
}

// TestRefusalsInPlace: a refused operation's error reaches the client
// after Nix's answers to the operations sent before it, and before the
// answers to those after it, however Nix's answers are cut.
func TestRefusalsInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	v := uint64(1<<8 | 34)
	for range 100 {
		tr, out := followed(v)
		var want []byte
		var nix [][]byte
		for i := range 6 {
			if i%2 == 1 {
				refusal := WorkerError(v, "nixgate: refused "+string(rune('a'+i)))
				if err := tr.refuse(refusal, noFlush); err != nil {
					t.Fatal(err)
				}
				want = append(want, refusal...)
				continue
			}
			code := answerCodes[rng.IntN(len(answerCodes))]
			tr.expect(&op{req: policy.OpRequest{Code: code}}, noFlush)
			a := genAnswer(rng, code, v, false)
			nix = append(nix, a)
			want = append(want, a...)
		}
		feedInPieces(rng, tr, slices.Concat(nix...))
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("the client got\n%x\nwant\n%x", out.Bytes(), want)
		}
		tr.close()
	}
	// Nothing owed: the refusal goes out at once.
	tr, out := followed(v)
	refusal := WorkerError(v, "nixgate: refused")
	tr.refuse(refusal, noFlush)
	if !bytes.Equal(out.Bytes(), refusal) {
		t.Errorf("with no answer owed the client got %x; want the refusal at once", out.Bytes())
	}
	tr.close()
}

// TestRepliesFailClosed: an answer nixgate cannot follow, and an error
// answering an operation that carries a payload, end the session: the
// filter's error says why, and nothing Nix sends after reaches the
// client.
func TestRepliesFailClosed(t *testing.T) {
	v := uint64(1<<8 | 34)
	isValid := (&enc{}).u64(stderrLast, 1).b
	for _, tc := range []struct {
		name   string
		code   uint64
		answer []byte
		want   string // in the filter's error; empty: the session goes on
		ends   bool   // Nix ends the connection after answer
	}{
		{"unknown message", 1, (&enc{}).u64(0x12345678).b, "cannot follow Nix's answers", false},
		{"Nix asks for data", 7, (&enc{}).u64(stderrRead, 8).b, "cannot follow Nix's answers", false},
		{"data for the wrong op", 1, (&enc{}).u64(stderrWrite).str("x").b, "cannot follow Nix's answers", false},
		{"flag of 2", 26, (&enc{}).u64(stderrLast, 2).b, "cannot follow Nix's answers", false},
		{"no NAR", 38, (&enc{}).u64(stderrLast).str("not-a-nar").b, "cannot follow Nix's answers", false},
		{"bad NAR", 38, (&enc{}).u64(stderrLast).str("nix-archive-1", "(", "type", "fifo").b, "cannot follow Nix's answers", false},
		{"AddToStoreNar refused", 39, WorkerError(v, "bad signature"), "Nix refused AddToStoreNar (bad signature)", false},
		{"AddMultipleToStore refused", 44, WorkerError(v, "no space"), "Nix refused AddMultipleToStore (no space)", false},
		{"AddToStore refused", 7, WorkerError(v, "bad"), "Nix refused AddToStore (bad)", false},
		{"AddBuildLog refused", 45, WorkerError(v, "bad"), "Nix refused AddBuildLog (bad)", false},
		{"a query refused", 1, WorkerError(v, "bad"), "", false},
		{"NAR of an invalid path", 38, slices.Concat((&enc{}).u64(stderrLast).b, WorkerError(v, "path is not valid"), WorkerError(v, "path is not valid")), "", true},
		{"NAR of a missing path (Nix 2.8)", 38, slices.Concat((&enc{}).u64(stderrLast).str("nix-archive-1").b, WorkerError(v, "getting status of path"), WorkerError(v, "getting status of path")), "", true},
		{"an error before Nix answers", 1, slices.Concat(WorkerError(v, "not a store path"), WorkerError(v, "not a store path")), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, out := followed(v)
			o := &op{req: policy.OpRequest{Code: tc.code}}
			if tc.code == 7 || tc.code == 39 || tc.code == 44 || tc.code == 45 {
				o.payload = func() error { return nil }
			}
			tr.expect(o, noFlush)
			tr.expect(&op{req: policy.OpRequest{Code: 1}}, noFlush)
			tr.feed(slices.Clone(tc.answer))
			if !tc.ends {
				tr.feed(slices.Clone(isValid))
			}
			failed := tr.f.hasFailed()
			_, err := tr.f.Result()
			switch {
			case tc.want == "" && failed:
				t.Fatalf("the session failed closed: %v", err)
			case tc.want == "" && tc.ends:
				if !bytes.Equal(out.Bytes(), tc.answer) {
					t.Errorf("the client got %x; want Nix's last words %x", out.Bytes(), tc.answer)
				}
			case tc.want == "":
				if !bytes.Equal(out.Bytes(), slices.Concat(tc.answer, isValid)) {
					t.Errorf("the client got %x; want both answers", out.Bytes())
				}
			case !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("the filter's error is %v; want one with %q", err, tc.want)
			case bytes.Contains(out.Bytes(), isValid) && tc.code != 1:
				t.Errorf("Nix's answer after the failure reached the client")
			}
			tr.close()
		})
	}
}

// TestBuildTimeUntilAnswered: a build's time runs until Nix answers it,
// even when the client sends its next operation at once (pipelining).
func TestBuildTimeUntilAnswered(t *testing.T) {
	v := uint64(1<<8 | 34)
	build := (&enc{}).u64(9).strs("/nix/store/00000000000000000000000000000000-x.drv!out").u64(0).b
	isValid := (&enc{}).u64(1).str("/nix/store/00000000000000000000000000000000-x").b
	hello := workerHello(v)
	client := slices.Concat(hello, build, isValid)
	const took = 300 * time.Millisecond
	r := filterSessionAnswering(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey}, client,
		slices.Concat(workerServerHello(v), helloTail(v)),
		answer{after: len(client), delay: took, b: (&enc{}).u64(stderrLast, 1, stderrLast, 0).b})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.audit.Builds != 1 || r.audit.BuildTime < took {
		t.Errorf("audit: %d builds, build time %v; want 1 build of at least %v (until Nix answered)", r.audit.Builds, r.audit.BuildTime, took)
	}
}

// FuzzReplies: whatever Nix sends, in whatever pieces, the parser of its
// answers ends (each piece is parsed, or the session fails closed) and
// passes on to the client nothing but what Nix sent.
func FuzzReplies(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, code := range answerCodes {
		f.Add(uint16(34), byte(code), genAnswer(rng, code, 1<<8|34, false), uint64(1))
	}
	f.Fuzz(func(t *testing.T, v uint16, code byte, nix []byte, seed uint64) {
		version := 1<<8 | uint64(23+v%16)
		tr, out := followed(version)
		defer tr.close()
		rng := rand.New(rand.NewPCG(seed, seed))
		for range 1 + rng.IntN(4) {
			tr.expect(&op{req: policy.OpRequest{Code: answerCodes[(int(code)+rng.IntN(3))%len(answerCodes)]}}, noFlush)
		}
		feedInPieces(rng, tr, nix)
		if got := out.Bytes(); !bytes.HasPrefix(nix, got) {
			t.Fatalf("the client got %x, not a prefix of what Nix sent", got)
		}
		if !tr.dead && len(out.Bytes()) != len(nix) {
			t.Fatalf("the session goes on, but the client got %d of the %d bytes Nix sent", len(out.Bytes()), len(nix))
		}
	})
}

// BenchmarkRepliesNAR: following NarFromPath's answer, a 64 MiB NAR of
// one file, as Nix writes it (pieces of 32 KiB) — what nix copy --from
// over ssh-ng:// costs nixgate on the way back.
func BenchmarkRepliesNAR(b *testing.B) {
	const size = 64 << 20
	e := (&enc{}).u64(stderrLast).str("nix-archive-1", "(", "type", "regular", "contents")
	e.u64(size)
	nar := append(e.b, make([]byte, size)...)
	nar = (&enc{b: nar}).str(")").b
	b.SetBytes(int64(len(nar)))
	for b.Loop() {
		tr, _ := followedDiscarding(1<<8 | 34)
		tr.expect(&op{req: policy.OpRequest{Code: 38}}, noFlush)
		for p := nar; len(p) > 0; {
			n := min(32<<10, len(p))
			tr.feed(p[:n])
			p = p[n:]
		}
		if len(tr.queue) != 0 || tr.fail != nil {
			b.Fatalf("the NAR was not followed: %v", tr.fail)
		}
		tr.close()
	}
}

// followedDiscarding is followed with a client that reads nothing.
func followedDiscarding(v uint64) (*replies, *Filter) {
	f := New(Options{Protocol: policy.ProtocolWorker, Policy: fullTrust})
	f.version = v
	f.reply = &replyWriter{f: f, w: io.Discard, helloDone: true}
	f.reply.track = newReplies(f)
	f.reply.track.helloPassed()
	return f.reply.track, f
}

// TestRefusalsWaitForRoom: a client that sends refused operations while
// Nix is slow to answer one before them is read no further once it owes
// the client maxQueued answers; when Nix answers, every refusal reaches
// the client, in order, after it.
func TestRefusalsWaitForRoom(t *testing.T) {
	v := uint64(1<<8 | 34)
	isValid := (&enc{}).u64(1).str(testPath).b
	refused := (&enc{}).u64(1).str("").b // not a store path
	const n = 3 * maxQueued
	client := slices.Concat(workerHello(v), isValid, bytes.Repeat(refused, n))
	release := make(chan struct{})
	s := attachAnswering(t, New(Options{Protocol: policy.ProtocolWorker, Policy: buildKey}), bytes.NewReader(client), workerServerWhole(v),
		func(in io.Reader, out io.Writer) {
			<-release
			out.Write((&enc{}).u64(stderrLast, 1).b)
		})
	tr := s.f.reply.track
	queued := func() int {
		tr.queueMu.Lock()
		defer tr.queueMu.Unlock()
		return len(tr.queue)
	}
	for i := 0; queued() < maxQueued && i < 2000; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a queue that would grow on
	if q := queued(); q != maxQueued {
		t.Errorf("%d answers owed the client while Nix is slow; want the queue full at %d, and no more", q, maxQueued)
	}
	close(release)
	s.nixGot(t)
	s.nixExited()
	out := s.toClient.Bytes()
	answer := (&enc{}).u64(stderrLast, 1).b
	i := bytes.Index(out, answer)
	if i < 0 {
		t.Fatal("Nix's answer did not reach the client")
	}
	if msgs := workerErrorMessages(out[:i], v); len(msgs) != 0 {
		t.Errorf("%d refusals reached the client before Nix's answer to the operation before them", len(msgs))
	}
	if msgs := workerErrorMessages(out[i:], v); len(msgs) != n {
		t.Errorf("%d refusals reached the client; want %d", len(msgs), n)
	}
}

// TestRefusalWaitsForHello: a refusal of an operation a client sent
// before Nix's hello was whole reaches the client after the hello.
func TestRefusalWaitsForHello(t *testing.T) {
	v := uint64(1<<8 | 34)
	hello := workerHello(v)
	client := slices.Concat(hello, (&enc{}).u64(1).str("").b)
	whole := workerServerWhole(v)
	last := (&enc{}).u64(stderrLast).b
	r := filterSessionAnswering(t, Options{Protocol: policy.ProtocolWorker, Policy: buildKey}, client, whole[:len(whole)-len(last)],
		answer{after: len(hello), delay: 100 * time.Millisecond, b: last})
	if !bytes.HasPrefix(r.toClient, whole) {
		t.Fatalf("the client got %x; want Nix's whole hello first, %x", r.toClient, whole)
	}
	if msgs := workerErrorMessages(r.toClient[len(whole):], v); len(msgs) != 1 {
		t.Errorf("after the hello the client got %q; want the one refusal", msgs)
	}
}
