package nixproto

import "encoding/binary"

// The messages Nix's daemon sends while it works on an operation, before
// the operation's result (worker-protocol.hh, TunnelLogger in daemon.cc).
const (
	stderrNext          = 0x6f6c6d67
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// maxHeldReply bounds what nixgate holds of Nix's replies while it reads
// the end of Nix's hello and Nix's answer to nixgate's own SetOptions: a
// few messages at most; more is not a reply nixgate understands.
const maxHeldReply = 1 << 20

// cursor reads Nix's replies from a buffer that may not hold all of them
// yet. Its status becomes incomplete or malformed at the first read that
// fails, after which reads return zero values.
type cursor struct {
	b      []byte
	off    int
	status parseStatus
}

func (c *cursor) u64() uint64 {
	if c.status != complete {
		return 0
	}
	if len(c.b)-c.off < 8 {
		c.status = incomplete
		return 0
	}
	n := binary.LittleEndian.Uint64(c.b[c.off:])
	c.off += 8
	return n
}

func (c *cursor) str() string {
	n := c.u64()
	if c.status != complete {
		return ""
	}
	if n > maxHeldReply {
		c.status = malformed
		return ""
	}
	end := c.off + int(padded(n))
	if len(c.b) < end {
		c.status = incomplete
		return ""
	}
	s := string(c.b[c.off : c.off+int(n)])
	c.off = end
	return s
}

// fields reads an activity's fields: a count, then each a type (0 a
// number, 1 a string) and its value.
func (c *cursor) fields() {
	n := c.u64()
	if n > 1024 {
		c.status = malformed
	}
	for i := uint64(0); i < n && c.status == complete; i++ {
		switch c.u64() {
		case 0:
			c.u64()
		case 1:
			c.str()
		default:
			if c.status == complete {
				c.status = malformed
			}
		}
	}
}

// parseStderr parses the message of Nix's stderr stream at the start of
// b, in the worker protocol at version v: its length, its kind (one of
// the stderr constants), and for an error or a log line its message. A message nixgate
// does not expect between operations (Nix asking the client for data)
// is malformed.
func parseStderr(b []byte, v uint64) (n int, kind uint64, msg string, status parseStatus) {
	c := &cursor{b: b}
	kind = c.u64()
	switch kind {
	case stderrLast:
	case stderrNext:
		msg = c.str()
	case stderrStartActivity:
		c.u64() // id
		c.u64() // level
		c.u64() // type
		c.str()
		c.fields()
		c.u64() // parent
	case stderrStopActivity:
		c.u64()
	case stderrResult:
		c.u64() // id
		c.u64() // type
		c.fields()
	case stderrError:
		if minor(v) >= 26 {
			c.str() // type
			c.u64() // level
			c.str() // name
			msg = c.str()
			if c.u64() != 0 { // a position: Nix never sends one
				c.status = malformed
			}
			traces := c.u64()
			if traces > 1024 {
				c.status = malformed
			}
			for i := uint64(0); i < traces && c.status == complete; i++ {
				if c.u64() != 0 {
					c.status = malformed
				}
				c.str()
			}
		} else {
			msg = c.str()
			c.u64() // status
		}
	default:
		if c.status == complete {
			c.status = malformed
		}
	}
	if c.status == incomplete && len(b) > maxHeldReply {
		c.status = malformed
	}
	return c.off, kind, msg, c.status
}
