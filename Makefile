# The two commands: `make run` runs nixgate, `make test` runs every test.
GO      ?= go
FUZZTIME ?= 60000x
BIN     := bin/nixgate
# The version nixgate version prints: git describe of the checkout (works
# in a worktree and with -buildvcs=false, unlike Go's VCS stamping).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := $(if $(VERSION),-ldflags "-X main.version=$(VERSION)")

.PHONY: all build run run-exec test deps lint cross unit e2e fuzz bench x-crypto clean

all: build

build:
	$(GO) build $(LDFLAGS) -o $(BIN) ./cmd/nixgate

# Runs nixgate serve on its embedded default (127.0.0.1:2222, state in
# .state/serve), never on /etc/nixgate/nixgate.toml. With no client key
# yet it generates and authorizes one, and prints the Nix command to try.
run: build
	$(BIN) serve --embedded

# Runs nixgate exec behind a real OpenSSH sshd on 127.0.0.1:2222 with a
# generated demo account, key and store. Needs root.
run-exec: deps build
	scripts/run-exec-demo.sh

deps:
	scripts/deps.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	scripts/check-imports.sh
	$(GO) vet -tags bench ./e2e
	nix-instantiate --parse flake.nix nix/module.nix nix/common.nix nix/darwin.nix nix/package.nix nix/tests/nixos.nix nix/tests/darwin.nix nix/tests/stubs.nix >/dev/null

# The other platforms nixgate builds for: go vet (which compiles every
# package and its tests, and the benchmarks behind the bench tag) and a
# build of the binary for each.
CROSS := darwin/arm64 darwin/amd64 linux/arm64
cross:
	@set -e; for p in $(CROSS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} go vet ./... && go vet -tags bench ./e2e && go build ./cmd/nixgate"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./...; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet -tags bench ./e2e; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -o /dev/null ./cmd/nixgate; \
	done

# third_party/x-crypto is golang.org/x/crypto with patches/x-crypto applied
# (docs/development.md, "The x/crypto patch"): check that it is exactly
# that, and run x/crypto's own tests on the patched code.
x-crypto:
	scripts/x-crypto.sh --check

unit:
	$(GO) test -race -count=1 ./policy/... ./nixproto/... ./session/... ./admission/... ./usage/... ./keys/... ./config/... ./sandbox/... ./gateway/... ./check/... ./cmd/...

e2e:
	$(GO) test -race -count=1 -timeout 28m ./e2e/...

fuzz:
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzReadLixBootstrap$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzCertKey$$' -fuzztime $(FUZZTIME)
	$(GO) test ./nixproto -run '^$$' -fuzz '^FuzzFilter$$' -fuzztime $(FUZZTIME)
	$(GO) test ./nixproto -run '^$$' -fuzz '^FuzzReplies$$' -fuzztime $(FUZZTIME)
	$(GO) test ./keys -run '^$$' -fuzz '^FuzzParseLine$$' -fuzztime $(FUZZTIME)
	$(GO) test ./keys -run '^$$' -fuzz '^FuzzParseFile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./keys -run '^$$' -fuzz '^FuzzParseAuthorizedKeys$$' -fuzztime $(FUZZTIME)
	$(GO) test ./keys -run '^$$' -fuzz '^FuzzParseRevoked$$' -fuzztime $(FUZZTIME)
	$(GO) test ./krl -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./admission -run '^$$' -fuzz '^FuzzParseKeptHealth$$' -fuzztime $(FUZZTIME)
	$(GO) test ./buildlog -run '^$$' -fuzz '^FuzzValidDrv$$' -fuzztime $(FUZZTIME)
	$(GO) test ./status -run '^$$' -fuzz '^FuzzText$$' -fuzztime $(FUZZTIME)
	$(GO) test ./usage -run '^$$' -fuzz '^FuzzDamagedStore$$' -fuzztime 300x # a process per run

# Every test: dependencies, formatting and vet, the cross-builds (macOS,
# arm64), unit and end-to-end tests
# with the race detector (nixgate itself is built with it for the
# end-to-end tests), the soak once more without it (to watch memory), and
# a short run of every fuzz target. -timeout 28m: the end-to-end tests
# take 19 to 24 minutes on a 2-core machine, past go test's default
# of 10 (each test bounds its own waits).
test: deps lint cross x-crypto
	@# Where nixpkgs' lib is, for the NixOS module's evaluation tests
	@# (e2e's nixpkgsLib looks the same way; under CI none is a failure).
	@d=$$PWD; lib=$${NIXGATE_NIXPKGS_LIB:-}; while [ -z "$$lib" ] && [ "$$d" != / ]; do [ -f "$$d/../shared/nixpkgs-lib/lib/default.nix" ] && lib=$$(cd "$$d/../shared/nixpkgs-lib" && pwd); d=$$(dirname "$$d"); done; echo "nixpkgs lib: $${lib:-none beside $$PWD or above it}"
	$(GO) test -race -count=1 -timeout 28m ./...
	$(GO) test -count=1 -run '^TestSoak$$' ./e2e
	$(MAKE) fuzz

# The benchmarks: e2e's are behind the build tag bench, out of the
# correctness tests' binary; the scripts pass -tags bench.
bench: deps
	bench/exec-overhead.sh
	bench/sandbox-modes.sh
	bench/protocol-filter.sh
	bench/admission-overhead.sh
	bench/handshake-ack.sh
	bench/build-logs.sh
	bench/throughput.sh
	bench/run.sh

clean:
	rm -rf bin .state
