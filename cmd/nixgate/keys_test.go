package main

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/keys"
	"golang.org/x/crypto/ssh"
)

// testKey returns a fixed ed25519 public key line with comment
// k<i>@test, and its fingerprint.
func testKey(t *testing.T, i byte) (line, fingerprint string) {
	t.Helper()
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s k%d@test", keys.AuthorizedKey(pub), i), keys.Fingerprint(pub)
}

// TestListAuthorizedKeys: keys list --authorized-keys shows every key
// line of an OpenSSH authorized_keys file, passing over blank lines,
// comments and lines that are no key, and says of a line that does not
// run exactly nixgate exec why not.
func TestListAuthorizedKeys(t *testing.T) {
	k := make([]string, 8)
	fp := make([]string, 8)
	for i := 1; i < len(k); i++ {
		k[i], fp[i] = testKey(t, byte(i))
	}
	doc := strings.Join([]string{
		"# builders",
		"",
		`restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci",from="10.0.0.0/8,192.0.2.1",expiry-time="20300101" ` + k[1],
		`command="nixgate exec --key ci2" ` + k[2],
		"garbage",
		"   # an indented comment",
		k[3],
		`restrict,name="named",command="nixgate exec --key ghost" ` + k[4],
		`restrict,command="nixgate exec --key x",from=bad ` + k[5],
		`restrict,command="nixgate exec --key ci3" ` + k[6] + "\r",
		`restrict,command="nixgate exec --key ci; exec /bin/sh" ` + k[7],
		"",
	}, "\n")
	p := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	const nixgate = "(see the nixgate configuration)"
	want := []keyRow{
		{Name: "ci", Role: nixgate, Fingerprint: fp[1], From: []string{"10.0.0.0/8", "192.0.2.1"}, Expires: "20300101", Source: p + ":3", Restricted: &yes},
		{Name: "ci2", Role: nixgate, Fingerprint: fp[2], Source: p + ":4", Restricted: &no},
		{Name: "k3@test", Role: "(not nixgate: no command= option)", Fingerprint: fp[3], Source: p + ":7", Restricted: &no},
		{Name: "named", Role: nixgate, Fingerprint: fp[4], Source: p + ":8", Restricted: &yes},
		{Name: "k5@test", Role: "(not nixgate: option from: value must be in double quotes)", Fingerprint: fp[5], Source: p + ":9", Restricted: &yes},
		{Name: "ci3", Role: nixgate, Fingerprint: fp[6], Source: p + ":10", Restricted: &yes},
		{Name: "k7@test", Role: `(not nixgate: command="nixgate exec --key ci; exec /bin/sh": not one command)`, Fingerprint: fp[7], Source: p + ":11", Restricted: &yes},
	}
	got, err := listRows(fileFlags{authorizedKeys: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("listRows = %d rows; want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("row %d = %+v (restricted %v)\nwant %+v (restricted %v)", i, got[i], *got[i].Restricted, want[i], *want[i].Restricted)
		}
	}
	if _, err := listRows(fileFlags{authorizedKeys: filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("listRows(a missing file) succeeded")
	}
}

// TestAuthorizeMistakes: what a person gets wrong with keys authorize,
// and what they are told. Options after the key file are read as meant;
// a private key is refused with the way to its public half.
func TestAuthorizeMistakes(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "nixgate.toml")
	ak := filepath.Join(dir, "authorized_keys")
	os.WriteFile(ak, nil, 0o644)
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("user = \"nobody\"\nauthorized_keys = %q\n", ak)), 0o644)
	priv := filepath.Join(dir, "ci")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"keys", "authorize", priv + ".pub", "--config", cfgFile, "--name", "ci", "--role", "build"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "authorized ci") {
		t.Errorf("options after the key file: exit %d, %q %q; want it authorized", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"keys", "authorize", "--config", cfgFile, "--name", "ci2", "--role", "build", priv}, &out, &errOut); code == exitOK ||
		!strings.Contains(errOut.String(), priv+" is a private key: give its public half ("+priv+".pub") {
		t.Errorf("a private key: exit %d, %q; want it refused, naming its public half", code, errOut.String())
	}
}

// TestSmallMistakes: an --expires already past is refused (the key
// would never log in); drain --off on a builder that is not draining
// says there was nothing to do, not that it removed something.
func TestSmallMistakes(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "nixgate.toml")
	ak := filepath.Join(dir, "authorized_keys")
	os.WriteFile(ak, nil, 0o644)
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("user = \"nobody\"\nauthorized_keys = %q\nstate_dir = %q\n", ak, filepath.Join(dir, "state"))), 0o644)
	priv := filepath.Join(dir, "ci")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", priv).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"keys", "authorize", "--config", cfgFile, "--name", "ci", "--role", "build", "--expires", "2020-01-01", priv + ".pub"}, &out, &errOut); code == exitOK ||
		!strings.Contains(errOut.String(), "--expires 2020-01-01 is past: the key would never log in") {
		t.Errorf("--expires in the past: exit %d, %q; want it refused, saying why", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"drain", "--config", cfgFile, "--off"}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "it was not draining: nothing to do") {
		t.Errorf("drain --off when not draining: exit %d, %q", code, out.String())
	}
}

// TestKeysListDefaultConfig: keys list and revoke, like the other
// commands, use /etc/nixgate/nixgate.toml when no file is named.
func TestKeysListDefaultConfig(t *testing.T) {
	for _, args := range [][]string{{"keys", "list"}, {"keys", "revoke", "ci"}} {
		var out, errOut bytes.Buffer
		run(args, &out, &errOut)
		if !strings.Contains(errOut.String()+out.String(), defaultConfigPath) || strings.Contains(errOut.String(), "give --config") {
			t.Errorf("%q: %q %q; want it to use %s", args, out.String(), errOut.String(), defaultConfigPath)
		}
	}
}

// TestRevokeCertificates: keys revoke --ca writes to the CA's revoked
// file, which config.Load reads back.
func TestRevokeCertificates(t *testing.T) {
	dir := t.TempDir()
	caLine, _ := testKey(t, 9)
	revoked := filepath.Join(dir, "ci.revoked")
	cfgPath := filepath.Join(dir, "nixgate.toml")
	doc := fmt.Sprintf("user = \"b\"\n[[cas]]\nname = \"ci\"\nkey = %q\nrevoked = %q\n[[cas.principals]]\nname = \"ci-x\"\nrole = \"build\"\n[[cas]]\nname = \"bare\"\nkey = %q\n[[cas.principals]]\nname = \"p\"\nrole = \"build\"\n", caLine, revoked, caLine+"x")
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, fp := testKey(t, 3)
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--serial", "12"}, exitOK, "revoked serial:12 of CA ci: added to " + revoked},
		{[]string{"--serial", "12"}, exitOK, "serial:12 of CA ci was revoked already"},
		{[]string{"--key-id", "ci run 7"}, exitOK, "revoked id:ci run 7 of CA ci"},
		{[]string{"--fingerprint", fp}, exitOK, "revoked " + fp + " of CA ci"},
		{[]string{"--serial", "0"}, exitRefused, "serial 0 is every certificate"},
		{[]string{"--serial", "x"}, exitRefused, `serial "x" is not a decimal number`},
		{[]string{"--serial", "1", "--key-id", "a"}, exitUsage, "give one of --serial, --key-id or --fingerprint"},
		{[]string{"--serial", "1", "ci-x"}, exitUsage, "and no key name"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := runKeys(append([]string{"revoke", "--config", cfgPath, "--ca", "ci"}, tt.args...), &stdout, &stderr)
		if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.out) {
			t.Errorf("keys revoke --ca ci %q = %d, %q %q; want %d, %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.out)
		}
	}
	data, _ := os.ReadFile(revoked)
	if want := "serial:12\nid:ci run 7\n" + fp + "\n"; string(data) != want {
		t.Errorf("revoked file = %q; want %q", data, want)
	}
	for args, want := range map[string]string{
		"--ca nobody --serial 1": `has no CA "nobody" (its CAs: ci, bare)`,
		"--ca bare --serial 1":   `CA "bare" has no revoked file: add revoked = "/etc/nixgate/bare.revoked" to its [[cas]] entry (` + cfgPath + ":9)",
		"ci-x":                   `"ci-x" is a principal of CA "ci"`,
	} {
		var stdout, stderr bytes.Buffer
		if code := runKeys(append([]string{"revoke", "--config", cfgPath}, strings.Fields(args)...), &stdout, &stderr); code != exitRefused || !strings.Contains(stderr.String(), want) {
			t.Errorf("keys revoke %s = %d, %q; want %q", args, code, stderr.String(), want)
		}
	}
}
