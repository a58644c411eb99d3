package main

import (
	"os"
	"testing"
	"time"
)

// TestWatchHangup: the watch reports when the pipe's reader is gone
// (sshd has exited), not while it is there, and stops when done closes.
func TestWatchHangup(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan struct{})
	defer close(done)
	gone := watchHangup(w, done)
	select {
	case <-gone:
		t.Fatal("hangup reported while the reader is there")
	case <-time.After(3 * hangupPoll):
	}
	r.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("no hangup reported 10 s after the reader closed")
	}
}

// TestWatchHangupDone: once done closes, the watch stops and reports
// nothing, even when the reader goes later.
func TestWatchHangupDone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan struct{})
	gone := watchHangup(w, done)
	close(done)
	time.Sleep(5 * hangupPoll) // the watch sees done
	r.Close()
	select {
	case <-gone:
		t.Fatal("hangup reported after done")
	case <-time.After(3 * hangupPoll):
	}
}
