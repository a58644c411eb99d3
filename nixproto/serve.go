package nixproto

import (
	"encoding/binary"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// The serve protocol (nix-store --serve), as Nix's serve-protocol.hh and
// nix-store.cc define it.
const (
	ServeMagicClient = 0x390c9deb
	ServeMagicServer = 0x5452eecb

	// ServeMinVersion is the oldest client version nixgate filters (Nix
	// 2.3 speaks 2.5).
	ServeMinVersion = 2<<8 | 5
	// ServeMaxVersion is the newest version nixgate understands.
	ServeMaxVersion = 2<<8 | 8

	exportMagic = 0x4558494e
)

func (f *Filter) runServe() error {
	cv, err := f.readClientHello(serveHelloSpec)
	if err != nil || cv == 0 {
		return err
	}
	cv = min(cv, ServeMaxVersion)
	f.mu.Lock()
	f.version = min(cv, f.serverVersion, ServeMaxVersion)
	f.mu.Unlock()
	close(f.clientHello)
	if err := f.toNix(appendU64(nil, cv)); err != nil {
		return err
	}
	return f.ops(f.serveOp, nil)
}

// serveOp reads the arguments of serve command code and says what
// follows them.
func (f *Filter) serveOp(code uint64) (*op, error) {
	r := f.req
	o := &op{req: policy.OpRequest{Protocol: policy.ProtocolServe, Code: code}, substituteAt: -1, settingsAt: -1, optionsAt: -1}
	var err error
	bad := func(why string) {
		if o.invalid == "" {
			o.invalid = why
		}
	}
	// path reads a store path in canonical form (validStorePath).
	path := func(list *[]string) {
		if err != nil {
			return
		}
		var p string
		if p, err = r.str(); err == nil {
			if !validStorePath(p) {
				bad("sent " + quoteShort(p) + ", not a store path in canonical form")
			}
			if list != nil {
				*list = append(*list, p)
			}
		}
	}
	// paths reads store paths; with derived, paths that may name a
	// derivation's outputs (checkDerivedPath).
	paths := func(list *[]string, derived bool) {
		if err != nil {
			return
		}
		var ps []string
		if ps, err = r.strs(); err == nil {
			for _, p := range ps {
				if derived {
					bad(checkDerivedPath(p, true))
				} else if !validStorePath(p) {
					bad("sent " + quoteShort(p) + ", not a store path in canonical form")
				}
			}
			if list != nil {
				*list = append(*list, ps...)
			}
		}
	}
	skipStr := func() {
		if err == nil {
			_, err = r.str()
		}
	}
	switch code {
	case 1: // QueryValidPaths: lock, substitute, paths
		if _, err = r.bool(); err == nil {
			o.substituteAt = len(r.raw)
			o.req.Substitute, err = r.bool()
		}
		paths(nil, false)
	case 2: // QueryPathInfos
		paths(nil, false)
	case 3: // DumpStorePath
		path(&o.read)
		o.readsContents = true
	case 4: // ImportPaths: exported paths follow
		o.payload = f.importPaths(o)
	case 5: // ExportPaths: obsolete flag, paths
		if _, err = r.bool(); err == nil {
			paths(&o.read, false)
		}
		o.readsContents = true
	case 6: // BuildPaths: paths, build options
		paths(&o.built, true)
		if err == nil {
			o.optionsAt = len(r.raw)
			err = f.serveBuildOptions()
		}
	case 7: // QueryClosure: include outputs, paths
		if _, err = r.bool(); err == nil {
			paths(nil, false)
		}
	case 8: // BuildDerivation: drv path, derivation, build options
		path(&o.built)
		if err == nil && !strings.HasSuffix(o.built[0], ".drv") {
			// Nix 2.8 aborts on it.
			bad("sent " + quoteShort(o.built[0]) + " to build, not a derivation")
		}
		if err == nil {
			var outs []string
			var why string
			outs, why, err = readDerivation(r)
			bad(why)
			o.built = append(o.built, outs...)
		}
		if err == nil {
			o.optionsAt = len(r.raw)
			err = f.serveBuildOptions()
		}
	case 9: // AddToStoreNar: path info, then a NAR of the size given
		path(&o.imported)
		if err == nil {
			var deriver string
			if deriver, err = r.str(); err == nil && deriver != "" && !validStorePath(deriver) {
				bad("sent deriver " + quoteShort(deriver) + ", not a store path in canonical form")
			}
		}
		skipStr() // NAR hash
		paths(nil, false)
		var size uint64
		if err == nil {
			err = r.skipU64s(1) // registration time
		}
		if err == nil {
			size, err = r.u64()
		}
		if err == nil {
			err = r.skipU64s(1) // ultimate
		}
		if err == nil {
			_, err = r.strs() // signatures
		}
		skipStr() // content address
		o.payload = func() error {
			o.importedBytes += size
			return r.copyN(size)
		}
	default:
		return nil, errUnknownOp
	}
	return o, err
}

// serveBuildOptions reads the build options of BuildPaths and
// BuildDerivation, which grew with the version.
func (f *Filter) serveBuildOptions() error {
	n := 2 // max silent time, build timeout
	if minor(f.version) >= 2 {
		n++ // max log size
	}
	if minor(f.version) >= 3 {
		n += 2 // repeats, enforce determinism
	}
	if minor(f.version) >= 7 {
		n++ // keep failed
	}
	return f.req.skipU64s(n)
}

// importPaths streams ImportPaths' export format: for each path a 1, its
// NAR, the export magic, the path, its references and deriver and an
// optional legacy signature; a 0 at the end.
func (f *Filter) importPaths(o *op) func() error {
	return func() error {
		r := f.req
		s := src{r: tee{r.br, r.out}, buf: f.buf}
		for {
			more, err := s.u64()
			if err != nil {
				return err
			}
			if more == 0 {
				return nil
			}
			if more != 1 {
				return protoErr("ImportPaths: want 0 or 1 before a path, got %d", more)
			}
			n, err := s.nar()
			if err != nil {
				return err
			}
			o.importedBytes += n
			if m, err := s.u64(); err != nil {
				return err
			} else if m != exportMagic {
				return protoErr("ImportPaths: wrong export magic %#x", m)
			}
			p, err := s.str(MaxStringLen)
			if err != nil {
				return err
			}
			o.imported = append(o.imported, p)
			if _, err := s.strs(MaxStringLen); err != nil {
				return err
			}
			if _, err := s.str(MaxStringLen); err != nil {
				return err
			}
			sig, err := s.u64()
			if err != nil {
				return err
			}
			if sig == 1 {
				if _, err := s.str(MaxStringLen); err != nil {
					return err
				}
			}
		}
	}
}

// readServeHello reads nix-store's hello and lowers its version.
func (rw *replyWriter) readServeHello(p []byte) ([]byte, error) {
	f := rw.f
	rw.hello = append(rw.hello, p...)
	if len(rw.hello) < 16 {
		return nil, nil
	}
	magic := binary.LittleEndian.Uint64(rw.hello)
	sv := binary.LittleEndian.Uint64(rw.hello[8:])
	rw.finishHello()
	if magic != ServeMagicServer || sv>>8 != 2 {
		close(f.serverHello)
		return rw.takeHello(), nil
	}
	f.serverVersion = sv
	close(f.serverHello)
	out := appendU64(appendU64(nil, magic), min(sv, ServeMaxVersion))
	return append(out, rw.hello[16:]...), nil
}
