package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

func TestResolve(t *testing.T) {
	home := t.TempDir()
	first := filepath.Join(t.TempDir(), "first")
	second := filepath.Join(home, ".nix-profile", "bin")
	for _, d := range []string{first, second} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Not executable in the first dir: skipped. A directory named like the
	// program: skipped.
	os.WriteFile(filepath.Join(first, "nix-store"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(first, "nix-daemon"), 0o755)
	os.WriteFile(filepath.Join(second, "nix-store"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(second, "nix-daemon"), []byte("x"), 0o755)

	dirs := []string{first, "~/.nix-profile/bin"}
	for _, prog := range []policy.Program{policy.NixStore, policy.NixDaemon} {
		got, err := Resolve(prog, dirs, home)
		if want := filepath.Join(second, string(prog)); err != nil || got != want {
			t.Errorf("Resolve(%s) = %q, %v; want %q", prog, got, err, want)
		}
	}
	_, err := Resolve(policy.NixStore, []string{first}, home)
	if err == nil || !strings.Contains(err.Error(), "nix-store not found in "+first) || !strings.Contains(err.Error(), "nix.bin_dirs") {
		t.Errorf("Resolve(missing) = %v", err)
	}
	if _, err := Resolve("", dirs, home); err == nil {
		t.Error("Resolve(\"\") succeeded")
	}
	// Without a home, ~/ entries are dropped, not resolved against "/".
	if got := ExpandDirs([]string{"~/.nix-profile/bin", "/usr/bin"}, ""); !slices.Equal(got, []string{"/usr/bin"}) {
		t.Errorf("ExpandDirs without home = %q", got)
	}
}

func TestEnvIsCleanAndFindsNix(t *testing.T) {
	t.Setenv("LD_PRELOAD", "/tmp/evil.so")
	t.Setenv("SSH_ORIGINAL_COMMAND", "id")
	nixDir := t.TempDir()
	env := Env([]string{"/nonexistent/bin", nixDir, "/usr/bin"}, Account{Name: "nixremote", Home: "/var/empty"}, map[string]string{"NIX_CONFIG": "substituters =", "A": "1"})
	want := []string{
		"PATH=" + nixDir + ":/usr/bin:/usr/local/bin:/bin",
		"HOME=/var/empty",
		"USER=nixremote",
		"LOGNAME=nixremote",
		"A=1",
		"NIX_CONFIG=substituters =",
	}
	if !slices.Equal(env, want) {
		t.Errorf("Env =\n%q\nwant\n%q", env, want)
	}
	if got := Env(nil, Account{Name: "x"}, nil); got[1] != "HOME=/" {
		t.Errorf("Env without home: %q", got)
	}
}

func TestPrepare(t *testing.T) {
	cfg, err := policy.Parse("t.toml", []byte("user = \"b\"\n[nix]\nbin_dirs = [\"/nonexistent\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := policy.NewEngine(cfg).Decide(policy.Request{Key: "k", Command: "nix-store --serve --write"})
	if _, err := Prepare(cfg, d, Account{Name: "b"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Prepare with Nix missing = %v", err)
	}
	denied := policy.NewEngine(cfg).Decide(policy.Request{Key: "k", Command: "id"})
	if _, err := Prepare(cfg, denied, Account{Name: "b"}); err == nil {
		t.Error("Prepare accepted a denying decision")
	}
}

func TestLocalStore(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--serve", "--write", "--store", "local?root=/srv/s"}, true},
		{[]string{"--stdio", "--store", "local"}, true},
		{[]string{"--stdio", "--store", "/srv/s"}, true},
		{[]string{"--stdio", "--store", "daemon"}, false},
		{[]string{"--stdio", "--store", "unix:///run/nix.sock"}, false},
		{[]string{"--serve", "--write"}, false},
	} {
		if got := LocalStore(tt.args); got != tt.want {
			t.Errorf("LocalStore(%q) = %v; want %v", tt.args, got, tt.want)
		}
	}
}

// TestPrepareLimits: a key's build limits reach Nix's NIX_CONFIG, after
// the operator's, in direct mode with a local store and with the
// daemon's; a key without limits gets none.
func TestPrepareLimits(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"nix-store", "nix-daemon"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const keys = "[[keys]]\nname = \"capped\"\nrole = \"build\"\nbuild_timeout = \"2h\"\nbuild_cores = 2\nmax_jobs = 1\n[[keys]]\nname = \"free\"\nrole = \"build\"\n"
	for _, tt := range []struct {
		store, key, command string
		want                string
	}{
		{"local?root=/srv/s", "capped", "nix-store --serve --write",
			"NIX_CONFIG=substituters =\ntimeout = 7200\ncores = 2\nmax-jobs = 1\nsandbox = true\nsandbox-fallback = false\nbuild-users-group ="},
		{"", "capped", "nix-store --serve --write", "NIX_CONFIG=substituters =\ntimeout = 7200\ncores = 2\nmax-jobs = 1"},
		{"", "capped", "nix-daemon --stdio", "NIX_CONFIG=substituters =\ntimeout = 7200\ncores = 2\nmax-jobs = 1"},
		{"", "free", "nix-store --serve --write", "NIX_CONFIG=substituters ="},
	} {
		doc := fmt.Sprintf("user = \"b\"\n[nix]\nbin_dirs = [%q]\nstore = %q\nenv = { NIX_CONFIG = \"substituters =\" }\n%s", bin, tt.store, keys)
		cfg, err := policy.Parse("t.toml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		d := policy.NewEngine(cfg).Decide(policy.Request{Key: tt.key, Command: tt.command})
		c, err := Prepare(cfg, d, Account{Name: "b", Home: "/var/empty"})
		if err != nil {
			t.Fatalf("%s %q: %v", tt.key, tt.store, err)
		}
		var got []string
		for _, kv := range c.Env {
			if strings.HasPrefix(kv, "NIX_CONFIG=") {
				got = append(got, kv)
			}
		}
		if !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s, store %q, %s: %q; want %q", tt.key, tt.store, tt.command, got, tt.want)
		}
	}
}

// TestCheckStoreDir: a store_dir that is not there is refused in one
// line naming the setting, the path, the file and line that set it (or
// that it is the default) and the fix; a directory passes; direct mode
// has none.
func TestCheckStoreDir(t *testing.T) {
	home := t.TempDir()
	a := Account{Name: "u", Home: home}
	os.Mkdir(filepath.Join(home, "store"), 0o755)
	os.WriteFile(filepath.Join(home, "file"), nil, 0o644)
	parse := func(sandbox string) *policy.Config {
		cfg, err := policy.Parse("/etc/n.toml", []byte("user = \"u\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"+sandbox))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tt := range []struct {
		name, sandbox string
		want          string // "" for no error
	}{
		{"direct", "", ""},
		{"direct, store_dir missing", "[sandbox]\nstore_dir = \"~/.nxi\"\n", ""},
		{"exists", "[sandbox]\nmode = \"userns\"\nstore_dir = \"~/store\"\n", ""},
		{"mistyped", "[sandbox]\nmode = \"userns\"\nstore_dir = \"~/.nxi\"\n",
			`sandbox: /etc/n.toml:7: sandbox.store_dir "~/.nxi" is ` + home + `/.nxi, which does not exist: mkdir -p ` + home + `/.nxi if it is to be a new store, else correct sandbox.store_dir`},
		{"absolute", "[sandbox]\nmode = \"proot\"\nstore_dir = \"" + home + "/nix\"\n",
			`sandbox: /etc/n.toml:7: sandbox.store_dir "` + home + `/nix" does not exist: mkdir -p ` + home + `/nix if it is to be a new store, else correct sandbox.store_dir`},
		{"default", "[sandbox]\nmode = \"nix-user-chroot\"\n",
			`sandbox: sandbox.store_dir (the default, "~/.nix") is ` + home + `/.nix, which does not exist: mkdir -p ` + home + `/.nix if it is to be a new store, else set sandbox.store_dir to the store's directory in /etc/n.toml`},
		{"a file", "[sandbox]\nmode = \"userns\"\nstore_dir = \"~/file\"\n",
			`sandbox: /etc/n.toml:7: sandbox.store_dir "~/file" is ` + home + `/file, which is not a directory: correct sandbox.store_dir`},
	} {
		err := CheckStoreDir(parse(tt.sandbox), a)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: CheckStoreDir = %q\nwant %q", tt.name, got, tt.want)
		}
		if strings.Contains(got, "\n") {
			t.Errorf("%s: not one line: %q", tt.name, got)
		}
	}
	if _, err := os.Stat(filepath.Join(home, ".nxi")); err == nil {
		t.Error("CheckStoreDir made the store directory")
	}
}
