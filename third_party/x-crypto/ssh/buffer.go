// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"io"
	"sync"
)

// buffer provides a linked list buffer for data exchange
// between producer and consumer. Theoretically the buffer is
// of unlimited capacity as it does no allocation of its own.
type buffer struct {
	// protects concurrent access to head, tail and closed
	*sync.Cond

	head *element // the buffer that will be read first
	tail *element // the buffer that will be read last

	closed bool
}

// An element represents a single link in a linked list.
type element struct {
	buf  []byte
	next *element
	// packet, if not nil, is the recycled packet buffer buf lies in; it
	// goes back to the pool once buf has been read.
	packet *dataPacket
	// gathered is set when buf is the buffer's own, gathering small
	// writes: more may be appended to it.
	gathered bool
}

// Writes smaller than smallWrite are gathered, gatherSize bytes to a
// buffer of the buffer's own, rather than each kept in its packet: a kept
// packet costs its allocation and an element, which for a peer sending
// one byte per packet came to about 64 bytes of memory per byte of the
// window.
const (
	smallWrite = 512
	gatherSize = 4096
)

// newBuffer returns an empty buffer that is not closed.
func newBuffer() *buffer {
	e := new(element)
	b := &buffer{
		Cond: newCond(),
		head: e,
		tail: e,
	}
	return b
}

// write makes buf available for Read to receive.
// buf must not be modified after the call to write.
func (b *buffer) write(buf []byte) {
	b.writePacket(buf, nil)
}

// writePacket is write for buf lying in the recycled packet buffer p
// (nil if none), which Read returns to the pool once it has read buf.
func (b *buffer) writePacket(buf []byte, p *dataPacket) {
	b.Cond.L.Lock()
	if t := b.tail; p == nil && len(buf) < smallWrite {
		if t.gathered && len(t.buf)+len(buf) <= cap(t.buf) {
			t.buf = append(t.buf, buf...)
		} else {
			g := make([]byte, len(buf), gatherSize)
			copy(g, buf)
			b.add(&element{buf: g, gathered: true})
		}
	} else {
		b.add(&element{buf: buf, packet: p})
	}
	b.Cond.Signal()
	b.Cond.L.Unlock()
}

// add links e in as the tail.
func (b *buffer) add(e *element) {
	b.tail.next = e
	b.tail = e
}

// eof closes the buffer. Reads from the buffer once all
// the data has been consumed will receive io.EOF.
func (b *buffer) eof() {
	b.Cond.L.Lock()
	b.closed = true
	b.Cond.Signal()
	b.Cond.L.Unlock()
}

// Read reads data from the internal buffer in buf.  Reads will block
// if no data is available, or until the buffer is closed.
func (b *buffer) Read(buf []byte) (n int, err error) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()

	for len(buf) > 0 {
		// if there is data in b.head, copy it
		if len(b.head.buf) > 0 {
			r := copy(buf, b.head.buf)
			buf, b.head.buf = buf[r:], b.head.buf[r:]
			n += r
			if len(b.head.buf) == 0 && b.head.packet != nil {
				putDataPacket(b.head.packet)
				b.head.packet, b.head.buf = nil, nil
			}
			continue
		}
		// if there is a next buffer, make it the head
		if len(b.head.buf) == 0 && b.head != b.tail {
			b.head = b.head.next
			continue
		}

		// if at least one byte has been copied, return
		if n > 0 {
			break
		}

		// if nothing was read, and there is nothing outstanding
		// check to see if the buffer is closed.
		if b.closed {
			err = io.EOF
			break
		}
		// out of buffers, wait for producer
		b.Cond.Wait()
	}
	return
}
