package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stubNixpkgsFlake is the nixpkgs flake TestFlakeCheck gives nixgate's
// flake in place of the real one (which cannot be fetched here): the
// real nixpkgs lib beside it, and of nixpkgs' packages only what the
// flake takes, as plain derivations that are evaluated, not built.
const stubNixpkgsFlake = `{
  outputs = { self }: {
    lib = import ./lib;
    legacyPackages = self.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: rec {
      runCommand = name: env: script: derivation (env // { inherit name system; builder = "/bin/sh"; args = [ "-c" script ]; });
      callPackage = f: args: runCommand "nixgate" { } "";
    });
  };
}
`

// TestFlakeCheck runs nix flake check --no-build on nixgate's flake
// with each Nix: its outputs evaluate, its modules are modules, and its
// checks (the module evaluations of nix/tests) pass, with nixpkgs' real
// lib; a check configuration the module refuses makes it fail. Only
// nixpkgs' packages are stand-ins (TestFlakeVendorHash checks the
// package's one value that goes stale).
func TestFlakeCheck(t *testing.T) {
	requireTools(t)
	lib := nixpkgsLib(t)
	for _, n := range nixVersions(t) {
		t.Run("Nix"+n.name, func(t *testing.T) {
			base := os.TempDir()
			if n.chroot != "" {
				base = filepath.Join(n.chroot, "tmp")
			}
			dir, err := os.MkdirTemp(base, "nixgate-flake-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			inside := dir
			if n.chroot != "" {
				inside = "/" + strings.TrimPrefix(strings.TrimPrefix(dir, n.chroot), "/")
			}
			nixpkgs := filepath.Join(dir, "nixpkgs")
			if err := os.MkdirAll(nixpkgs, 0o755); err != nil {
				t.Fatal(err)
			}
			mustRun(t, nil, "cp", "-r", lib, filepath.Join(nixpkgs, "lib"))
			writeFile(t, filepath.Join(nixpkgs, "flake.nix"), stubNixpkgsFlake, 0o644)
			flake := readFile(t, filepath.Join("..", "flake.nix"))

			check := func(name, flakeText string) result {
				src := filepath.Join(dir, name)
				if err := os.MkdirAll(src, 0o755); err != nil {
					t.Fatal(err)
				}
				mustRun(t, nil, "cp", "-r", filepath.Join("..", "nix"), filepath.Join(src, "nix"))
				writeFile(t, filepath.Join(src, "flake.nix"), flakeText, 0o644)
				argv := []string{"nix", "--extra-experimental-features", "nix-command flakes",
					"flake", "check", "--no-build", "--store", inside + "/store",
					"--override-input", "nixpkgs", "path:" + inside + "/nixpkgs", "path:" + inside + "/" + name}
				if n.chroot != "" {
					return run(t, nil, nil, chrootArgv(n.chroot, argv...)...)
				}
				return run(t, nil, nil, argv...)
			}

			if r := check("nixgate", flake); r.code != 0 {
				t.Fatalf("nix flake check: %s", r)
			}
			// The control: the checks really evaluate the modules.
			bad := strings.Replace(flake, `keys.check = { role = "build";`, `keys.check = { role = "admin";`, 1)
			if bad == flake {
				t.Fatal(`flake.nix's checks have no keys.check = { role = "build"; …: the control must follow them`)
			}
			if r := check("refused", bad); r.code == 0 || !strings.Contains(r.stderr, `"substitute", "build", "shell"`) {
				t.Errorf("nix flake check with a role the module refuses: %s; want it to fail with the module's message", r)
			}
		})
	}
}

// TestFlakeVendorHash checks nix/package.nix's vendorHash against the Go
// dependencies: the hash Nix takes of go mod vendor's directory, which
// buildGoModule checks its fetched modules against.
func TestFlakeVendorHash(t *testing.T) {
	requireTools(t)
	m := regexp.MustCompile(`vendorHash = "(sha256-[^"]+)"`).FindStringSubmatch(readFile(t, filepath.Join("..", "nix", "package.nix")))
	if m == nil {
		t.Fatal("nix/package.nix has no vendorHash")
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	r := run(t, nil, nil, "sh", "-c", `cd .. && go mod vendor -o "$1"`, "sh", vendor)
	if r.code != 0 {
		t.Fatalf("go mod vendor: %s", r)
	}
	r = run(t, nil, nil, "nix", "--extra-experimental-features", "nix-command", "hash", "path", vendor)
	if r.code != 0 {
		t.Fatalf("nix hash path: %s", r)
	}
	if got := strings.TrimSpace(r.stdout); got != m[1] {
		t.Errorf("nix/package.nix's vendorHash is %s; the Go dependencies hash to %s: write that in", m[1], got)
	}
}
