//go:build !linux

package main

import "os"

// watchHangup on systems other than Linux watches nothing: their poll(2)
// reports nothing for a pipe asked for no events (macOS builds it on
// kqueue filters), so the channel is never closed. There, a Nix that
// is gone is seen when its stream ends (a build waiting for a slot gives
// up its place then), and a build already running runs to its end.
func watchHangup(out *os.File, done <-chan struct{}) <-chan struct{} {
	return make(chan struct{})
}
