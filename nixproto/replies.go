package nixproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// More messages of Nix's stderr stream: data an operation sends the
// client (ExportPath's export) and a request for data from the client,
// which no operation nixgate passes makes.
const (
	stderrWrite = 0x64617416
	stderrRead  = 0x64617461
)

// maxReplyText bounds what nixgate keeps of one message in Nix's replies
// (an error's text); the rest is passed on unread.
const maxReplyText = 64 << 10

// replies follows Nix's replies to a worker session's operations, one
// after the other, as they pass to the client: Nix answers each
// operation it reads with messages, then an error or its result, and
// nixgate knows from the operation where the answer ends. That is what
// lets nixgate
//   - answer a refused operation in its place among Nix's answers, after
//     those of the operations before it;
//   - end the session when Nix answers an operation that carries a
//     payload with an error (nixgate cannot know how much of the payload
//     Nix read), or answers in a way nixgate cannot follow;
//   - count a build's time until Nix answers it, and the bytes of store
//     contents Nix sends for it.
//
// The parser is a coroutine (iter.Pull) over the pieces Nix writes: feed
// hands it a piece and returns when all of it is parsed and passed on.
// Only one goroutine calls feed and close; the filter's goroutine calls
// expect and refuse.
type replies struct {
	f *Filter

	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool

	// p is the piece being parsed, off how far, passed how much of it
	// went to the client; total counts the pieces before it.
	p      []byte
	off    int
	passed int
	total  uint64
	// fail is why the parser stopped: sticky, and reads return zero
	// values after it.
	fail error
	// writeErr is the error writing to the client, when that stopped it.
	writeErr error
	// dead is set once the session failed closed: Nix's further
	// replies are dropped.
	dead bool

	// feedMu is held by feed and close.
	feedMu sync.Mutex
	// queueMu guards queue: the operations passed to Nix whose answers
	// have not been read whole, and nixgate's refusals between them.
	// The client's writer lock (replyWriter.mu) is held across taking
	// an answer off the queue and writing the refusals after it, so that
	// they reach the client in the order of the queue. Lock order:
	// replyWriter.mu, then queueMu.
	queueMu sync.Mutex
	queue   []pending
	// room is signalled, with queueMu, when the queue shrinks or will
	// not any more (closed).
	room   *sync.Cond
	closed bool

	// builds maps the build activities of the answer being read to
	// their derivations, for Options.BuildLog.
	builds map[uint64]string
	// logged are the log lines read and not yet passed to the client:
	// they go to Options.BuildLog once they have.
	logged []loggedLine
}

type loggedLine struct{ drv, line string }

// Activity and result types of Nix's logger (logging.hh) that carry a
// build's log.
const (
	actBuild        = 105
	resBuildLogLine = 101
)

// maxBuildActivities bounds the build activities nixgate follows at
// once; the logs of more are not kept.
const maxBuildActivities = 4096

// pending is what an answer in the queue is: Nix's answer to o; for a
// nil o, nixgate's own answer refusal; or, first of all, Nix's hello
// (hello), which refusals wait for too.
type pending struct {
	o       *op
	refusal []byte
	hello   bool
}

// maxQueued bounds the answers a session may owe its client: a client
// that sends operations faster than Nix answers them (refused ones
// cost Nix nothing) is read no further until Nix has caught up.
const maxQueued = 1024

func newReplies(f *Filter) *replies {
	t := &replies{f: f, queue: []pending{{hello: true}}}
	t.room = sync.NewCond(&t.queueMu)
	t.next, t.stop = iter.Pull(func(yield func(struct{}) bool) {
		t.yield = yield
		t.follow()
	})
	return t
}

// waitRoom waits, with queueMu held, until the queue has room, after
// flush has given Nix what it was sent so far (Nix answers only what it
// has read); false when the queue never will (the session is over).
func (t *replies) waitRoom(flush func() error) bool {
	for len(t.queue) >= maxQueued && !t.closed {
		t.queueMu.Unlock()
		err := flush()
		t.queueMu.Lock()
		if err != nil {
			return false
		}
		if len(t.queue) >= maxQueued && !t.closed {
			t.room.Wait()
		}
	}
	return !t.closed
}

// expect queues Nix's answer to o, before o is passed to Nix; false
// when the session is over.
func (t *replies) expect(o *op, flush func() error) bool {
	t.queueMu.Lock()
	defer t.queueMu.Unlock()
	if !t.waitRoom(flush) {
		return false
	}
	t.queue = append(t.queue, pending{o: o})
	return true
}

// refuse answers a refused operation with b: at once when nothing is
// owed the client before it, else after the answers owed.
func (t *replies) refuse(b []byte, flush func() error) error {
	t.queueMu.Lock()
	ok := t.waitRoom(flush)
	t.queueMu.Unlock()
	if !ok {
		return nil
	}
	t.f.reply.mu.Lock()
	defer t.f.reply.mu.Unlock()
	t.queueMu.Lock()
	if len(t.queue) > 0 {
		t.queue = append(t.queue, pending{refusal: b})
		t.queueMu.Unlock()
		return nil
	}
	t.queueMu.Unlock()
	_, err := t.f.reply.w.Write(b)
	return err
}

// helloPassed takes Nix's hello off the queue once it has gone to the
// client, and passes on the refusals that waited for it.
func (t *replies) helloPassed() error {
	t.f.reply.mu.Lock()
	defer t.f.reply.mu.Unlock()
	t.queueMu.Lock()
	if len(t.queue) == 0 || !t.queue[0].hello {
		t.queueMu.Unlock()
		return nil
	}
	refusals := t.popLocked()
	t.queueMu.Unlock()
	for _, b := range refusals {
		if _, err := t.f.reply.w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// popLocked takes the queue's first entry off, with the refusals after
// it, which it returns; queueMu is held.
func (t *replies) popLocked() [][]byte {
	t.queue = t.queue[1:]
	var refusals [][]byte
	for len(t.queue) > 0 && t.queue[0].o == nil && !t.queue[0].hello {
		refusals = append(refusals, t.queue[0].refusal)
		t.queue = t.queue[1:]
	}
	t.room.Broadcast()
	return refusals
}

// wake releases whoever waits for room: the session is over.
func (t *replies) wake() {
	t.queueMu.Lock()
	t.closed = true
	t.room.Broadcast()
	t.queueMu.Unlock()
}

// feed parses p, which Nix wrote next, and passes it on to the client.
// When the parser stops, the session fails closed and the rest of Nix's
// replies are dropped.
func (t *replies) feed(p []byte) error {
	t.feedMu.Lock()
	defer t.feedMu.Unlock()
	if t.dead || t.f.hasFailed() {
		return nil
	}
	t.p, t.off, t.passed = p, 0, 0
	if _, ok := t.next(); ok {
		return t.passOn()
	}
	t.dead = true
	if t.writeErr != nil {
		return t.writeErr
	}
	if err := t.passOn(); err != nil {
		return err
	}
	t.f.failClosed(policy.Line(t.fail))
	return nil
}

// close stops the parser, once Nix has exited.
func (t *replies) close() {
	t.wake()
	t.feedMu.Lock()
	defer t.feedMu.Unlock()
	t.dead = true
	t.stop()
}

// passOn writes the client what was parsed of the piece and not yet
// passed.
func (t *replies) passOn() error {
	if t.passed == t.off {
		return nil
	}
	t.f.reply.mu.Lock()
	defer t.f.reply.mu.Unlock()
	return t.write(t.p[t.passed:t.off])
}

// write passes p on, with replyWriter.mu held.
func (t *replies) write(p []byte) error {
	t.passed = t.off
	_, err := t.f.reply.w.Write(p)
	t.f.replyBytes.Add(uint64(len(p)))
	if err == nil {
		for _, l := range t.logged {
			t.f.opt.BuildLog(l.drv, []byte(l.line))
		}
	}
	t.logged = t.logged[:0]
	return err
}

// pos is how many bytes of Nix's replies were read.
func (t *replies) pos() uint64 { return t.total + uint64(t.off) }

// need waits until the piece has a byte left to read; false when the
// parser stopped.
func (t *replies) need() bool {
	for t.off == len(t.p) {
		if t.fail != nil {
			return false
		}
		if err := t.passOn(); err != nil {
			t.fail, t.writeErr = err, err
			return false
		}
		t.total += uint64(len(t.p))
		t.p, t.off, t.passed = nil, 0, 0
		if !t.yield(struct{}{}) {
			t.fail = errorf("the session ended")
			return false
		}
	}
	return t.fail == nil
}

// malformed stops the parser: nixgate cannot follow what Nix sent.
func (t *replies) malformed(format string, args ...any) {
	if t.fail == nil {
		t.fail = errorf("nixgate cannot follow Nix's answers (%s), so the session ends", fmt.Sprintf(format, args...))
	}
}

func (t *replies) u64() uint64 {
	if t.fail != nil {
		return 0
	}
	if len(t.p)-t.off >= 8 {
		v := binary.LittleEndian.Uint64(t.p[t.off:])
		t.off += 8
		return v
	}
	var b [8]byte
	for i := range b {
		if !t.need() {
			return 0
		}
		b[i] = t.p[t.off]
		t.off++
	}
	return binary.LittleEndian.Uint64(b[:])
}

// prefixed reads prefix, then the rest of Nix's answer.
type prefixed struct {
	prefix []byte
	t      *replies
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.t.Read(b)
}

func (p *prefixed) skip(n uint64) error {
	k := min(n, uint64(len(p.prefix)))
	p.prefix = p.prefix[k:]
	return p.t.skip(n - k)
}

// skip reads past n bytes.
func (t *replies) skip(n uint64) error {
	for n > 0 && t.need() {
		k := min(n, uint64(len(t.p)-t.off))
		t.off += int(k)
		n -= k
	}
	return t.fail
}

// Read makes the parser an io.Reader, for the NAR parser.
func (t *replies) Read(b []byte) (int, error) {
	if !t.need() {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(b, t.p[t.off:])
	t.off += n
	return n, nil
}

// maxReplyString bounds the length of a string in Nix's answers (a
// NAR's file contents are not strings here): longer is no answer nixgate
// understands.
const maxReplyString = 1 << 40

// length reads a string's length.
func (t *replies) length() uint64 {
	n := t.u64()
	if n > maxReplyString {
		t.malformed("Nix sent a string of %d bytes", n)
		return 0
	}
	return n
}

// text reads a string and returns at most its first maxReplyText bytes.
func (t *replies) text() string {
	n := t.length()
	keep := min(n, maxReplyText)
	b := make([]byte, 0, keep)
	for uint64(len(b)) < keep && t.need() {
		k := min(keep-uint64(len(b)), uint64(len(t.p)-t.off))
		b = append(b, t.p[t.off:t.off+int(k)]...)
		t.off += int(k)
	}
	t.skip(padded(n) - keep)
	return string(b)
}

// str reads past a string.
func (t *replies) str() { t.skip(padded(t.length())) }

// strs reads past a list of strings.
func (t *replies) strs() {
	for n := t.u64(); n > 0 && t.fail == nil; n-- {
		t.str()
	}
}

// fields reads past an activity's fields: each a type (0 a number, 1 a
// string) and its value.
func (t *replies) fields() {
	for n := t.u64(); n > 0 && t.fail == nil; n-- {
		switch typ := t.u64(); typ {
		case 0:
			t.u64()
		case 1:
			t.str()
		default:
			t.malformed("Nix sent an activity field of type %d", typ)
		}
	}
}

// firstField reads an activity's or result's fields and returns the
// first when it is a string (at most maxReplyText bytes of it), else "".
func (t *replies) firstField() string {
	var first string
	for i, n := 0, t.u64(); n > 0 && t.fail == nil; i, n = i+1, n-1 {
		switch typ := t.u64(); typ {
		case 0:
			t.u64()
		case 1:
			if i == 0 {
				first = t.text()
			} else {
				t.str()
			}
		default:
			t.malformed("Nix sent an activity field of type %d", typ)
		}
	}
	return first
}

// errorText reads the rest of an error message (after its kind) and
// returns its text: at 1.26 and later a structured error (type, level,
// name, text, no position, traces without positions), before a text and
// an exit status.
func (t *replies) errorText(v uint64) string {
	var text string
	if minor(v) >= 26 {
		t.str() // type
		t.u64() // level
		t.str() // name
		text = t.text()
		if t.u64() != 0 {
			t.malformed("Nix sent an error with a position")
		}
		for n := t.u64(); n > 0 && t.fail == nil; n-- {
			if t.u64() != 0 {
				t.malformed("Nix sent an error trace with a position")
			}
			t.str()
		}
	} else {
		text = t.text()
		t.u64() // exit status
	}
	if text == "" {
		text = "an error without a message"
	}
	return text
}

// follow reads Nix's answers to the queued operations until the parser
// stops.
func (t *replies) follow() {
	for t.need() {
		t.queueMu.Lock()
		var o *op
		if len(t.queue) > 0 && !t.queue[0].hello {
			o = t.queue[0].o
		}
		t.queueMu.Unlock()
		if o == nil {
			// Nix sends an error it met before it started answering, or
			// after it answered, twice, and ends the connection: the
			// second may come when nothing waits for an answer.
			if t.u64() != stderrError {
				t.malformed("Nix sent an answer when no operation waited for one")
				return
			}
			t.errorText(t.f.version)
			continue
		}
		start := t.pos()
		failed := t.answer(o)
		if t.fail != nil {
			return
		}
		t.answered(o, t.pos()-start)
		if failed != "" && o.payload != nil {
			t.fail = errorf("Nix refused %s (%s): nixgate cannot know how much of its payload Nix read, so the session ends",
				policy.OpName(policy.ProtocolWorker, o.req.Code), failed)
			return
		}
	}
}

// answered passes on Nix's answer to o, which is n bytes long, then the
// refusals queued after it, and records what the answer says.
func (t *replies) answered(o *op, n uint64) {
	f := t.f
	f.mu.Lock()
	if o.readsContents {
		f.audit.Read.Bytes += n
	}
	if !o.buildStart.IsZero() {
		f.audit.BuildTime += time.Since(o.buildStart)
		if f.building.Equal(o.buildStart) {
			f.building = time.Time{}
			f.buildingDrvs = nil
		}
	}
	f.mu.Unlock()

	t.f.reply.mu.Lock()
	defer t.f.reply.mu.Unlock()
	err := t.write(t.p[t.passed:t.off])
	t.queueMu.Lock()
	refusals := t.popLocked()
	t.queueMu.Unlock()
	for _, b := range refusals {
		if err == nil {
			_, err = f.reply.w.Write(b)
		}
	}
	if err != nil {
		t.fail, t.writeErr = err, err
	}
}

// answer reads Nix's answer to o: its messages, then an error, whose
// text it returns, or o's result.
func (t *replies) answer(o *op) (failed string) {
	v := t.f.version
	logging := t.f.opt.BuildLog != nil && len(o.built) > 0
	defer clear(t.builds)
	for t.fail == nil {
		switch kind := t.u64(); kind {
		case stderrLast:
			t.result(o.req.Code, v)
			return ""
		case stderrError:
			return t.errorText(v)
		case stderrNext:
			t.str()
		case stderrStartActivity:
			id := t.u64()
			t.u64() // level
			typ := t.u64()
			t.str()
			if !logging || typ != actBuild {
				t.fields()
			} else if drv := t.firstField(); drv != "" && len(t.builds) < maxBuildActivities {
				if t.builds == nil {
					t.builds = map[uint64]string{}
				}
				t.builds[id] = drv
			}
			t.u64() // parent
		case stderrStopActivity:
			delete(t.builds, t.u64())
		case stderrResult:
			id := t.u64()
			typ := t.u64()
			if drv, ok := t.builds[id]; ok && typ == resBuildLogLine {
				if line := t.firstField(); t.fail == nil {
					t.logged = append(t.logged, loggedLine{drv, line + "\n"})
				}
			} else {
				t.fields()
			}
		case stderrWrite:
			if o.req.Code != 16 { // ExportPath
				t.malformed("Nix sent data to the client while answering %s", policy.OpName(policy.ProtocolWorker, o.req.Code))
			}
			t.str()
		default:
			// stderrRead among them: Nix asks the client for data only
			// in operations nixgate does not pass.
			t.malformed("Nix sent message %#x while answering %s", kind, policy.OpName(policy.ProtocolWorker, o.req.Code))
		}
	}
	return ""
}

// result reads past the result Nix sends after LAST for worker operation
// code at version v (daemon.cc's performOp, worker-protocol.cc): the same
// in Nix 2.8 to 2.35 for every version nixgate speaks (1.23 to 1.38).
func (t *replies) result(code, v uint64) {
	switch code {
	case 19, 39, 44: // SetOptions, AddToStoreNar, AddMultipleToStore: nothing
	case 1, 3, 9, 10, 11, 12, 13, 16, 34, 35, 37, 45:
		// A flag or a 1: IsValidPath, HasSubstitutes, BuildPaths,
		// EnsurePath, AddTempRoot, AddIndirectRoot, SyncWithGC,
		// ExportPath, OptimiseStore, VerifyStore, AddSignatures,
		// AddBuildLog.
		t.u64()
	case 4, 8, 18, 29, 47:
		// A string: QueryPathHash, AddTextToStore, QueryDeriver,
		// QueryPathFromHashPart, AddPermRoot.
		t.str()
	case 5, 6, 22, 23, 28, 31, 32, 33:
		// Store paths or names: QueryReferences, QueryReferrers,
		// QueryDerivationOutputs, QueryAllValidPaths,
		// QueryDerivationOutputNames, QueryValidPaths,
		// QuerySubstitutablePaths, QueryValidDerivers.
		t.strs()
	case 7: // AddToStore: the path and its info
		t.str()
		t.pathInfo()
	case 14, 41: // FindRoots, QueryDerivationOutputMap: string → string
		for n := t.u64(); n > 0 && t.fail == nil; n-- {
			t.str()
			t.str()
		}
	case 20: // CollectGarbage: paths, bytes freed, an obsolete number
		t.strs()
		t.u64()
		t.u64()
	case 21: // QuerySubstitutablePathInfo
		if t.flag() {
			t.substitutable()
		}
	case 26: // QueryPathInfo
		if t.flag() {
			t.pathInfo()
		}
	case 30: // QuerySubstitutablePathInfos: path → its info
		for n := t.u64(); n > 0 && t.fail == nil; n-- {
			t.str()
			t.substitutable()
		}
	case 36: // BuildDerivation
		t.buildResult(v)
	case 46: // BuildPathsWithResults: each a derived path and its result
		for n := t.u64(); n > 0 && t.fail == nil; n-- {
			t.str()
			t.buildResult(v)
		}
	case 38: // NarFromPath: the NAR, unframed
		// Nix checks that the path is there only now, before the NAR
		// (2.26 and later) or after its first string (2.8 and 2.26's
		// local store): for a path that is not, an error comes, and
		// Nix ends the connection.
		const magic = "nix-archive-1"
		switch n := t.u64(); n {
		case stderrError:
			t.errorText(v)
			return
		case uint64(len(magic)):
			var b [16]byte
			if _, err := io.ReadFull(t, b[:]); err != nil || string(b[:len(magic)]) != magic {
				t.malformed("Nix sent no NAR")
				return
			}
		default:
			t.malformed("Nix sent no NAR")
			return
		}
		first := t.u64()
		if first == stderrError {
			t.errorText(v)
			return
		}
		// The rest of the NAR, from its first string's length on.
		r := &prefixed{prefix: appendU64(nil, first), t: t}
		if err := (src{r: r}).narNode(0); err != nil {
			t.malformed("Nix's NAR: %v", err)
		}
	case 40: // QueryMissing: three lists of paths, two sizes
		t.strs()
		t.strs()
		t.strs()
		t.u64()
		t.u64()
	default:
		t.malformed("nixgate does not know Nix's answer to %s", policy.OpName(policy.ProtocolWorker, code))
	}
}

// flag reads a flag that says whether a value follows.
func (t *replies) flag() bool {
	switch b := t.u64(); b {
	case 0, 1:
		return b == 1
	default:
		t.malformed("Nix sent %d for a flag", b)
		return false
	}
}

// pathInfo reads past a store path's info without its path: deriver,
// NAR hash, references, registration time, NAR size, ultimate,
// signatures, content address.
func (t *replies) pathInfo() {
	t.str()
	t.str()
	t.strs()
	t.u64()
	t.u64()
	t.u64()
	t.strs()
	t.str()
}

// substitutable reads past a substitute's info: deriver, references,
// download size, NAR size.
func (t *replies) substitutable() {
	t.str()
	t.strs()
	t.u64()
	t.u64()
}

// buildResult reads past a build's result: status, error message, then
// from 1.29 times built, non-determinism, start and stop time, from 1.37
// user and system CPU time (each a flag and, when set, a number), and
// from 1.28 the outputs built (realisations: with the feature
// realisation-with-path-not-hash, output name → path and signatures;
// before, an output id → a realisation in JSON).
func (t *replies) buildResult(v uint64) {
	t.u64()
	t.str()
	if minor(v) >= 29 {
		t.u64()
		t.u64()
		t.u64()
		t.u64()
	}
	if minor(v) >= 37 {
		for range 2 {
			if t.flag() {
				t.u64()
			}
		}
	}
	if minor(v) < 28 {
		return
	}
	withPath := t.f.hasFeature(FeatureRealisationWithPath)
	for n := t.u64(); n > 0 && t.fail == nil; n-- {
		t.str()
		if withPath {
			t.str()
			t.strs()
		} else {
			t.str()
		}
	}
}
