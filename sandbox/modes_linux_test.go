package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

func TestHelperSpecRoundTrip(t *testing.T) {
	in := helperSpec{storeDir: "/home/u/.nix", hideHome: "/home/u", hide: []string{"/etc/nixgate/nixgate.toml", "/var/lib/nixgate"}, isolate: true, chdir: "/", binDirs: []string{"/usr/bin", "~/.nix-profile/bin"}, argv: []string{"nix-store", "--serve", "--", "--write"}}
	out, err := parseHelper(in.args())
	if err != nil {
		t.Fatal(err)
	}
	if out.storeDir != in.storeDir || out.hideHome != in.hideHome || !slices.Equal(out.hide, in.hide) || out.isolate != in.isolate || out.chdir != in.chdir || !slices.Equal(out.binDirs, in.binDirs) || !slices.Equal(out.argv, in.argv) {
		t.Errorf("parseHelper(args) = %+v; want %+v", out, in)
	}
	if _, err := parseHelper([]string{"--store-dir", "/x", "--"}); err == nil {
		t.Error("parseHelper accepted no command")
	}
}

func testConfig(t *testing.T, sandbox string) *policy.Config {
	t.Helper()
	cfg, err := policy.Parse("t.toml", []byte("user = \"u\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"+sandbox))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPrepareSandboxModes(t *testing.T) {
	home := t.TempDir()
	bin := t.TempDir()
	for _, name := range []string{"proot", "nuc"} {
		os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755)
	}
	a := Account{Name: "u", Home: home}
	d := policy.Decision{Allow: true, Program: policy.NixStore, Args: []string{"--serve", "--write"}}
	self, _ := os.Executable()

	// The store directory is the operator's to make: a missing one is
	// refused, not made (CheckStoreDir).
	store := filepath.Join(home, ".nix")
	if _, err := Prepare(testConfig(t, "[sandbox]\nmode = \"userns\"\n"), d, a); err == nil || !strings.Contains(err.Error(), "mkdir -p "+store) {
		t.Errorf("Prepare without %s = %v; want it refused with mkdir -p", store, err)
	}
	if _, err := os.Stat(store); err == nil {
		t.Errorf("Prepare made %s", store)
	}
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Prepare(testConfig(t, "[sandbox]\nmode = \"userns\"\n"), d, a)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Namespace || c.Path != self || !slices.Contains(c.Argv, "--store-dir") || !slices.Contains(c.Argv, store) || !slices.Contains(c.Argv, "--hide-home") || !slices.Contains(c.Argv, "--isolate") {
		t.Errorf("userns command = %+v", c)
	}
	if err := c.Exec(); err == nil || !strings.Contains(err.Error(), "new namespace") {
		t.Errorf("Exec of a namespace command = %v", err)
	}

	c, err = Prepare(testConfig(t, "[sandbox]\nmode = \"proot\"\nproot = \""+filepath.Join(bin, "proot")+"\"\n"), d, a)
	if err != nil {
		t.Fatal(err)
	}
	// Each session its own empty home (a build can write into it), gone
	// when the session is.
	c2, err := Prepare(testConfig(t, "[sandbox]\nmode = \"proot\"\nproot = \""+filepath.Join(bin, "proot")+"\"\n"), d, a)
	if err != nil {
		t.Fatal(err)
	}
	empty, empty2 := strings.TrimSuffix(c.Argv[4], ":"+home), strings.TrimSuffix(c2.Argv[4], ":"+home)
	if empty == empty2 {
		t.Errorf("two proot sessions share the empty home %s", empty)
	}
	os.Chmod(empty2, 0o755)
	os.WriteFile(filepath.Join(empty2, "left-by-a-build"), nil, 0o644)
	c2.Done()
	if _, err := os.Stat(empty2); err == nil {
		t.Errorf("Done left %s behind", empty2)
	}
	defer c.Done()
	if c.Namespace || c.Path != filepath.Join(bin, "proot") || c.Argv[1] != "-b" || c.Argv[2] != store+":/nix" || c.Argv[3] != "-b" || !strings.HasSuffix(c.Argv[4], ":"+home) {
		t.Errorf("proot command = %q", c.Argv)
	}

	c, err = Prepare(testConfig(t, "[sandbox]\nmode = \"nix-user-chroot\"\nnix_user_chroot = \""+filepath.Join(bin, "nuc")+"\"\n"), d, a)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != filepath.Join(bin, "nuc") || c.Argv[1] != store || c.Argv[2] != self || c.Argv[3] != NestCommand {
		t.Errorf("nix-user-chroot command = %q", c.Argv)
	}

	_, err = Prepare(testConfig(t, "[sandbox]\nmode = \"proot\"\nproot = \"/nonexistent/proot\"\n"), d, a)
	if err == nil || !strings.Contains(err.Error(), "install proot (apt-get install proot), or set sandbox.proot") {
		t.Errorf("Prepare with proot missing = %v", err)
	}
}

func TestNamespaceAdvice(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	knobs := func(vals map[string]string) func(string) (string, bool) {
		return func(name string) (string, bool) { v, ok := vals[name]; return v, ok }
	}
	tests := []struct {
		err    syscall.Errno
		sysctl func(string) (string, bool)
		want   string
	}{
		{syscall.ENOSPC, none, "raise it with sysctl -w user.max_user_namespaces=15000"},
		{syscall.EPERM, none, "kernel.unprivileged_userns_clone (Debian), kernel.apparmor_restrict_unprivileged_userns (Ubuntu)"},
		{syscall.EINVAL, none, "CONFIG_USER_NS"},
		{syscall.ENOSPC, knobs(map[string]string{"user/max_user_namespaces": "0"}), "user.max_user_namespaces is 0"},
		{syscall.EPERM, knobs(map[string]string{"kernel/unprivileged_userns_clone": "0"}), "sysctl -w kernel.unprivileged_userns_clone=1"},
		{syscall.EPERM, knobs(map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1"}), "AppArmor restricts"},
	}
	for _, tt := range tests {
		got := namespaceAdvice(tt.err, tt.sysctl)
		if !strings.Contains(got, tt.want) || !strings.HasSuffix(got, `or set sandbox.mode = "proot", which needs none`) {
			t.Errorf("namespaceAdvice(%v) = %q; want %q and the proot way out", tt.err, got, tt.want)
		}
	}
	msg := namespaceError("a new user namespace", syscall.ENOSPC).Error()
	if !strings.HasPrefix(msg, "sandbox: the kernel refused a new user namespace (ENOSPC, no space left on device): ") || strings.Contains(msg, "\n") {
		t.Errorf("NamespaceError = %q", msg)
	}
}

func TestEmptyDir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	p, err := emptyDir()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("emptyDir = %s, %v, %v", p, fi, err)
	}
	// Regression: a build (same uid) that left a file in a shared empty
	// home made every later session fail; each session has its own.
	if q, err := emptyDir(); err != nil || q == p {
		t.Errorf("second emptyDir = %s, %v; want a directory of its own", q, err)
	}
}
