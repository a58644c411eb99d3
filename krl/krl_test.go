package krl

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// keygen runs ssh-keygen in dir, failing the test when it fails.
func keygen(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ssh-keygen", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestAgainstSSHKeygen revokes by serial (list, range and bitmap, which
// ssh-keygen picks by density), key ID, explicit key, SHA256 hash and
// CA, with ssh-keygen -k, and checks that Revoked agrees with
// ssh-keygen -Q on certificates ssh-keygen -s signed.
func TestAgainstSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen")
	}
	dir := t.TempDir()
	for _, name := range []string{"ca", "other-ca", "revoked-ca", "u", "byKey", "byHash"} {
		keygen(t, dir, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
	spec := []string{"serial: 7", "serial: 10-20", "id: bad-id", "id: with space", "key: " + read("byKey.pub"), "key: " + read("revoked-ca.pub"),
		"hash: " + strings.Fields(keygen(t, dir, "-l", "-f", "byHash.pub"))[1]}
	for s := 101; s <= 131; s += 2 {
		spec = append(spec, fmt.Sprintf("serial: %d", s)) // dense enough for a bitmap
	}
	os.WriteFile(filepath.Join(dir, "spec"), []byte(strings.Join(spec, "\n")+"\n"), 0o644)
	keygen(t, dir, "-k", "-f", "ca.krl", "-s", "ca.pub", "spec")
	data, err := os.ReadFile(filepath.Join(dir, "ca.krl"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var sawBitmap bool
	for _, s := range k.certs {
		sawBitmap = sawBitmap || len(s.bitmaps) > 0
	}
	if !sawBitmap {
		t.Error("ssh-keygen wrote no bitmap: the test does not cover bitmaps")
	}
	tests := []struct {
		ca, key, id string
		serial      uint64
	}{
		{"ca", "u", "good", 8},
		{"ca", "u", "good", 7},
		{"ca", "u", "good", 6},
		{"ca", "u", "good", 10},
		{"ca", "u", "good", 20},
		{"ca", "u", "good", 21},
		{"ca", "u", "good", 101},
		{"ca", "u", "good", 102},
		{"ca", "u", "good", 131},
		{"ca", "u", "good", 132},
		{"ca", "u", "good", 0},
		{"ca", "u", "bad-id", 0},
		{"ca", "u", "bad-id-2", 0},
		{"ca", "u", "with space", 1},
		{"other-ca", "u", "bad-id", 7},
		{"ca", "byKey", "good", 1},
		{"other-ca", "byKey", "good", 1},
		{"ca", "byHash", "good", 1},
		{"revoked-ca", "u", "good", 1},
	}
	for i, tt := range tests {
		pub := fmt.Sprintf("c%d.pub", i)
		os.WriteFile(filepath.Join(dir, pub), []byte(read(tt.key+".pub")+"\n"), 0o644)
		keygen(t, dir, "-q", "-s", tt.ca, "-I", tt.id, "-n", "p", "-z", fmt.Sprint(tt.serial), pub)
		certLine := read(fmt.Sprintf("c%d-cert.pub", i))
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(certLine))
		if err != nil {
			t.Fatal(err)
		}
		cert := pk.(*ssh.Certificate)
		q := exec.Command("ssh-keygen", "-Q", "-f", "ca.krl", fmt.Sprintf("c%d-cert.pub", i))
		q.Dir = dir
		out, qerr := q.CombinedOutput()
		want := strings.Contains(string(out), "REVOKED")
		if qerr != nil && !want {
			t.Fatalf("ssh-keygen -Q: %v\n%s", qerr, out)
		}
		why := k.Revoked(Cert{Serial: cert.Serial, KeyID: cert.KeyId, Key: cert.Key.Marshal(), CAKey: cert.SignatureKey.Marshal()})
		if (why != "") != want {
			t.Errorf("cert of %s by %s, ID %q, serial %d: Revoked = %q; ssh-keygen -Q says %s", tt.key, tt.ca, tt.id, tt.serial, why, strings.TrimSpace(string(out)))
		}
	}
}

// enc builds KRLs for the tests, in the wire form.
type enc struct{ bytes.Buffer }

func (e *enc) u8(v byte)    { e.WriteByte(v) }
func (e *enc) u32(v uint32) { binary.Write(e, binary.BigEndian, v) }
func (e *enc) u64(v uint64) { binary.Write(e, binary.BigEndian, v) }
func (e *enc) str(b []byte) { e.u32(uint32(len(b))); e.Write(b) }

func header() *enc {
	e := &enc{}
	e.WriteString(Magic)
	e.u32(1)
	e.u64(3)          // version
	e.u64(1700000000) // generated
	e.u64(0)          // flags
	e.str(nil)        // reserved
	e.str([]byte("test"))
	return e
}

func section(typ byte, body func(*enc)) []byte {
	b := &enc{}
	body(b)
	e := &enc{}
	e.u8(typ)
	e.str(b.Bytes())
	return e.Bytes()
}

var testCA = func() []byte {
	e := &enc{}
	e.str([]byte("ssh-ed25519"))
	e.str(bytes.Repeat([]byte{7}, 32))
	return e.Bytes()
}()

func certs(ca []byte, subs ...[]byte) []byte {
	return section(sectionCertificates, func(e *enc) {
		e.str(ca)
		e.str(nil)
		for _, s := range subs {
			e.Write(s)
		}
	})
}

func TestParseHeader(t *testing.T) {
	k, err := Parse(header().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != 3 || k.Generated.Unix() != 1700000000 || k.Comment != "test" {
		t.Errorf("header = %+v", k)
	}
	if k.Revoked(Cert{Serial: 1, KeyID: "x", Key: testCA, CAKey: testCA}) != "" {
		t.Error("an empty KRL revoked something")
	}
	var nilKRL *KRL
	if nilKRL.Revoked(Cert{Serial: 1}) != "" {
		t.Error("a nil KRL revoked something")
	}
}

func TestRevoked(t *testing.T) {
	key := []byte("the certified key")
	other := append([]byte{}, testCA...)
	other[len(other)-1] = 8
	hash := sha256.Sum256(key)
	data := append(header().Bytes(), slicesConcat(
		certs(testCA,
			section(certSerialList, func(e *enc) { e.u64(5); e.u64(9) }),
			section(certSerialRange, func(e *enc) { e.u64(100); e.u64(200) }),
			// bits 0 and 9: serials 1000 and 1009
			section(certSerialBitmap, func(e *enc) { e.u64(1000); e.str([]byte{0x02, 0x01}) }),
			section(certKeyID, func(e *enc) { e.str([]byte("gone")) }),
			section(certExtension, func(e *enc) { e.str([]byte("x@example.com")); e.u8(0); e.str(nil) }),
		),
		certs(nil, section(certKeyID, func(e *enc) { e.str([]byte("gone-everywhere")) })),
		section(sectionSHA256, func(e *enc) { e.str(hash[:]) }),
		section(sectionExtension, func(e *enc) { e.str([]byte("y@example.com")); e.u8(0); e.str([]byte("ignored")) }),
	)...)
	k, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		c    Cert
		want string
	}{
		{Cert{Serial: 5, CAKey: testCA}, "serial 5 is revoked"},
		{Cert{Serial: 6, CAKey: testCA}, ""},
		{Cert{Serial: 9, CAKey: testCA}, "serial 9 is revoked"},
		{Cert{Serial: 100, CAKey: testCA}, "serial 100 is revoked"},
		{Cert{Serial: 200, CAKey: testCA}, "serial 200 is revoked"},
		{Cert{Serial: 201, CAKey: testCA}, ""},
		{Cert{Serial: 1000, CAKey: testCA}, "serial 1000 is revoked"},
		{Cert{Serial: 1001, CAKey: testCA}, ""},
		{Cert{Serial: 1009, CAKey: testCA}, "serial 1009 is revoked"},
		{Cert{Serial: 1016, CAKey: testCA}, ""},
		{Cert{Serial: 999, CAKey: testCA}, ""},
		{Cert{Serial: 5, CAKey: other}, ""},
		{Cert{Serial: 0, KeyID: "gone", CAKey: testCA}, `key ID "gone" is revoked`},
		{Cert{Serial: 1, KeyID: "gone", CAKey: other}, ""},
		{Cert{Serial: 1, KeyID: "gone-everywhere", CAKey: other}, `key ID "gone-everywhere" is revoked`},
		{Cert{Serial: 1, Key: key, CAKey: other}, "the certified key is revoked (by SHA256 hash)"},
		{Cert{Serial: 1, Key: []byte("x"), CAKey: key}, "the CA's key is revoked (by SHA256 hash)"},
	}
	for _, tt := range tests {
		if got := k.Revoked(tt.c); got != tt.want {
			t.Errorf("Revoked(%+v) = %q; want %q", tt.c, got, tt.want)
		}
	}
}

func slicesConcat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseErrors(t *testing.T) {
	h := header().Bytes()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"no magic", []byte("serial:1\n"), "not a KRL"},
		{"short header", []byte(Magic + "\x00\x00"), "header: truncated"},
		{"version 2", func() []byte { e := &enc{}; e.WriteString(Magic); e.u32(2); return e.Bytes() }(), "format version 2"},
		{"unknown section", slicesConcat(h, section(9, func(e *enc) {})), "unknown section type 9"},
		{"signature", slicesConcat(h, section(sectionSignature, func(e *enc) { e.str(testCA) })), "KRL signatures are not supported"},
		{"truncated section", slicesConcat(h, []byte{1, 0, 0, 0, 9, 1}), "section 1 (type 1): a string of 9 bytes where 1 remain"},
		{"bad hash length", slicesConcat(h, section(sectionSHA256, func(e *enc) { e.str([]byte("short")) })), "a hash of 5 bytes; want 32"},
		{"empty key section", slicesConcat(h, section(sectionExplicitKey, func(e *enc) {})), "a section without entries"},
		{"critical extension", slicesConcat(h, section(sectionExtension, func(e *enc) { e.str([]byte("x")); e.u8(1); e.str(nil) })), `unsupported critical extension "x"`},
		{"critical cert extension", slicesConcat(h, certs(testCA, section(certExtension, func(e *enc) { e.str([]byte("x")); e.u8(1); e.str(nil) }))), `unsupported critical extension "x"`},
		{"unknown cert subsection", slicesConcat(h, certs(testCA, section(0x30, func(e *enc) {}))), "unknown certificate subsection type 0x30"},
		{"serial list trailing", slicesConcat(h, certs(testCA, section(certSerialList, func(e *enc) { e.u64(1); e.u8(1) }))), "truncated"},
		{"range trailing", slicesConcat(h, certs(testCA, section(certSerialRange, func(e *enc) { e.u64(1); e.u64(2); e.u8(0) }))), "1 bytes of trailing data"},
		{"backwards range", slicesConcat(h, certs(testCA, section(certSerialRange, func(e *enc) { e.u64(9); e.u64(2) }))), "runs backwards"},
		{"negative bitmap", slicesConcat(h, certs(testCA, section(certSerialBitmap, func(e *enc) { e.u64(1); e.str([]byte{0x80}) }))), "negative bitmap"},
		{"wrapping bitmap", slicesConcat(h, certs(testCA, section(certSerialBitmap, func(e *enc) { e.u64(^uint64(0)); e.str([]byte{0x02}) }))), "wraps"},
		{"huge bitmap", slicesConcat(h, certs(testCA, section(certSerialBitmap, func(e *enc) { e.u64(1); e.str(bytes.Repeat([]byte{1}, maxBitmap)) }))), "more than 16384 bits"},
		{"empty key IDs", slicesConcat(h, certs(testCA, section(certKeyID, func(e *enc) {}))), "without key IDs"},
		{"NUL in key ID", slicesConcat(h, certs(testCA, section(certKeyID, func(e *enc) { e.str([]byte("a\x00b")) }))), "NUL"},
		{"CA not a key", slicesConcat(h, certs([]byte{0, 0, 0, 1}, section(certKeyID, func(e *enc) { e.str([]byte("a")) }))), "CA key: not a public key"},
		{"certificate as CA", slicesConcat(h, certs(func() []byte {
			e := &enc{}
			e.str([]byte("ssh-ed25519-cert-v01@openssh.com"))
			e.str([]byte("x"))
			return e.Bytes()
		}(), section(certKeyID, func(e *enc) { e.str([]byte("a")) }))), "a certificate, not a CA's key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Parse(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "krl: ") {
				t.Fatalf("Parse = %v, %v; want an error with %q", k, err, tt.want)
			}
		})
	}
}

func TestParseTestdata(t *testing.T) {
	data, err := os.ReadFile("testdata/ssh-keygen.krl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse checks that Parse never panics, and that what it accepts it
// can answer for any certificate without panicking.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/ssh-keygen.krl"); err == nil {
		f.Add(data)
	}
	f.Add(header().Bytes())
	f.Add(append(header().Bytes(), certs(testCA, section(certSerialBitmap, func(e *enc) { e.u64(1000); e.str([]byte{0x02, 0x01}) }))...))
	f.Add(append(header().Bytes(), certs(nil, section(certKeyID, func(e *enc) { e.str([]byte("x")) }))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if k != nil {
				t.Fatal("a KRL and an error")
			}
			return
		}
		for _, serial := range []uint64{0, 1, 5, 1000, 1009, ^uint64(0)} {
			k.Revoked(Cert{Serial: serial, KeyID: "x", Key: testCA, CAKey: testCA})
		}
	})
}
