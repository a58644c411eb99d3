package nixproto

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/nixgate/nixgate/policy"
)

// vector is one operation as a client of the given versions sends it,
// taken from Nix's and Lix's sources (testdata/vectors.toml).
type vector struct {
	Name     string   `toml:"name"`
	Protocol string   `toml:"protocol"`
	Versions []string `toml:"versions"`
	Features []string `toml:"features"`
	Op       uint64   `toml:"op"`
	Args     []string `toml:"args"`
	Source   string   `toml:"source"`
	// Substitute and Build say what a key of that role gets: "pass" or
	// "refuse".
	Substitute string `toml:"substitute"`
	Build      string `toml:"build"`
	// Nixgate is "refuse" for an op nixgate refuses whatever the key
	// (Nix might refuse it where it would not read its payload).
	Nixgate string `toml:"nixgate"`
	// NixLast, when set, are the op's last arguments as nixgate passes
	// them to Nix for every key (it clears the serve protocol's repeats
	// and enforce-determinism).
	NixLast  []string `toml:"nix_last"`
	Imported []string `toml:"imported"`
	Built    []string `toml:"built"`
	Read     []string `toml:"read"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors.toml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vector []vector `toml:"vector"`
	}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("testdata/vectors.toml: %v", err)
	}
	return file.Vector
}

// encodeArgs builds an operation's bytes from the vector's tokens, as
// the client sends them.
func encodeArgs(t testing.TB, code uint64, args []string) []byte {
	t.Helper()
	return encodeArgsFramed(t, code, args, (*enc).framed)
}

// nixgateFramed appends data framed as nixgate frames a payload toward
// Nix (frameWriter): a first frame of firstFrame bytes, the rest (under
// coalesceFrame here) in one frame, the end marker.
func nixgateFramed(e *enc, data []byte, _ int) *enc {
	if len(data) > 0 {
		first := min(len(data), firstFrame)
		e.u64(uint64(first))
		e.b = append(e.b, data[:first]...)
		if rest := data[first:]; len(rest) > 0 {
			e.u64(uint64(len(rest)))
			e.b = append(e.b, rest...)
		}
	}
	return e.u64(0)
}

// encodeArgsFramed builds an operation's bytes from the vector's
// tokens, with framed data framed by framed.
func encodeArgsFramed(t testing.TB, code uint64, args []string, framed func(e *enc, data []byte, size int) *enc) []byte {
	t.Helper()
	e := (&enc{}).u64(code)
	for _, a := range args {
		kind, val, _ := strings.Cut(a, ":")
		list := func() []string {
			if val == "" {
				return nil
			}
			return strings.Split(val, ",")
		}
		switch kind {
		case "u64":
			n, err := strconv.ParseUint(val, 0, 64)
			if err != nil {
				t.Fatalf("token %q: %v", a, err)
			}
			e.u64(n)
		case "str":
			e.str(val)
		case "strs":
			e.strs(list()...)
		case "nar":
			e.nar(val)
		case "framed-nar":
			framed(e, (&enc{}).nar(val).b, 7)
		case "framed":
			framed(e, []byte(val), 5)
		case "framed-multiple":
			inner := (&enc{}).u64(uint64(len(list())))
			for _, p := range list() {
				nar := (&enc{}).nar(p).b
				inner.str(p, "", "sha256:0000").strs().u64(0, uint64(len(nar)), 0).strs().str("")
				inner.b = append(inner.b, nar...)
			}
			framed(e, inner.b, 100)
		case "export":
			for _, p := range list() {
				e.u64(1).nar(p).u64(exportMagic).str(p).strs().str("").u64(0)
			}
			e.u64(0)
		case "raw":
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatalf("token %q: %v", a, err)
			}
			e.b = append(e.b, bytes.Repeat([]byte{'x'}, n)...)
		default:
			t.Fatalf("unknown token kind %q in %q", kind, a)
		}
	}
	return e.b
}

// sentinel is an operation sent after the vector's: that it arrives
// whole shows the filter found the end of the one before.
func sentinel(p policy.Protocol) []byte {
	if p == policy.ProtocolWorker {
		return (&enc{}).u64(1).str("/nix/store/00000000000000000000000000000000-sentinel").b // IsValidPath
	}
	return (&enc{}).u64(2).strs("/nix/store/00000000000000000000000000000000-sentinel").b // QueryPathInfos
}

func TestVectors(t *testing.T) {
	vectors := loadVectors(t)
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, vec := range vectors {
		var proto policy.Protocol
		switch vec.Protocol {
		case "worker":
			proto = policy.ProtocolWorker
		case "serve":
			proto = policy.ProtocolServe
		default:
			t.Fatalf("%s: protocol %q", vec.Name, vec.Protocol)
		}
		if vec.Source == "" || len(vec.Versions) == 0 {
			t.Fatalf("%s: every vector names its source and versions", vec.Name)
		}
		for _, vs := range vec.Versions {
			v := parseVersion(t, vs)
			t.Run(vec.Name+"/"+vs, func(t *testing.T) {
				checkVector(t, proto, v, vec)
			})
		}
	}
}

func checkVector(t *testing.T, proto policy.Protocol, v uint64, vec vector) {
	var hello, server []byte
	if proto == policy.ProtocolWorker {
		hello, server = workerHello(v, vec.Features...), slices.Concat(workerServerHello(v, vec.Features...), workerServerTail(v, trustTrusted))
	} else {
		hello, server = serveHello(v), serveServerHello(v)
	}
	opBytes := encodeArgs(t, vec.Op, vec.Args)
	tail := sentinel(proto)
	client := slices.Concat(hello, opBytes, tail)
	name := policy.OpName(proto, vec.Op)

	if vec.Nixgate == "refuse" {
		for _, pol := range []policy.OpPolicy{fullTrust, buildKey, readOnlyKey} {
			r := filterSession(t, Options{Protocol: proto, Policy: pol}, client, server)
			checkRefused(t, proto, v, pol, r, hello, tail, name)
		}
		return
	}
	// Everything allowed: Nix gets what the client sent, with framed
	// data framed by nixgate.
	nixArgs := vec.Args
	if len(vec.NixLast) > 0 {
		nixArgs = slices.Concat(vec.Args[:len(vec.Args)-len(vec.NixLast)], vec.NixLast)
	}
	want := slices.Concat(hello, encodeArgsFramed(t, vec.Op, nixArgs, nixgateFramed), tail)
	r := filterSession(t, Options{Protocol: proto, Policy: fullTrust}, client, server)
	if r.err != nil {
		t.Fatalf("full trust: %v (stderr %q)", r.err, r.stderr)
	}
	if !bytes.Equal(r.toNix, want) {
		t.Fatalf("full trust: Nix got %d bytes, want the client's %d with nixgate's frames (%d)\ngot  %x\nwant %x", len(r.toNix), len(client), len(want), r.toNix, want)
	}
	if r.audit.BytesToNix != uint64(len(want)) {
		t.Errorf("full trust: audit counts %d bytes to Nix; want %d", r.audit.BytesToNix, len(want))
	}
	sentinelName := policy.OpName(proto, sentinelCode(proto))
	wantOps := map[string]int{name: 1}
	wantOps[sentinelName]++
	if r.audit.Ops[name] != wantOps[name] || r.audit.Ops[sentinelName] != wantOps[sentinelName] {
		t.Fatalf("full trust: ops %v; want %s and the sentinel", r.audit.Ops, name)
	}
	checkPaths(t, "imported", r.audit.Imported.Paths, vec.Imported)
	checkPaths(t, "built", r.audit.Built.Paths, vec.Built)
	checkPaths(t, "read", r.audit.Read.Paths, vec.Read)
	// An op that builds something is one build, timed until the next op.
	if wantBuilds := min(len(vec.Built), 1); r.audit.Builds != wantBuilds || (r.audit.BuildTime > 0) != (wantBuilds > 0) {
		t.Errorf("full trust: builds %d in %v; want %d (timed when > 0)", r.audit.Builds, r.audit.BuildTime, wantBuilds)
	}

	for _, role := range []struct {
		pol  policy.OpPolicy
		want string
	}{{readOnlyKey, vec.Substitute}, {buildKey, vec.Build}} {
		r := filterSession(t, Options{Protocol: proto, Policy: role.pol}, client, server)
		switch role.want {
		case "pass":
			if r.audit.Ops[name] != wantOps[name] || r.audit.RefusedCount != 0 {
				t.Errorf("role %s: ops %v, refused %v; want %s passed", role.pol.Role, r.audit.Ops, r.audit.Refused, name)
			}
		case "refuse":
			checkRefused(t, proto, v, role.pol, r, hello, tail, name)
		default:
			t.Fatalf("vector %s: role %s: want \"pass\" or \"refuse\", not %q", vec.Name, role.pol.Role, role.want)
		}
	}
}

// checkRefused checks that not one byte of a refused op reached Nix, and
// that the client was told, in the protocol's way.
func checkRefused(t *testing.T, proto policy.Protocol, v uint64, pol policy.OpPolicy, r run, hello, tail []byte, name string) {
	t.Helper()
	if r.audit.RefusedCount != 1 || r.audit.Refused[0] != name {
		t.Errorf("role %s: refused %v; want [%s]", pol.Role, r.audit.Refused, name)
	}
	if proto == policy.ProtocolServe {
		if !bytes.Equal(r.toNix, hello) {
			t.Errorf("role %s: nix-store got %d bytes after a refused command; want only the %d of the hello", pol.Role, len(r.toNix), len(hello))
		}
		if !errors.Is(r.err, ErrRefused) {
			t.Errorf("role %s: err %v; want ErrRefused", pol.Role, r.err)
		}
		if !strings.Contains(string(r.stderr), name+" refused") || strings.Count(string(r.stderr), "\n") != 1 {
			t.Errorf("role %s: stderr %q; want one line naming %s", pol.Role, r.stderr, name)
		}
		return
	}
	if want := slices.Concat(hello, tail); !bytes.Equal(r.toNix, want) {
		t.Errorf("role %s: Nix got %d bytes; want the hello and the next op (%d), nothing of %s", pol.Role, len(r.toNix), len(want), name)
	}
	msgs := workerErrorMessages(r.toClient, v)
	if len(msgs) != 1 || !strings.Contains(msgs[0], name+" refused") || !strings.HasPrefix(msgs[0], "nixgate: key ") {
		t.Errorf("role %s: errors sent to the client %q; want one naming %s", pol.Role, msgs, name)
	}
	if r.err != nil {
		t.Errorf("role %s: the session ended in %v; a refused worker op must not end it", pol.Role, r.err)
	}
}

func sentinelCode(p policy.Protocol) uint64 {
	if p == policy.ProtocolWorker {
		return 1
	}
	return 2
}

func checkPaths(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s paths %q; want %q", what, got, want)
	}
}
