package nixproto

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

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
	// payload, when set, streams what follows the arguments (to Nix, or
	// nowhere for a refused op).
	payload func() error

	imported, built, read []string
	importedBytes         uint64
	// readsContents is set for ops whose answer is store contents.
	readsContents bool
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
			o := &op{req: policy.OpRequest{Protocol: f.opt.Protocol, Code: code}}
			v := f.decide(o)
			reason := v.Reason + "; the session ends"
			if refuse == nil {
				return f.refuseSession(reason)
			}
			if err := refuse(o, reason); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s", ErrRefused, reason)
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
			if o.payload != nil {
				r.out = io.Discard
				if err := o.payload(); err != nil {
					return err
				}
			}
			if err := refuse(o, v.Reason); err != nil {
				return err
			}
			continue
		}
		if err := f.toNix(f.rewrite(o, v)); err != nil {
			return err
		}
		if o.payload != nil {
			r.out = f.nix
			err := o.payload()
			r.out = io.Discard
			if err != nil {
				return err
			}
		}
		f.record(o)
		prev = o
	}
}

// rewrite returns the bytes of an allowed op as Nix must see them.
func (f *Filter) rewrite(o *op, v policy.OpVerdict) []byte {
	b := f.req.raw
	if v.NoSubstitute && o.substituteAt >= 0 {
		binary.LittleEndian.PutUint64(b[o.substituteAt:], 0)
	}
	if o.settingsAt >= 0 && !slices.Equal(v.Settings, o.req.Settings) {
		b = appendU64(b[:o.settingsAt:o.settingsAt], uint64(len(v.Settings)))
		for _, s := range v.Settings {
			b = appendString(appendString(b, s.Name), s.Value)
		}
	}
	return b
}
