// Package krl reads OpenSSH key revocation lists (KRLs), the binary
// files ssh-keygen -k writes and sshd's RevokedKeys reads, as
// PROTOCOL.krl in OpenSSH's source describes them: certificates revoked
// by serial (lists, ranges and bitmaps) and by key ID, for one CA or for
// any, and keys revoked explicitly or by SHA1 or SHA256 hash.
//
// The parser is strict, as OpenSSH's is: an unknown section, a critical
// extension, trailing data in a section, a hash of the wrong length or
// a truncated string is an error, never a KRL that revokes less than
// its author wrote. It refuses KRL signature sections too, which
// OpenSSH 9.4 and later refuse to load. It imports nothing of nixgate's.
package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Magic is the first eight bytes of every KRL: "SSHKRL\n\0".
const Magic = "SSHKRL\n\x00"

// formatVersion is the only KRL format version there is.
const formatVersion = 1

// Section types (PROTOCOL.krl).
const (
	sectionCertificates = 1
	sectionExplicitKey  = 2
	sectionSHA1         = 3
	sectionSignature    = 4
	sectionSHA256       = 5
	sectionExtension    = 255

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39
)

// maxBitmap bounds a serial bitmap, as OpenSSH's mpint limit does
// (16384 bits, plus a leading zero byte).
const maxBitmap = 16384/8 + 1

// KRL is a parsed key revocation list. The zero KRL revokes nothing.
type KRL struct {
	// Version is the KRL's version number (ssh-keygen -z).
	Version uint64
	// Generated is when the KRL was generated.
	Generated time.Time
	// Comment is the KRL's comment; empty when it has none.
	Comment string

	certs  []*certSection // revoked certificates, by CA
	keys   map[string]bool
	sha1   map[[sha1.Size]byte]bool
	sha256 map[[sha256.Size]byte]bool
}

// certSection is what one certificates section revokes, for one CA.
type certSection struct {
	ca      []byte // the CA's key in wire form; nil for any CA
	serials []serialRange
	bitmaps []bitmap
	ids     map[string]bool
}

type serialRange struct{ lo, hi uint64 }

// bitmap revokes serial offset+N for each bit N set in bits, a
// big-endian number.
type bitmap struct {
	offset uint64
	bits   []byte
}

func (b bitmap) has(serial uint64) bool {
	if serial < b.offset {
		return false
	}
	n := serial - b.offset
	if n/8 >= uint64(len(b.bits)) {
		return false
	}
	return b.bits[len(b.bits)-1-int(n/8)]&(1<<(n%8)) != 0
}

// Cert is what Revoked looks at.
type Cert struct {
	// Serial and KeyID are the certificate's serial and key ID.
	Serial uint64
	KeyID  string
	// Key is the certified key, and CAKey the key that signed the
	// certificate, each in SSH wire form (not as a certificate).
	Key, CAKey []byte
}

// IsKRL reports whether data starts as a KRL does.
func IsKRL(data []byte) bool { return bytes.HasPrefix(data, []byte(Magic)) }

// Revoked returns why k revokes c, as sshd checks a certificate: the
// certified key or the CA's key revoked explicitly or by hash, or the
// certificate revoked by key ID or by serial (never serial 0) in a
// section of its CA's or of any CA's. It returns "" when c is not
// revoked; a nil KRL revokes nothing.
func (k *KRL) Revoked(c Cert) string {
	if k == nil {
		return ""
	}
	if why := k.keyRevoked(c.Key); why != "" {
		return "the certified key is revoked " + why
	}
	for _, s := range k.certs {
		if s.ca != nil && !bytes.Equal(s.ca, c.CAKey) {
			continue
		}
		if s.ids[c.KeyID] {
			return fmt.Sprintf("key ID %q is revoked", c.KeyID)
		}
		if c.Serial == 0 {
			continue
		}
		for _, r := range s.serials {
			if r.lo <= c.Serial && c.Serial <= r.hi {
				return fmt.Sprintf("serial %d is revoked", c.Serial)
			}
		}
		for _, b := range s.bitmaps {
			if b.has(c.Serial) {
				return fmt.Sprintf("serial %d is revoked", c.Serial)
			}
		}
	}
	if why := k.keyRevoked(c.CAKey); why != "" {
		return "the CA's key is revoked " + why
	}
	return ""
}

func (k *KRL) keyRevoked(blob []byte) string {
	if len(blob) == 0 {
		return ""
	}
	switch {
	case k.sha1[sha1.Sum(blob)]:
		return "(by SHA1 hash)"
	case k.sha256[sha256.Sum256(blob)]:
		return "(by SHA256 hash)"
	case k.keys[string(blob)]:
		return "(explicitly)"
	}
	return ""
}

// Parse parses a KRL.
func Parse(data []byte) (*KRL, error) {
	if !IsKRL(data) {
		return nil, errorf("not a KRL: it does not start with %q", Magic)
	}
	r := reader(data[len(Magic):])
	k := &KRL{keys: map[string]bool{}, sha1: map[[sha1.Size]byte]bool{}, sha256: map[[sha256.Size]byte]bool{}}
	v, err := r.u32()
	if err != nil {
		return nil, errorf("header: %w", err)
	}
	if v != formatVersion {
		return nil, errorf("format version %d: only %d is known", v, formatVersion)
	}
	var gen, flags uint64
	var comment []byte
	if k.Version, err = r.u64(); err == nil {
		if gen, err = r.u64(); err == nil {
			if flags, err = r.u64(); err == nil {
				if _, err = r.str(); err == nil { // reserved
					comment, err = r.cstr()
				}
			}
		}
	}
	if err != nil {
		return nil, errorf("header: %w", err)
	}
	_ = flags // none are defined; OpenSSH ignores them
	k.Generated, k.Comment = time.Unix(int64(min(gen, 1<<62)), 0).UTC(), string(comment)
	for n := 1; len(r) > 0; n++ {
		typ, err := r.u8()
		if err != nil {
			return nil, errorf("section %d: %w", n, err)
		}
		body, err := r.str()
		if err != nil {
			return nil, errorf("section %d (type %d): %w", n, typ, err)
		}
		sr := reader(body)
		switch typ {
		case sectionCertificates:
			err = k.parseCerts(&sr)
		case sectionExplicitKey:
			err = sr.blobs(0, func(b []byte) { k.keys[string(b)] = true })
		case sectionSHA1:
			err = sr.blobs(sha1.Size, func(b []byte) { k.sha1[[sha1.Size]byte(b)] = true })
		case sectionSHA256:
			err = sr.blobs(sha256.Size, func(b []byte) { k.sha256[[sha256.Size]byte(b)] = true })
		case sectionExtension:
			err = sr.extension()
		case sectionSignature:
			err = errors.New("KRL signatures are not supported (OpenSSH 9.4 and later refuse them too); sign the file with ssh-keygen -Y sign instead")
		default:
			err = fmt.Errorf("unknown section type %d", typ)
		}
		if err == nil && len(sr) > 0 {
			err = fmt.Errorf("%d bytes of trailing data", len(sr))
		}
		if err != nil {
			return nil, errorf("section %d (type %d): %w", n, typ, err)
		}
	}
	return k, nil
}

func (k *KRL) parseCerts(r *reader) error {
	ca, err := r.str()
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if _, err := r.str(); err != nil { // reserved
		return fmt.Errorf("reserved: %w", err)
	}
	s := &certSection{ids: map[string]bool{}}
	if len(ca) > 0 {
		if err := checkKeyBlob(ca); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
		s.ca = bytes.Clone(ca)
	}
	for len(*r) > 0 {
		typ, err := r.u8()
		if err != nil {
			return err
		}
		body, err := r.str()
		if err != nil {
			return fmt.Errorf("subsection type %#x: %w", typ, err)
		}
		sr := reader(body)
		switch typ {
		case certSerialList:
			for len(sr) > 0 && err == nil {
				var v uint64
				if v, err = sr.u64(); err == nil {
					s.serials = append(s.serials, serialRange{v, v})
				}
			}
		case certSerialRange:
			var lo, hi uint64
			if lo, err = sr.u64(); err == nil {
				if hi, err = sr.u64(); err == nil && lo > hi {
					err = fmt.Errorf("serial range %d-%d runs backwards", lo, hi)
				}
			}
			s.serials = append(s.serials, serialRange{lo, hi})
		case certSerialBitmap:
			err = s.parseBitmap(&sr)
		case certKeyID:
			if len(sr) == 0 {
				err = errors.New("a key ID section without key IDs")
			}
			for len(sr) > 0 && err == nil {
				var id []byte
				if id, err = sr.cstr(); err == nil {
					s.ids[string(id)] = true
				}
			}
		case certExtension:
			err = sr.extension()
		default:
			err = fmt.Errorf("unknown certificate subsection type %#x", typ)
		}
		if err == nil && len(sr) > 0 {
			err = fmt.Errorf("%d bytes of trailing data", len(sr))
		}
		if err != nil {
			return fmt.Errorf("subsection type %#x: %w", typ, err)
		}
	}
	k.certs = append(k.certs, s)
	return nil
}

func (s *certSection) parseBitmap(r *reader) error {
	offset, err := r.u64()
	if err != nil {
		return err
	}
	bits, err := r.str()
	if err != nil {
		return err
	}
	switch {
	case len(bits) > 0 && bits[0]&0x80 != 0:
		return errors.New("a negative bitmap")
	case len(bits) > maxBitmap || (len(bits) == maxBitmap && bits[0] != 0):
		return errors.New("a bitmap of more than 16384 bits")
	}
	bits = bytes.TrimLeft(bits, "\x00")
	if len(bits) == 0 {
		return nil
	}
	// The highest serial revoked must not wrap past 2^64-1.
	top := uint64(len(bits)*8 - 1 - leadingZeros(bits[0]))
	if offset+top < offset {
		return errors.New("the bitmap wraps past the largest serial")
	}
	s.bitmaps = append(s.bitmaps, bitmap{offset: offset, bits: bytes.Clone(bits)})
	return nil
}

func leadingZeros(b byte) int {
	n := 0
	for mask := byte(0x80); mask != 0 && b&mask == 0; mask >>= 1 {
		n++
	}
	return n
}

// checkKeyBlob checks that b is the wire form of a public key: a key
// type string followed by its data. The contents are compared byte for
// byte with the CA keys of certificates, never trusted.
func checkKeyBlob(b []byte) error {
	r := reader(b)
	typ, err := r.str()
	if err != nil || len(typ) == 0 || len(r) == 0 {
		return errors.New("not a public key")
	}
	if bytes.Contains(typ, []byte("-cert-")) {
		return errors.New("a certificate, not a CA's key")
	}
	return nil
}

// reader reads the SSH wire encoding (RFC 4251) from the front of a
// byte slice.
type reader []byte

var errShort = errors.New("truncated")

func (r *reader) u8() (byte, error) {
	if len(*r) < 1 {
		return 0, errShort
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, nil
}

func (r *reader) u32() (uint32, error) {
	if len(*r) < 4 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint32(*r)
	*r = (*r)[4:]
	return v, nil
}

func (r *reader) u64() (uint64, error) {
	if len(*r) < 8 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint64(*r)
	*r = (*r)[8:]
	return v, nil
}

// str reads a string: a uint32 length and that many bytes.
func (r *reader) str() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(*r)) {
		return nil, fmt.Errorf("a string of %d bytes where %d remain", n, len(*r))
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, nil
}

// cstr reads a string that holds no NUL but, as OpenSSH allows, a last
// one.
func (r *reader) cstr() ([]byte, error) {
	s, err := r.str()
	if err != nil {
		return nil, err
	}
	if i := bytes.IndexByte(s, 0); i >= 0 && i < len(s)-1 {
		return nil, errors.New("a NUL byte inside a string")
	}
	return bytes.TrimSuffix(s, []byte{0}), nil
}

// blobs reads strings to the end, each of size bytes unless size is 0,
// and gives each to add. There must be at least one.
func (r *reader) blobs(size int, add func([]byte)) error {
	if len(*r) == 0 {
		return errors.New("a section without entries")
	}
	for len(*r) > 0 {
		b, err := r.str()
		if err != nil {
			return err
		}
		if size != 0 && len(b) != size {
			return fmt.Errorf("a hash of %d bytes; want %d", len(b), size)
		}
		add(bytes.Clone(b))
	}
	return nil
}

// extension reads an extension (section or certificate subsection): a
// name, whether it is critical, and its contents. No extension is
// known, so a critical one is an error.
func (r *reader) extension() error {
	name, err := r.cstr()
	if err != nil {
		return err
	}
	critical, err := r.u8()
	if err != nil {
		return err
	}
	if _, err := r.str(); err != nil {
		return err
	}
	if len(*r) > 0 {
		return fmt.Errorf("extension %q: trailing data", name)
	}
	if critical != 0 {
		return fmt.Errorf("unsupported critical extension %q", name)
	}
	return nil
}

// errorf returns one of krl's errors: "krl: " and the message.
func errorf(format string, a ...any) error {
	return fmt.Errorf("krl: "+format, a...)
}
