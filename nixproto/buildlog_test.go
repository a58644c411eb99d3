package nixproto

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// logSink collects what a filter gives Options.BuildLog.
type logSink struct {
	mu   sync.Mutex
	logs map[string]*bytes.Buffer
}

func (s *logSink) add(drv string, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		s.logs = map[string]*bytes.Buffer{}
	}
	if s.logs[drv] == nil {
		s.logs[drv] = &bytes.Buffer{}
	}
	s.logs[drv].Write(p)
}

func (s *logSink) get(drv string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.logs[drv]; b != nil {
		return b.String()
	}
	return ""
}

// TestWorkerBuildLog: in Nix's answer to a build operation, the log
// lines of each build activity go to that activity's derivation, in
// whatever pieces Nix's answer comes; other results, other activities
// and the messages of non-build operations keep nothing.
func TestWorkerBuildLog(t *testing.T) {
	const (
		drvA = "/nix/store/00000000000000000000000000000000-a.drv"
		drvB = "/nix/store/11111111111111111111111111111111-b.drv"
	)
	v := uint64(1<<8 | 34)
	build := func(id uint64, drv string) *enc {
		return (&enc{}).u64(stderrStartActivity, id, 3, actBuild).str("building "+drv).u64(4, 1).str(drv).u64(1).str("machine").u64(0, 1, 0, 1, 0)
	}
	line := func(id uint64, text string) *enc {
		return (&enc{}).u64(stderrResult, id, resBuildLogLine, 1, 1).str(text)
	}
	answer := slices.Concat(
		build(7, drvA).b, build(8, drvB).b,
		line(7, "a: one").b,
		(&enc{}).u64(stderrResult, 7, 104, 1, 0, 3).b, // a progress result: not log
		line(8, "b: one").b,
		(&enc{}).u64(stderrNext).str("a message\n").b,
		line(7, "a: two").b,
		line(9, "of no build").b,
		(&enc{}).u64(stderrStopActivity, 7, stderrStopActivity, 8, stderrLast, 1).b,
	)
	for seed := range uint64(20) {
		var sink logSink
		tr, out := followed(v)
		tr.f.opt.BuildLog = sink.add
		o := &op{req: policy.OpRequest{Code: 9}, built: []string{drvA + "!out", drvB + "!out"}}
		tr.expect(o, noFlush)
		feedInPieces(rand.New(rand.NewPCG(seed, 1)), tr, answer)
		if !bytes.Equal(out.Bytes(), answer) {
			t.Fatalf("the client got %d bytes of Nix's %d", len(out.Bytes()), len(answer))
		}
		if a, b := sink.get(drvA), sink.get(drvB); a != "a: one\na: two\n" || b != "b: one\n" {
			t.Fatalf("seed %d: logs %q and %q", seed, a, b)
		}
		if len(sink.logs) != 2 {
			t.Errorf("logs kept for %d derivations; want 2", len(sink.logs))
		}
	}
}

// TestServeBuildLog: in the serve protocol Nix's stderr while a build
// operation runs is that build's log, and only that.
func TestServeBuildLog(t *testing.T) {
	const drv = "/nix/store/00000000000000000000000000000000-a.drv"
	var sink logSink
	f := New(Options{Protocol: policy.ProtocolServe, Policy: buildKey, BuildLog: sink.add})
	f.reply = &replyWriter{f: f, w: io.Discard}
	var client strings.Builder
	stderr := f.NixStderr(&client)
	stderr.Write([]byte("before\n"))
	o := &op{built: []string{drv, "/nix/store/00000000000000000000000000000000-a"}}
	f.sent(o)
	stderr.Write([]byte("line 1\n"))
	stderr.Write([]byte("line 2\n"))
	var mark uint64
	f.attributeReplies(o, &mark) // the client's next command: the build is over
	stderr.Write([]byte("after\n"))
	if got := sink.get(drv); got != "line 1\nline 2\n" {
		t.Errorf("the build's log: %q", got)
	}
	if client.String() != "before\nline 1\nline 2\nafter\n" {
		t.Errorf("the client's stderr: %q", client.String())
	}
	if New(Options{Protocol: policy.ProtocolServe}).NixStderr(&client) != &client {
		t.Error("without BuildLog, Nix's stderr is not the client's own")
	}
}
