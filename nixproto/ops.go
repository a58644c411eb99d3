package nixproto

import (
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// op is one operation as read from the client: what the policy is asked,
// where the bytes a verdict may rewrite are, what follows the arguments,
// and what it moves.
type op struct {
	req policy.OpRequest
	// substituteAt is the offset in the raw bytes of the substitute flag
	// (QueryValidPaths), or -1.
	substituteAt int
	// settingsAt is the offset of SetOptions' override count, or -1.
	settingsAt int
	// optionsAt is the offset of a serve build's options (max silent
	// time, build timeout, max log size, …), or -1.
	optionsAt int
	// invalid, when set, is why nixgate refuses the op whatever the
	// policy says: Nix might refuse it at a point where it would not
	// read the payload (checkAddToStore).
	invalid string
	// needsTrust is set for an op nixgate passes only when Nix said, in
	// its hello, that it trusts the client (AddBuildLog).
	needsTrust bool
	// payload, when set, streams what follows the arguments (to Nix, or
	// nowhere for a refused op).
	payload func() error

	imported, built, read []string
	importedBytes         uint64
	// readsContents is set for ops whose answer is store contents.
	readsContents bool
	// buildStart is when a build op reached Nix; zero for other ops.
	buildStart time.Time
}

// drvs returns the derivations o builds: of its built paths, those that
// are derivations (a derived path's derivation, without its outputs).
func (o *op) drvs() []string {
	var out []string
	for _, p := range o.built {
		p, _, _ = strings.Cut(p, "!")
		if strings.HasSuffix(p, ".drv") && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// ops filters operations until the client's stream ends: parse reads one
// op's arguments, refuse answers a refused one.
func (f *Filter) ops(parse func(code uint64) (*op, error), refuse func(o *op, reason string) error) error {
	r := f.req
	var prev *op
	var mark uint64
	for {
		if _, err := r.br.Peek(1); err != nil {
			f.attributeReplies(prev, &mark)
			if err == io.EOF {
				return nil
			}
			return err
		}
		r.startOp()
		code, err := r.u64()
		f.attributeReplies(prev, &mark)
		prev = nil
		if err != nil {
			return err
		}
		if !policy.KnownOp(f.opt.Protocol, code) {
			o := &op{req: policy.OpRequest{Protocol: f.opt.Protocol, Code: code}, substituteAt: -1, settingsAt: -1, optionsAt: -1}
			v := f.decide(o)
			reason := v.Reason + "; the session ends"
			if refuse == nil {
				return f.refuseSession(reason)
			}
			if err := refuse(o, reason); err != nil {
				return err
			}
			return errorf("%w: %s", ErrRefused, reason)
		}
		o, err := parse(code)
		if err != nil {
			return err
		}
		v := f.decide(o)
		if !v.Allow {
			if f.opt.Protocol == policy.ProtocolServe {
				// The serve protocol has no error message: end the
				// session before nix-store sees a byte of the command.
				return f.refuseSession(v.Reason)
			}
			if err := f.dropPayload(o); err != nil {
				return err
			}
			if err := refuse(o, v.Reason); err != nil {
				return err
			}
			continue
		}
		err = f.limitsInForce(o)
		if err == nil {
			err = f.acquireSlot(o)
		}
		if err != nil {
			if f.opt.Protocol == policy.ProtocolServe {
				return f.refuseSession(policy.Line(err))
			}
			if err := f.dropPayload(o); err != nil {
				return err
			}
			if err := refuse(o, policy.Line(err)); err != nil {
				return err
			}
			continue
		}
		f.sent(o)
		if err := f.toNix(f.rewrite(o, v)); err != nil {
			return err
		}
		if o.payload != nil {
			if err := f.withBulk(o.payload); err != nil {
				return err
			}
		}
		f.record(o)
		prev = o
	}
}

// dropPayload reads a refused op's payload to its end, passing nothing
// on: the client's next op follows it.
func (f *Filter) dropPayload(o *op) error {
	if o.payload == nil {
		return nil
	}
	f.req.out = io.Discard
	return o.payload()
}

// rewrite returns the bytes of an allowed op as Nix must see them: the
// substitute flag cleared, SetOptions' overrides filtered, and the key's
// build limits put on the build options it sends.
func (f *Filter) rewrite(o *op, v policy.OpVerdict) []byte {
	b := f.req.raw
	if v.NoSubstitute && o.substituteAt >= 0 {
		binary.LittleEndian.PutUint64(b[o.substituteAt:], 0)
	}
	lim := f.opt.Policy.Limits
	if at := o.optionsAt; at >= 0 {
		// The serve protocol's build options (serveBuildOptions).
		get := func(i int) uint64 { return binary.LittleEndian.Uint64(b[at+8*i:]) }
		put := func(i int, v uint64) { binary.LittleEndian.PutUint64(b[at+8*i:], v) }
		put(0, lim.CapMaxSilentTime(get(0)))
		put(1, lim.CapBuildTimeout(get(1)))
		if minor(f.version) >= 2 {
			put(2, lim.CapMaxLogSize(get(2)))
		}
		if minor(f.version) >= 3 {
			// Repeats: Nix 2.12 and earlier build that many times more,
			// each round with a fresh timeout; later Nix refuses any but
			// 0. Enforce determinism only matters with repeats.
			put(3, 0)
			put(4, 0)
		}
	}
	settings := v.Settings
	if o.settingsAt >= 0 && !lim.IsZero() {
		capSetOptions(b, lim)
		settings = capSettings(settings, lim)
	}
	if o.settingsAt >= 0 && !slices.Equal(settings, o.req.Settings) {
		b = appendU64(b[:o.settingsAt:o.settingsAt], uint64(len(settings)))
		for _, s := range settings {
			b = appendString(appendString(b, s.Name), s.Value)
		}
	}
	return b
}
