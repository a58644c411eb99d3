// Copyright 2026 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import "sync"

// dataPacketSize is the size of the largest channel data packet handleData
// accepts: an extended data header (13 bytes) and channelMaxPacket bytes
// of data.
const dataPacketSize = 13 + channelMaxPacket

// A dataPacket is a buffer a channel data packet is read into. Reading a
// stream would otherwise allocate, and the garbage collector free, one
// buffer per packet: dataPackets recycles them, from the transport's read
// to the channel reader's copy out of its buffer.
type dataPacket [dataPacketSize]byte

var dataPackets = sync.Pool{New: func() any { return new(dataPacket) }}

// getDataPacket returns a recycled buffer of dataPacketSize bytes.
func getDataPacket() []byte { return dataPackets.Get().(*dataPacket)[:] }

// putDataPacket recycles p; nothing may use it afterwards.
func putDataPacket(p *dataPacket) { dataPackets.Put(p) }

// isDataPacket reports whether packet, as read, is channel data worth a
// recycled buffer: one that fits, and fills at least half of it. A small
// packet gets a buffer of its own size, as before: the whole buffer
// stays in memory until the packet has been read, and a peer sending
// one byte per packet must not pin a buffer per byte of the window.
func isDataPacket(packet []byte) bool {
	return len(packet) >= dataPacketSize/2 && len(packet) <= dataPacketSize &&
		(packet[0] == msgChannelData || packet[0] == msgChannelExtendedData)
}

// asDataPacket returns the buffer of dataPacketSize bytes packet lies in,
// or nil if its capacity says it is not one. A packet handed to a channel
// is the channel's alone (the transport's read copies each one out), so
// once read such a buffer can be recycled whatever allocated it.
func asDataPacket(packet []byte) *dataPacket {
	if cap(packet) != dataPacketSize {
		return nil
	}
	return (*dataPacket)(packet[:dataPacketSize])
}
