//go:build !linux

package gateway

import "syscall"

// quickAck does nothing: TCP_QUICKACK is Linux's.
func quickAck(syscall.RawConn) {}
