package nixproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// The worker protocol (nix-daemon --stdio), as Nix's
// worker-protocol.hh, worker-protocol-connection.cc and daemon.cc and
// Lix's equivalents define it.
const (
	WorkerMagicClient = 0x6e697863
	WorkerMagicServer = 0x6478696f

	// WorkerMinVersion is the oldest client version nixgate filters:
	// from 1.23 on, every NAR a client sends is framed or parseable.
	WorkerMinVersion = 1<<8 | 23
	// WorkerMaxVersion is the newest version nixgate understands; both
	// hellos are lowered to it.
	WorkerMaxVersion = 1<<8 | 38

	stderrLast  = 0x616c7473
	stderrError = 0x63787470
)

// The worker protocol features (1.38 and later) nixgate understands; the
// others are removed from both hellos, so the session does without them.
const (
	FeatureRealisationWithPath = "realisation-with-path-not-hash"
	FeatureDeleteDeadReferrers = "delete-dead-specific-referrers"
)

var knownFeatures = []string{FeatureRealisationWithPath, FeatureDeleteDeadReferrers}

func minor(v uint64) uint64 { return v & 0xff }

// WorkerError returns the bytes of a worker-protocol error message
// carrying msg, in the form a client of version speaks: the structured
// error from 1.26, a message and status before.
func WorkerError(version uint64, msg string) []byte {
	b := appendU64(nil, stderrError)
	if minor(version) >= 26 {
		b = appendString(b, "Error")
		b = appendU64(b, 0) // lvlError
		b = appendString(b, "Error")
		b = appendString(b, msg)
		b = appendU64(b, 0) // no position
		b = appendU64(b, 0) // no traces
		return b
	}
	b = appendString(b, msg)
	return appendU64(b, 1)
}

func (f *Filter) hasFeature(name string) bool { return slices.Contains(f.features, name) }

func (f *Filter) runWorker() error {
	r := f.req
	cv, err := f.readClientHello(workerHelloSpec)
	if err != nil || cv == 0 {
		return err
	}
	cv = min(cv, WorkerMaxVersion)
	f.mu.Lock()
	f.version = min(cv, f.serverVersion, WorkerMaxVersion)
	f.mu.Unlock()
	close(f.clientHello)
	if err := f.toNix(appendU64(nil, cv)); err != nil {
		return err
	}
	if minor(f.version) >= 38 {
		r.startOp()
		feats, err := r.strs()
		if err != nil {
			return err
		}
		f.clientFeatures = understood(feats)
		if err := f.toNix(appendStrings(nil, f.clientFeatures)); err != nil {
			return err
		}
		if err := f.nix.Flush(); err != nil {
			return err
		}
		select {
		case <-f.serverFeatures:
		case <-f.stop:
			return io.ErrClosedPipe
		}
		f.mu.Lock()
		f.features = intersect(f.clientFeatures, f.serverFeatureSet)
		f.mu.Unlock()
	}
	// CPU affinity (1.14) and reserveSpace (1.11), both obsolete.
	r.startOp()
	if affinity, err := r.bool(); err != nil {
		return err
	} else if affinity {
		if _, err := r.u64(); err != nil {
			return err
		}
	}
	if _, err := r.u64(); err != nil {
		return err
	}
	if err := f.toNix(r.raw); err != nil {
		return err
	}
	if f.inject {
		// The key's build limits, before anything of the client's.
		if err := f.toNix(sessionOptions(f.opt.Policy.Limits)); err != nil {
			return err
		}
		if err := f.nix.Flush(); err != nil {
			return err
		}
	}
	return f.ops(f.workerOp, f.refuseWorkerOp)
}

// refuseWorkerOp answers a refused operation with an error the client
// prints; the session goes on.
func (f *Filter) refuseWorkerOp(o *op, reason string) error {
	return f.reply.track.refuse(WorkerError(f.version, "nixgate: "+reason), f.nix.Flush)
}

func handshakeEOF(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil // the client left during the hello
	}
	return err
}

// helloSpec is what readClientHello needs of a protocol.
type helloSpec struct {
	magic         uint64 // the client's
	major         uint64
	min           uint64 // the oldest version nixgate filters
	name, program string // "worker", "nix-daemon --stdio"
	oldest        string // the oldest Nix that speaks min
	nix           string // what answers: "Nix", "nix-store --serve"
}

var (
	workerHelloSpec = helloSpec{magic: WorkerMagicClient, major: 1, min: WorkerMinVersion, name: "worker", program: "nix-daemon --stdio", oldest: "Nix 2.4", nix: "Nix"}
	serveHelloSpec  = helloSpec{magic: ServeMagicClient, major: 2, min: ServeMinVersion, name: "serve", program: "nix-store --serve", oldest: "Nix 2.3", nix: "nix-store --serve"}
)

// readClientHello reads the client's magic, which it passes on at once
// (Lix sends its version only after it has read Nix's hello), and its
// version; waits for Nix's hello; and checks both versions against h. It
// returns the client's version, or 0 when the session ends (with the
// error that says why, nil for a client that left).
func (f *Filter) readClientHello(h helloSpec) (uint64, error) {
	r := f.req
	r.startOp()
	magic, err := r.u64()
	if err != nil {
		return 0, handshakeEOF(err)
	}
	if magic != h.magic {
		return 0, f.refuseSession("the client did not open the " + h.name + " protocol (" + h.program + ")")
	}
	if err := f.toNix(r.raw); err != nil {
		return 0, err
	}
	r.startOp()
	cv, err := r.u64()
	if err != nil {
		return 0, handshakeEOF(err)
	}
	if !f.waitServerHello() {
		return 0, f.refuseSession(h.nix + " did not answer the " + h.name + " protocol hello")
	}
	if cv>>8 != h.major || cv < h.min {
		return 0, f.refuseSession(fmt.Sprintf("the client speaks %s protocol %s; nixgate needs %s or later (%s or later)", h.name, versionString(0, cv), versionString(0, h.min), h.oldest))
	}
	if f.serverVersion < h.min {
		return 0, f.refuseSession(fmt.Sprintf("the builder's %s speaks %s protocol %s; nixgate needs %s or later", h.nix, h.name, versionString(0, f.serverVersion), versionString(0, h.min)))
	}
	return cv, nil
}

// understood keeps the features nixgate understands.
func understood(feats []string) []string {
	var out []string
	for _, f := range feats {
		if slices.Contains(knownFeatures, f) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// workerOp reads the arguments of worker operation code and says what
// follows them.
func (f *Filter) workerOp(code uint64) (*op, error) {
	r := f.req
	o := &op{req: policy.OpRequest{Protocol: policy.ProtocolWorker, Code: code}, substituteAt: -1, settingsAt: -1, optionsAt: -1}
	var err error
	v := f.version
	// bad records the first reason the op's arguments are refused.
	bad := func(why string) {
		if o.invalid == "" {
			o.invalid = why
		}
	}
	str := func(dst *string) {
		if err == nil {
			*dst, err = r.str()
		}
	}
	// skipStr reads past a string Nix does not read as a store path.
	skipStr := func() {
		if err == nil {
			_, err = r.str()
		}
	}
	skipStrs := func() {
		if err == nil {
			_, err = r.strs()
		}
	}
	// path reads a store path, which must be in canonical form (Nix
	// would clean any other, so that what nixgate judged is not what
	// Nix reads), and adds it to list.
	path := func(list *[]string) {
		var p string
		if str(&p); err == nil {
			if !validStorePath(p) {
				bad("sent " + quoteShort(p) + ", not a store path in canonical form")
			}
			if list != nil {
				*list = append(*list, p)
			}
		}
	}
	// optPath reads a store path or nothing (an empty string).
	optPath := func() {
		var p string
		if str(&p); err == nil && p != "" && !validStorePath(p) {
			bad("sent " + quoteShort(p) + ", not a store path in canonical form")
		}
	}
	paths := func(list *[]string) {
		if err != nil {
			return
		}
		var ps []string
		if ps, err = r.strs(); err == nil {
			for _, p := range ps {
				if !validStorePath(p) {
					bad("sent " + quoteShort(p) + ", not a store path in canonical form")
				}
			}
			if list != nil {
				*list = append(*list, ps...)
			}
		}
	}
	// derivedPaths reads the paths of BuildPaths, BuildPathsWithResults
	// and QueryMissing: store paths, or derivations with outputs.
	derivedPaths := func(list *[]string) {
		if err != nil {
			return
		}
		var ps []string
		if ps, err = r.strs(); err == nil {
			for _, p := range ps {
				if why := checkDerivedPath(p, minor(v) < 30); why != "" {
					bad(why)
				}
			}
			if list != nil {
				*list = append(*list, ps...)
			}
		}
	}
	u64s := func(n int) {
		if err == nil {
			err = r.skipU64s(n)
		}
	}
	flag := func() {
		if err == nil {
			_, err = r.bool()
		}
	}
	// mode reads a build mode: normal, repair or check.
	mode := func() {
		if err != nil {
			return
		}
		var m uint64
		if m, err = r.u64(); err == nil {
			o.req.Repair = m == buildModeRepair
			if m > buildModeCheck {
				// Nix 2.8 takes any number (and builds); 2.23 and
				// later refuse all but these three.
				bad(fmt.Sprintf("sent build mode %d, not 0 (normal), 1 (repair) or 2 (check)", m))
			}
		}
	}
	switch code {
	case 1, 3, 4, 5, 6, 11, 18, 21, 22, 26, 28, 33, 41:
		// IsValidPath, HasSubstitutes, QueryPathHash, QueryReferences,
		// QueryReferrers, AddTempRoot, QueryDeriver,
		// QuerySubstitutablePathInfo, QueryDerivationOutputs,
		// QueryPathInfo, QueryDerivationOutputNames, QueryValidDerivers,
		// QueryDerivationOutputMap: one path.
		path(nil)
	case 29: // QueryPathFromHashPart: a hash part, not a path
		skipStr()
	case 38: // NarFromPath
		path(&o.read)
		o.readsContents = true
	case 10: // EnsurePath
		path(nil)
		o.req.Opaque = true
	case 13, 14, 23, 34: // SyncWithGC, FindRoots, QueryAllValidPaths, OptimiseStore
	case 16: // ExportPath: path, sign
		path(&o.read)
		flag()
		o.readsContents = true
	case 31: // QueryValidPaths
		paths(nil)
		if err == nil && minor(v) >= 27 {
			o.substituteAt = len(r.raw)
			o.req.Substitute, err = r.bool()
		}
	case 32: // QuerySubstitutablePaths
		paths(nil)
	case 30: // QuerySubstitutablePathInfos: path → content address
		var n uint64
		if n, err = r.count(16); err == nil {
			for i := uint64(0); i < n && err == nil; i++ {
				path(nil)
				skipStr() // content address
			}
		}
	case 40: // QueryMissing
		derivedPaths(nil)
	case 9, 46: // BuildPaths, BuildPathsWithResults: derived paths, mode
		derivedPaths(&o.built)
		if o.req.Opaque = err == nil && opaque(o.built, v); o.req.Opaque {
			o.built = nil // nothing is built: Nix makes sure they are valid
		}
		mode()
		if code == 46 && minor(v) < 34 {
			// Nix 2.8 answers it in the form of 1.34 whatever the
			// version, which nixgate could not follow; no client sends
			// it earlier.
			bad("sent BuildPathsWithResults, an operation of worker protocol 1.34 and later, at " + versionString(policy.ProtocolWorker, v))
		}
	case 36: // BuildDerivation: drv path, derivation, mode
		var drv string
		if str(&drv); err == nil {
			if !validStorePath(drv) || !strings.HasSuffix(drv, ".drv") {
				// Nix 2.8 aborts on it.
				bad("sent " + quoteShort(drv) + " to build, not a derivation")
			}
			o.built = append(o.built, drv)
			var outs []string
			var why string
			outs, why, err = readDerivation(r)
			if why != "" {
				bad(why)
			}
			o.built = append(o.built, outs...)
		}
		mode()
	case 7: // AddToStore
		if minor(v) >= 25 {
			var name, method string
			var refs []string
			if name, err = r.str(); err == nil {
				o.imported = append(o.imported, name)
			}
			str(&method)
			paths(&refs)
			if err == nil {
				o.req.Repair, err = r.bool()
			}
			bad(checkAddToStore(name, method, refs))
			o.payload = f.framedImport(o)
		} else {
			var name string
			if name, err = r.str(); err == nil {
				o.imported = append(o.imported, name)
			}
			u64s(2)   // fixed, recursive
			skipStr() // hash algorithm
			// Nix reads this NAR after it starts answering, and stops
			// where it finds fault: no released Nix speaks 1.23 or
			// 1.24, so nixgate need not follow.
			bad("cannot keep in step with Nix here: before worker protocol 1.25 Nix reads the NAR after it starts answering (no released Nix speaks 1.23 or 1.24)")
			o.payload = func() error {
				n, err := src{r: tee{r.br, r.out}, buf: f.buf}.nar()
				o.importedBytes += n
				return err
			}
		}
	case 8: // AddTextToStore: name, text, references
		var name string
		if str(&name); err == nil {
			o.imported = append(o.imported, name)
			if !validName(name) {
				bad("sent a name that is not a store path name, " + quoteShort(name))
			}
		}
		skipStr() // the text
		paths(nil)
	case 39: // AddToStoreNar
		path(&o.imported)
		optPath()  // deriver
		skipStr()  // NAR hash
		paths(nil) // references
		u64s(3)    // registration time, NAR size, ultimate
		skipStrs() // signatures
		skipStr()  // content address
		if err == nil {
			o.req.Repair, err = r.bool()
		}
		flag() // dontCheckSigs
		o.payload = f.framedImport(o)
	case 44: // AddMultipleToStore: repair, dontCheckSigs, framed paths
		if err == nil {
			o.req.Repair, err = r.bool()
		}
		flag() // dontCheckSigs
		o.payload = f.framedMultiple(o)
	case 45: // AddBuildLog: path, framed log
		var p string
		str(&p)
		switch {
		case err != nil:
		case !validBaseName(p) || !strings.HasSuffix(p, ".drv"):
			// Nix reads the derivation's base name; Nix 2.26 and 2.34
			// abort on a log for a path that is not a derivation.
			bad("sent a path that is not the base name of a derivation")
		default:
			// Nix refuses an untrusted client after it starts answering
			// and before it reads the log (decide asks nixTrusts).
			o.needsTrust = true
		}
		o.payload = f.framedImport(nil)
	case 43: // QueryRealisation
		bad(argsAfterStartWork)
		skipStr()
		if f.hasFeature(FeatureRealisationWithPath) {
			skipStr()
		}
	case 42: // RegisterDrvOutput
		bad(argsAfterStartWork)
		if f.hasFeature(FeatureRealisationWithPath) {
			skipStr()  // drv path
			skipStr()  // output name
			skipStr()  // output path
			skipStrs() // signatures
		} else if minor(v) < 31 {
			skipStr() // drv output id
			skipStr() // output path
		} else {
			skipStr() // realisation as JSON
		}
	case 12: // AddIndirectRoot: a path outside the store
		skipStr()
	case 47: // AddPermRoot: store path, a path outside the store
		path(nil)
		skipStr()
	case 37: // AddSignatures: path, signatures
		path(nil)
		skipStrs()
	case 35: // VerifyStore: check contents, repair
		flag()
		if err == nil {
			o.req.Repair, err = r.bool()
		}
	case 20: // CollectGarbage
		u64s(1) // action
		if f.hasFeature(FeatureDeleteDeadReferrers) {
			var whole bool
			if whole, err = r.bool(); err == nil && !whole {
				paths(nil)
				u64s(1)
			}
		} else {
			paths(nil)
		}
		flag()  // ignoreLiveness
		u64s(4) // maxFreed, three obsolete
	case 19: // SetOptions
		u64s(12)
		if err == nil {
			o.settingsAt = len(r.raw)
			var n uint64
			if n, err = r.count(32); err == nil {
				for i := uint64(0); i < n && err == nil; i++ {
					var s policy.Setting
					if s.Name, err = r.str(); err == nil {
						s.Value, err = r.str()
					}
					o.req.Settings = append(o.req.Settings, s)
				}
			}
		}
	default:
		return nil, errUnknownOp
	}
	return o, err
}

var errUnknownOp = errorf("unknown operation")

// argsAfterStartWork is why RegisterDrvOutput and QueryRealisation are
// refused: Nix reads their arguments after it starts answering (and Nix
// 2.35 refuses them there, unread, without the realisation feature), so
// a client could have Nix read an argument as its next operation. Both
// serve the experimental content-addressed derivations; Lix has dropped
// them.
const argsAfterStartWork = "cannot keep in step with Nix here: Nix reads the arguments after it starts answering, where an error leaves them to be read as operations (experimental content-addressed derivations)"

// opaque reports whether every derived path names a store path rather
// than outputs of a derivation: "drv!out" is an output; before 1.30
// (StorePathWithOutputs) a bare .drv path meant all its outputs too.
func opaque(paths []string, version uint64) bool {
	for _, p := range paths {
		if strings.Contains(p, "!") || (minor(version) < 30 && strings.HasSuffix(p, ".drv")) {
			return false
		}
	}
	return true
}

// The build modes of BuildPaths, BuildPathsWithResults and
// BuildDerivation.
const (
	buildModeRepair = 1
	buildModeCheck  = 2
)

// readDerivation reads a BasicDerivation and returns its output paths
// and, when Nix could read a store path in it other than as sent, why
// it is refused.
func readDerivation(r *reader) (outs []string, invalid string, err error) {
	bad := func(why string) {
		if invalid == "" {
			invalid = why
		}
	}
	n, err := r.count(32)
	if err != nil {
		return nil, "", err
	}
	for i := uint64(0); i < n; i++ {
		name, err := r.str()
		if err != nil {
			return nil, "", err
		}
		if !validName(name) {
			bad("sent output name " + quoteShort(name) + ", not one Nix takes")
		}
		p, err := r.str()
		if err != nil {
			return nil, "", err
		}
		if p != "" {
			if !validStorePath(p) {
				bad("sent output path " + quoteShort(p) + ", not a store path in canonical form")
			}
			outs = append(outs, p)
		}
		if _, err := r.str(); err != nil { // hash algorithm
			return nil, "", err
		}
		if _, err := r.str(); err != nil { // hash
			return nil, "", err
		}
	}
	srcs, err := r.strs() // input sources
	if err != nil {
		return nil, "", err
	}
	for _, p := range srcs {
		if !validStorePath(p) {
			bad("sent input source " + quoteShort(p) + ", not a store path in canonical form")
		}
	}
	if _, err := r.str(); err != nil { // platform
		return nil, "", err
	}
	if _, err := r.str(); err != nil { // builder
		return nil, "", err
	}
	if _, err := r.strs(); err != nil { // args
		return nil, "", err
	}
	if n, err = r.count(16); err != nil { // environment
		return nil, "", err
	}
	for i := uint64(0); i < n; i++ {
		if _, err := r.str(); err != nil {
			return nil, "", err
		}
		if _, err := r.str(); err != nil {
			return nil, "", err
		}
	}
	return outs, invalid, nil
}

// reframed runs the copy of a framed payload: the client's frames are
// read by fr, and what their contents pass on is framed again toward Nix
// by a frameWriter.
func (f *Filter) reframed(copy func(fr *frames) error) error {
	r := f.req
	out := r.out
	fw := &frameWriter{w: out}
	r.out = fw
	err := copy(&frames{r: r})
	r.out = out
	if err != nil {
		return err
	}
	return fw.end()
}

// framedImport streams framed data, counting its bytes as imported by o
// (nil: not an import).
func (f *Filter) framedImport(o *op) func() error {
	return func() error {
		return f.reframed(func(fr *frames) error {
			err := fr.drain()
			if o != nil {
				o.importedBytes += fr.n
			}
			return err
		})
	}
}

// framedMultiple streams AddMultipleToStore's framed data, reading the
// path infos inside to audit them.
func (f *Filter) framedMultiple(o *op) func() error {
	return func() error {
		return f.reframed(func(fr *frames) error {
			err := readMultiple(src{r: fr, buf: f.buf}, o)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrProtocol) {
				return err
			}
			// Nix judges what is inside the frames (and drains them
			// when it fails); nixgate only needs their end.
			derr := fr.drain()
			o.importedBytes += fr.n
			return derr
		})
	}
}

// readMultiple reads the contents of AddMultipleToStore's frames: a
// count, then each path's info and NAR.
func readMultiple(s src, o *op) error {
	n, err := s.u64()
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		p, err := s.str(MaxStringLen)
		if err != nil {
			return err
		}
		o.imported = append(o.imported, p)
		if _, err := s.str(MaxStringLen); err != nil { // deriver
			return err
		}
		if _, err := s.str(MaxStringLen); err != nil { // NAR hash
			return err
		}
		if _, err := s.strs(MaxStringLen); err != nil { // references
			return err
		}
		if _, err := s.u64(); err != nil { // registration time
			return err
		}
		size, err := s.u64()
		if err != nil {
			return err
		}
		if _, err := s.u64(); err != nil { // ultimate
			return err
		}
		if _, err := s.strs(MaxStringLen); err != nil { // signatures
			return err
		}
		if _, err := s.str(MaxStringLen); err != nil { // content address
			return err
		}
		if err := s.skip(size); err != nil {
			return err
		}
	}
	return nil
}

// readWorkerHello reads Nix's side of the worker hello from what Nix has
// written so far, and returns the bytes to pass to the client.
func (rw *replyWriter) readWorkerHello(p []byte) ([]byte, error) {
	f := rw.f
	rw.hello = append(rw.hello, p...)
	var out []byte
	if rw.phase == 0 {
		if len(rw.hello) < 16 {
			return nil, nil
		}
		magic := binary.LittleEndian.Uint64(rw.hello)
		sv := binary.LittleEndian.Uint64(rw.hello[8:])
		if magic != WorkerMagicServer || sv>>8 != 1 {
			rw.finishHello()
			close(f.serverHello)
			return rw.takeHello(), nil
		}
		f.serverVersion = sv
		close(f.serverHello)
		out = appendU64(appendU64(out, magic), min(sv, WorkerMaxVersion))
		rw.hello = rw.hello[16:]
		rw.phase = 1
		// Pass the hello on before waiting: Lix sends its version only
		// after it has read Nix's.
		if err := rw.pass(out); err != nil {
			return nil, err
		}
		out = nil
	}
	if rw.phase == 1 {
		select {
		case <-f.clientHello:
		case <-f.stop:
			rw.finishHello()
			return rw.takeHello(), nil
		}
		f.mu.Lock()
		v := f.version
		f.mu.Unlock()
		rw.phase = 2
		if minor(v) < 38 {
			rw.featuresKnown()
			rw.phase = 3
		}
	}
	if rw.phase == 2 {
		// Nix's feature set.
		feats, n, status := parseStrings(rw.hello)
		switch status {
		case incomplete:
			return nil, nil
		case malformed:
			rw.finishHello()
			f.failClosed("Nix's hello is not what nixgate expects: no feature set")
			return nil, nil
		}
		rw.hello = rw.hello[n:]
		kept := understood(feats)
		f.serverFeatureSet = kept
		rw.featuresKnown()
		out = appendStrings(out, kept)
		rw.phase = 3
	}
	tail, done := rw.readHelloTail()
	out = append(out, tail...)
	if !done {
		return out, nil
	}
	rw.finishHello()
	// What follows, Nix's first answers, stays in rw.hello for Write to
	// follow.
	return out, nil
}

// limitsUnseen is why a build is refused when nixgate could not see Nix
// answer the SetOptions that puts the key's build limits on the session.
const limitsUnseen = "nixgate could not see Nix take the key's build limits"

// readHelloTail reads the rest of Nix's hello — its version (1.33) and
// whether it trusts the client (1.35), which it keeps (setTrust) — and
// Nix's messages up to LAST, which it returns to be passed on; for a
// session that starts with nixgate's own SetOptions (sessionOptions),
// then Nix's answer to that SetOptions, which the client never sees.
// done reports that all of it has been read (what follows is Nix's
// answers, left in rw.hello), or that the stream is not what nixgate
// expects (the session then fails closed).
func (rw *replyWriter) readHelloTail() (out []byte, done bool) {
	f := rw.f
	v := f.version
	if v == 0 {
		// The client left before the session had a version.
		f.settleLimits(limitsUnseen)
		return nil, true
	}
	for {
		if rw.phase == 3 {
			c := &cursor{b: rw.hello}
			if minor(v) >= 33 {
				c.str() // Nix's version
			}
			trust := uint64(trustNot) // before 1.35 Nix does not say
			if minor(v) >= 35 {
				trust = c.u64()
			}
			switch {
			case c.status == incomplete && len(rw.hello) <= maxHeldReply:
				return out, false
			case c.status != complete:
				f.failClosed("Nix's hello is not what nixgate expects: its version or trust")
				return out, true
			}
			f.setTrust(trust == trustTrusted || trust == trustUnknown)
			out = append(out, rw.hello[:c.off]...)
			rw.hello = rw.hello[c.off:]
			rw.phase = 4
		}
		n, kind, msg, status := parseStderr(rw.hello, v)
		switch status {
		case incomplete:
			return out, false
		case malformed:
			f.failClosed("Nix's answer after its hello is not what nixgate expects")
			return out, true
		}
		if rw.phase == 4 {
			// The hello's messages, for the client.
			out = append(out, rw.hello[:n]...)
		}
		rw.hello = rw.hello[n:]
		switch {
		case rw.phase == 4 && kind == stderrLast && !f.inject:
			return out, true
		case rw.phase == 4 && kind == stderrLast:
			rw.phase = 5
		case rw.phase == 4 && kind == stderrError:
			// Nix refused the session: nothing follows.
			f.settleLimits("Nix refused the session: " + msg)
			return out, true
		case rw.phase == 5 && kind == stderrLast:
			f.settleLimits("")
			return out, true
		case rw.phase == 5 && kind == stderrError:
			f.log.Warn("Nix refused the key's build limits", "error", msg)
			f.settleLimits("Nix did not take the key's build limits: " + msg)
			return out, true
		case rw.phase == 5 && kind == stderrNext:
			f.log.Info("Nix on the key's build limits", "message", msg)
		}
	}
}

// featuresKnown releases the request side, which waits for Nix's
// feature set at 1.38.
func (rw *replyWriter) featuresKnown() {
	select {
	case <-rw.f.serverFeatures:
	default:
		close(rw.f.serverFeatures)
	}
}

// finishHello ends the reading of Nix's hello: what follows is passed
// on as it comes.
func (rw *replyWriter) finishHello() {
	rw.helloDone = true
	rw.f.setTrust(false)
	rw.featuresKnown()
	rw.f.settleLimits(limitsUnseen)
}

func (rw *replyWriter) takeHello() []byte {
	b := rw.hello
	rw.hello = nil
	return b
}

func (rw *replyWriter) readHello(p []byte) ([]byte, error) {
	if rw.f.opt.Protocol == policy.ProtocolWorker {
		return rw.readWorkerHello(p)
	}
	return rw.readServeHello(p)
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

type parseStatus int

const (
	complete parseStatus = iota
	incomplete
	malformed
)

// parseStrings parses a string list at the start of b, which may not
// hold all of it yet. Lists longer than a feature set are malformed.
func parseStrings(b []byte) (list []string, n int, status parseStatus) {
	if len(b) < 8 {
		return nil, 0, incomplete
	}
	count := binary.LittleEndian.Uint64(b)
	if count > 1024 {
		return nil, 0, malformed
	}
	n = 8
	for i := uint64(0); i < count; i++ {
		if len(b) < n+8 {
			return nil, 0, incomplete
		}
		l := binary.LittleEndian.Uint64(b[n:])
		if l > 1024 {
			return nil, 0, malformed
		}
		end := n + 8 + int(padded(l))
		if len(b) < end {
			return nil, 0, incomplete
		}
		list = append(list, string(b[n+8:n+8+int(l)]))
		n = end
	}
	return list, n, complete
}
