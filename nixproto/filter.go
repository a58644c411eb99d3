package nixproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// ErrRefused ends a session whose client sent what nixgate refuses and
// the protocol cannot go on after: a serve-protocol write command from a
// read-only key, an operation nixgate cannot parse, a client too old.
var ErrRefused = errorf("refused")

// Options configure a Filter.
type Options struct {
	// Protocol is the protocol the session speaks. The zero Protocol
	// refuses the session.
	Protocol policy.Protocol
	// Policy decides each operation. The zero OpPolicy refuses every
	// operation.
	Policy policy.OpPolicy
	// Stderr is the client's stderr: refusals the protocol cannot carry
	// are written there as one line. Nil discards them.
	Stderr io.Writer
	// Log receives a record per refused operation and per dropped
	// setting. Nil discards them.
	Log *slog.Logger
	// Observe, when set, is called once per operation with its name and
	// whether it passed; it must not block.
	Observe func(op string, allowed bool)
	// AcquireBuild, when set, is called before an operation that builds
	// something is passed to Nix, and may wait for a build slot; it
	// fails when none came in time (or stop closed, when the session
	// is ending), and the error's line (policy.Line), after "nixgate: ",
	// is what the client sees: the worker protocol answers the operation with it,
	// the serve protocol ends the session. A session holds at most one
	// slot: its later builds run in it. The filter calls release once,
	// at Close, when Nix has exited: Nix works on a session's
	// operations one after the other, but a client may send its next
	// operation, or end its stream, while Nix is still building, so
	// only Nix's exit says the build is over. Nil means builds never
	// wait.
	AcquireBuild func(stop <-chan struct{}) (release func(), err error)
	// BuildLog, when set, is given the build log the client is sent, by
	// derivation, as it passes: for the worker protocol the log lines
	// and messages of Nix's answers to a build operation (by the build
	// activity that logged them), for the serve protocol what Nix writes
	// on stderr (NixStderr) while a build operation runs. It must not
	// block, and must copy what it keeps. Nil keeps nothing.
	BuildLog func(drv string, p []byte)
}

// Filter carries one session of a Nix protocol between a client and
// Nix. It reads everything the client sends, asks Options.Policy about
// each operation, and passes on to Nix only what is allowed, with the
// protocol versions of both hellos lowered to what nixgate understands.
// Nix's replies reach the client unchanged, except that nixgate answers
// a refused worker operation itself with an error Nix prints.
//
// A Filter is used once: New, Attach, then Close after Nix has exited.
type Filter struct {
	opt Options
	log *slog.Logger

	req *reader
	// nix is Nix's stdin, buffered: flushed whenever the filter is about
	// to wait for the client or for Nix, and at the end.
	nix     *bufio.Writer
	nixPipe *os.File
	// nixDirect is Nix's stdin under nix's buffer, which bulkWriter
	// writes large pieces to when nothing is buffered before them.
	nixDirect io.Writer
	// bulk, while a payload copy runs (withBulk), is the large buffer in
	// front of nix; nil otherwise.
	bulk *bufio.Writer
	// kept is the big buffers of the last payload copy while their
	// reader still holds bytes read ahead (it is then the session's
	// reader); nil otherwise.
	kept  *bulkBufs
	reply *replyWriter
	buf   []byte

	// serverHello is closed when the reply side has read Nix's hello
	// (serverVersion is then set), or gave up waiting for it.
	serverHello   chan struct{}
	serverVersion uint64
	// clientHello is closed when the request side has settled the
	// session's version (version is then set), or ended.
	clientHello chan struct{}
	version     uint64
	// serverFeatures is closed when the reply side has read Nix's
	// feature set at 1.38 (features is then set), or will not.
	serverFeatures chan struct{}
	clientFeatures []string
	// serverFeatureSet is Nix's feature set as passed on, set before
	// serverFeatures is closed.
	serverFeatureSet []string
	features         []string

	// trustKnown is closed when the reply side has read whether Nix
	// trusts the client (worker protocol 1.35), or will not; trusted
	// (under mu) is then set when Nix said it does.
	trustKnown chan struct{}
	trusted    bool

	// inject is set for a worker session whose key has build limits:
	// nixgate starts it with a SetOptions of its own (sessionOptions).
	inject bool
	// limitsSet is closed when Nix's answer to that SetOptions has been
	// read, or will not be; limitsErr (under mu) is then why the
	// session's builds are refused, empty when the limits hold.
	limitsSet chan struct{}
	limitsErr string

	replyBytes atomic.Uint64
	nixBytes   atomic.Uint64 // written to Nix's stdin
	done       chan struct{}
	// in is the client's stream, under f.req.
	in       *aheadReader
	stopOnce sync.Once
	stop     chan struct{}

	mu    sync.Mutex
	audit Audit
	err   error
	// building is when the build op still awaiting the client's next op
	// reached Nix; zero when none is.
	building time.Time
	// buildingDrvs are the derivations of that op, whose log Nix's stderr
	// is in the serve protocol.
	buildingDrvs []string
	// slot gives back the session's build slot, held from its first
	// build op until Close; nil when none is held.
	slot func()
	// closed is set by Close: a slot granted later is given back at once.
	closed bool
	// failed is why the session failed closed (failClosed); empty while
	// it has not.
	failed string
}

// New returns a Filter for one session.
func New(opt Options) *Filter {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Filter{
		opt:            opt,
		log:            log,
		buf:            make([]byte, bufSize),
		serverHello:    make(chan struct{}),
		clientHello:    make(chan struct{}),
		serverFeatures: make(chan struct{}),
		done:           make(chan struct{}),
		stop:           make(chan struct{}),
		inject:         opt.Protocol == policy.ProtocolWorker && !opt.Policy.Limits.IsZero(),
		limitsSet:      make(chan struct{}),
		trustKnown:     make(chan struct{}),
	}
	return f
}

// Attach starts filtering what the client sends on client and returns
// the read end of the pipe that must be Nix's stdin (the caller gives it
// to Nix and closes its own copy) and the writer Nix's stdout must write
// to; Nix's replies go on to clientOut.
func (f *Filter) Attach(client io.Reader, clientOut io.Writer) (nixStdin *os.File, nixStdout io.Writer, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, errorf("%w", err)
	}
	growPipe(w)
	f.nixPipe = w
	f.nixDirect = countingWriter{w, &f.nixBytes}
	f.nix = bufio.NewWriterSize(f.nixDirect, bufSize)
	f.in = &aheadReader{r: client}
	f.req = newReader(flushingReader{f.in, f})
	f.req.out = io.Discard
	f.reply = &replyWriter{f: f, w: clientOut}
	if f.opt.Protocol == policy.ProtocolWorker {
		f.reply.track = newReplies(f)
	}
	go f.run()
	return r, f.reply, nil
}

// Live is what a running session is doing, for nixgate status.
type Live struct {
	// Building are the derivations of the build operation Nix is
	// working on, since BuildStarted; nil when none.
	Building     []string
	BuildStarted time.Time
	// BytesToNix and BytesFromNix are what passed so far.
	BytesToNix, BytesFromNix uint64
}

// Live returns what the session is doing now. It may be called at any
// time from any goroutine.
func (f *Filter) Live() Live {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Live{Building: f.buildingDrvs, BuildStarted: f.building, BytesToNix: f.nixBytes.Load(), BytesFromNix: f.replyBytes.Load()}
}

// NixStderr returns the writer Nix's stderr must write to, which
// passes it on to w, the client's stderr: in a serve-protocol session
// with Options.BuildLog, what reaches the client while a build operation
// runs is that build's log, given to BuildLog for each of its
// derivations. Otherwise it is w.
func (f *Filter) NixStderr(w io.Writer) io.Writer {
	if f.opt.BuildLog == nil || f.opt.Protocol != policy.ProtocolServe {
		return w
	}
	return &buildLogWriter{f: f, w: w}
}

// buildLogWriter is NixStderr's writer.
type buildLogWriter struct {
	f *Filter
	w io.Writer
}

func (b *buildLogWriter) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	if n > 0 {
		b.f.mu.Lock()
		drvs := b.f.buildingDrvs
		b.f.mu.Unlock()
		for _, drv := range drvs {
			b.f.opt.BuildLog(drv, p[:n])
		}
	}
	return n, err
}

// countingWriter adds what it writes to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// flushingReader is the client's stream, read only when the filter has
// nothing of it left: first Nix gets everything passed so far.
type flushingReader struct {
	r io.Reader
	f *Filter
}

func (fr flushingReader) Read(p []byte) (int, error) {
	if fr.f.bulk != nil {
		if err := fr.f.bulk.Flush(); err != nil {
			return 0, err
		}
	}
	if err := fr.f.nix.Flush(); err != nil {
		return 0, err
	}
	return fr.r.Read(p)
}

// Close stops the filter after Nix has exited: nothing more is passed to
// Nix, and nothing waits for Nix any more.
func (f *Filter) Close() {
	f.stopOnce.Do(func() {
		close(f.stop)
		f.reply.flush()
		if f.reply.track != nil {
			f.reply.track.close()
		}
	})
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.releaseSlot()
	f.nixPipe.Close()
}

// nixGone reports whether err says Nix is no longer reading.
func nixGone(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EPIPE)
}

// Done is closed when the client's stream has ended, cleanly or not.
func (f *Filter) Done() <-chan struct{} { return f.done }

// Result returns what the session moved so far and, once Done is closed,
// why the client's stream ended: nil for a clean end at an operation
// boundary, an error wrapping ErrRefused or ErrProtocol, or the read
// error.
func (f *Filter) Result() (Audit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.audit.clone()
	if !f.building.IsZero() {
		a.BuildTime += time.Since(f.building)
	}
	a.BytesToNix = f.nixBytes.Load()
	a.Version = versionString(f.opt.Protocol, f.version)
	a.Features = f.features
	if f.failed != "" && (f.err == nil || errors.Is(f.err, ErrRefused)) {
		// (A client that left mid-payload is that, not a refusal.)
		return a, errorf("%w: %s", ErrRefused, f.failed)
	}
	return a, f.err
}

// hasFailed reports whether the session failed closed.
func (f *Filter) hasFailed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed != ""
}

// failClosed ends the session when nixgate can no longer be sure what
// Nix reads or what it answers: Nix's stdin is closed, so Nix gets
// nothing more than what is in the pipe already (what keeps that in
// step is nixgate's own framing, firstFrame), and exits; the client is
// told why. The first reason stands.
func (f *Filter) failClosed(reason string) {
	f.mu.Lock()
	first := f.failed == ""
	if first {
		f.failed = reason
	}
	f.mu.Unlock()
	if !first {
		return
	}
	f.log.Warn("session ended", "reason", reason)
	f.tell(reason)
	if f.reply.track != nil {
		f.reply.track.wake()
	}
	f.nixPipe.Close()
}

func (f *Filter) run() {
	var err error
	switch f.opt.Protocol {
	case policy.ProtocolWorker:
		err = f.runWorker()
	case policy.ProtocolServe:
		err = f.runServe()
	default:
		err = f.refuseSession("no Nix protocol to filter")
	}
	if errors.Is(err, io.ErrClosedPipe) || nixGone(err) {
		err = nil // Nix went away first: its exit says what happened
	}
	if err != nil && !errors.Is(err, ErrRefused) {
		f.log.Warn("client stream ended in error", "error", err.Error())
		if errors.Is(err, ErrProtocol) {
			f.tell(policy.Line(err))
			err = errorf("%w: %w", ErrRefused, err)
		}
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	// The build slot stays held: Nix may still be building (Close).
	f.closeHello()
	f.nix.Flush()
	f.nixPipe.Close()
	close(f.done)
}

// closeHello releases the reply side when the request side ends before
// settling the version.
func (f *Filter) closeHello() {
	select {
	case <-f.clientHello:
	default:
		close(f.clientHello)
	}
}

// toNix passes bytes to Nix.
func (f *Filter) toNix(b []byte) error {
	_, err := f.nix.Write(b)
	return err
}

// tell writes one line for the client on its stderr.
func (f *Filter) tell(msg string) {
	if f.opt.Stderr != nil {
		fmt.Fprintln(f.opt.Stderr, "nixgate: "+msg)
	}
}

// refuseSession ends the session with one line on the client's stderr.
func (f *Filter) refuseSession(msg string) error {
	f.tell(msg)
	f.log.Warn("session refused", "reason", msg)
	return errorf("%w: %s", ErrRefused, msg)
}

// waitServerHello waits for Nix's hello; false when the filter stopped
// first.
func (f *Filter) waitServerHello() bool {
	if f.nix.Flush() != nil {
		return false
	}
	select {
	case <-f.serverHello:
		return f.serverVersion != 0
	case <-f.stop:
		return false
	}
}

// decide asks the policy about one operation and records the answer.
func (f *Filter) decide(o *op) policy.OpVerdict {
	v := f.opt.Policy.Decide(o.req)
	name := policy.OpName(f.opt.Protocol, o.req.Code)
	// In the policy's words: "key K (role R) why: Op refused".
	refuse := func(why string) policy.OpVerdict {
		return policy.OpVerdict{Reason: fmt.Sprintf("key %q (role %s) %s: %s refused", f.opt.Policy.Key, f.opt.Policy.Role, why, name)}
	}
	if o.invalid != "" && v.Allow {
		v = refuse(o.invalid)
	}
	if o.needsTrust && v.Allow && !f.nixTrusts() {
		// Before 1.35 Nix does not say whether it trusts the client,
		// so nixgate cannot be sure.
		v = refuse("cannot be sure Nix reads the log: Nix refuses a client it does not trust without reading it, and has not said it trusts this one (it says so from worker protocol 1.35)")
	}
	if f.opt.Observe != nil {
		f.opt.Observe(name, v.Allow)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.audit.Ops == nil {
		f.audit.Ops = map[string]int{}
	}
	if !v.Allow {
		f.audit.Refused = appendCapped(f.audit.Refused, name)
		f.audit.RefusedCount++
		f.log.Warn("operation refused", "op", name, "reason", v.Reason)
		return v
	}
	f.audit.Ops[name]++
	if len(v.Dropped) > 0 {
		f.audit.DroppedSettings = append(f.audit.DroppedSettings, v.Dropped...)
		f.log.Warn("settings dropped", "op", name, "settings", v.Dropped)
	}
	if v.NoSubstitute {
		f.log.Info("substitute flag cleared", "op", name)
	}
	return v
}

// record adds what an allowed operation moved to the audit.
func (f *Filter) record(o *op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.audit.Imported.add(o.imported, o.importedBytes)
	f.audit.Built.add(o.built, 0)
	f.audit.Read.add(o.read, 0)
	if len(o.built) > 0 {
		f.audit.Builds++
	}
}

// sent notes that o is about to be passed to Nix: a build's time starts,
// and Nix's answer is awaited.
func (f *Filter) sent(o *op) {
	if len(o.built) > 0 {
		o.buildStart = time.Now()
		f.mu.Lock()
		f.building = o.buildStart
		f.buildingDrvs = o.drvs()
		f.mu.Unlock()
	}
	if f.reply.track != nil {
		f.reply.track.expect(o, f.nix.Flush)
	}
}

// attributeReplies counts the bytes Nix sent since the last call as read
// by the operation before, when it reads store contents, and a build's
// time until now, in a session whose answers nixgate does not follow
// (the serve protocol): its client sent the next operation, or ended.
func (f *Filter) attributeReplies(prev *op, mark *uint64) {
	if f.reply.track != nil {
		return // replies.answered counts them
	}
	now := f.replyBytes.Load()
	if prev != nil && prev.readsContents {
		f.mu.Lock()
		f.audit.Read.Bytes += now - *mark
		f.mu.Unlock()
	}
	if prev != nil && !prev.buildStart.IsZero() {
		f.mu.Lock()
		f.audit.BuildTime += time.Since(prev.buildStart)
		f.building = time.Time{}
		f.buildingDrvs = nil
		f.mu.Unlock()
	}
	*mark = now
}

// The trust a worker hello reports (1.35): Nix's daemon sends
// trustNot only when it does not trust the client; trustUnknown when it
// does and its own store did not say.
const (
	trustUnknown = 0
	trustTrusted = 1
	trustNot     = 2
)

// setTrust records whether Nix said it trusts the client. The first
// answer stands.
func (f *Filter) setTrust(trusted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.trustKnown:
		return
	default:
	}
	f.trusted = trusted
	close(f.trustKnown)
}

// trustWait bounds how long an operation that needs Nix's trust waits
// for the end of Nix's hello, which Nix sends at once.
const trustWait = 30 * time.Second

// nixTrusts waits (up to trustWait) until the reply side knows whether Nix trusts the
// client and reports whether Nix said so; false when Nix did not say
// (before 1.35) or the session ended first.
func (f *Filter) nixTrusts() bool {
	f.nix.Flush()
	t := time.NewTimer(trustWait)
	defer t.Stop()
	select {
	case <-f.trustKnown:
	case <-f.stop:
		return false
	case <-t.C:
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trusted
}

// settleLimits records Nix's answer to the SetOptions that puts the
// key's build limits on the session: why builds are to be refused, or
// empty when the limits hold. The first answer stands.
func (f *Filter) settleLimits(why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.limitsSet:
		return
	default:
	}
	f.limitsErr = why
	close(f.limitsSet)
}

// limitsInForce waits, before o builds in a session that starts with
// nixgate's own SetOptions, until Nix has answered it; the error is the
// reason to refuse o with when the key's build limits may not hold.
func (f *Filter) limitsInForce(o *op) error {
	if !f.inject || len(o.built) == 0 {
		return nil
	}
	f.nix.Flush() // a failure shows when o is passed on
	var why string
	select {
	case <-f.limitsSet:
		f.mu.Lock()
		why = f.limitsErr
		f.mu.Unlock()
	case <-f.stop:
		why = "the session ended"
	}
	if why == "" {
		return nil
	}
	name := policy.OpName(f.opt.Protocol, o.req.Code)
	f.mu.Lock()
	f.audit.Refused = appendCapped(f.audit.Refused, name)
	f.audit.RefusedCount++
	f.mu.Unlock()
	f.log.Warn("operation refused", "op", name, "reason", why)
	return errors.New(why)
}

// acquireSlot waits for a build slot for o, when o builds,
// Options.AcquireBuild is set and the session holds none yet, and holds
// it until Close; the error is the reason to refuse o with.
func (f *Filter) acquireSlot(o *op) error {
	if len(o.built) == 0 || f.opt.AcquireBuild == nil {
		return nil
	}
	f.mu.Lock()
	held := f.slot != nil
	f.mu.Unlock()
	if held {
		return nil // Nix builds the session's operations one at a time
	}
	start := time.Now()
	// While the build waits, the client's stream is read ahead: a client
	// that has closed its end (a Nix that died and left its ssh behind)
	// gives up its place in the queue then, not at the queue timeout.
	ended := f.in.watchEnd()
	stop, waited := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-f.stop:
		case <-ended:
		case <-waited:
			return
		}
		close(stop)
	}()
	release, err := f.opt.AcquireBuild(stop)
	close(waited)
	f.in.stopAhead()
	wait := time.Since(start)
	if err != nil {
		select {
		case <-ended:
			err = errorf("the client closed its end while its build waited for a slot")
		default:
		}
	}
	// A slot granted as the client's stream ended is kept: a client may
	// send its build and close its end at once (the build then runs, as
	// when a slot was free), and the slot goes back when Nix exits.
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.closed {
		// Granted as Nix exited: nothing is to be built.
		release()
		err = errorf("the session ended while waiting for a build slot")
	}
	f.audit.SlotWait += wait
	if err != nil {
		name := policy.OpName(f.opt.Protocol, o.req.Code)
		f.audit.Refused = appendCapped(f.audit.Refused, name)
		f.audit.RefusedCount++
		f.log.Warn("operation refused", "op", name, "reason", policy.Line(err), "slot_wait", wait.String())
		return err
	}
	f.slot = release
	return nil
}

// releaseSlot gives back the build slot held, if any.
func (f *Filter) releaseSlot() {
	f.mu.Lock()
	release := f.slot
	f.slot = nil
	f.mu.Unlock()
	if release != nil {
		release()
	}
}

// replyWriter is Nix's stdout: it reads Nix's hello, lowering its
// version, then passes everything to the client, taking turns with the
// errors nixgate answers itself.
type replyWriter struct {
	f *Filter
	// mu is held while writing to w (and see replies.answered).
	mu sync.Mutex
	w  io.Writer

	// helloMu guards the hello state; Write holds it while it reads the
	// hello.
	helloMu   sync.Mutex
	hello     []byte
	helloDone bool
	phase     int

	// track follows Nix's answers once the hello is read, in a worker
	// session whose hello nixgate understood; nil passes them on as
	// they come.
	track *replies
}

func (rw *replyWriter) Write(p []byte) (int, error) {
	rw.helloMu.Lock()
	if !rw.helloDone {
		defer rw.helloMu.Unlock()
		out, err := rw.readHello(p)
		if err != nil {
			return 0, err
		}
		if len(out) > 0 {
			if err := rw.pass(out); err != nil {
				return 0, err
			}
		}
		if rw.helloDone && rw.track != nil {
			if err := rw.track.helloPassed(); err != nil {
				return 0, err
			}
			// What follows the hello: Nix's first answers.
			return len(p), rw.track.feed(rw.takeHello())
		}
		return len(p), nil
	}
	rw.helloMu.Unlock()
	if rw.track != nil {
		return len(p), rw.track.feed(p)
	}
	return len(p), rw.pass(p)
}

// ReadFrom copies Nix's stdout in large pieces (exec.Cmd's copy uses
// it), so that a NAR flows with few system calls.
func (rw *replyWriter) ReadFrom(src io.Reader) (int64, error) {
	return readFromAdaptive(rw, src)
}

// flush passes on what Nix wrote that was held as the start of a hello
// that never came whole, when Nix has exited.
func (rw *replyWriter) flush() {
	rw.helloMu.Lock()
	defer rw.helloMu.Unlock()
	if !rw.helloDone {
		rw.finishHello()
		if b := rw.takeHello(); len(b) > 0 {
			rw.pass(b)
		}
	}
}

// pass writes p to the client, in the hello and in a session whose
// answers nixgate does not follow.
func (rw *replyWriter) pass(p []byte) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	_, err := rw.w.Write(p)
	rw.f.replyBytes.Add(uint64(len(p)))
	return err
}

func appendCapped(list []string, s string) []string {
	if len(list) >= MaxAuditPaths {
		return list
	}
	return append(list, s)
}
