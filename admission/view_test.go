package admission

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// queueKeys describes a view's queue as its keys, in order.
func queueKeys(v View) string {
	var ks []string
	for _, q := range v.Queue {
		ks = append(ks, q.Key)
	}
	return strings.Join(ks, " ")
}

// TestSlotsView: the view shows the builds running by key and the queue
// in the order the slots will go (A's five, then B's one: B's second).
func TestSlotsView(t *testing.T) {
	var s Slots
	release, _, err := s.Acquire(nil, SlotRequest{Key: "A", Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	for i, k := range []string{"A", "A", "B"} {
		go s.Acquire(stop, SlotRequest{Key: k, Max: 1, Timeout: time.Minute})
		// One at a time, so that they queue in this order.
		for deadline := time.Now().Add(5 * time.Second); len(s.View(1).Queue) <= i; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d of %s never queued", i, k)
			}
		}
	}
	v := s.View(1)
	if v.MaxBuilds != 1 || v.Running["A"] != 1 || len(v.Running) != 1 {
		t.Errorf("running: %+v", v)
	}
	if got := queueKeys(v); got != "B A A" {
		t.Errorf("queue %q; want B first (A was served last), then A's in order", got)
	}
	for _, q := range v.Queue {
		if q.Since.IsZero() || time.Since(q.Since) > time.Minute {
			t.Errorf("a waiter since %v", q.Since)
		}
	}
	release()
}

// TestReadView: the lock directory, read as nixgate status reads it,
// shows the live sessions, builds and waiters, not those of processes
// gone.
func TestReadView(t *testing.T) {
	d := openTestDir(t)
	endA, err := d.AcquireSession("ci", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer endA()
	endB, _ := d.AcquireSession("cache", 4)
	endB()
	endC := d.Announce("free") // a key without max_sessions
	defer endC()
	release, _, _, err := d.AcquireBuild(nil, SlotRequest{Key: "ci", Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		d.AcquireBuild(stop, SlotRequest{Key: "other", Max: 1, Timeout: time.Minute})
	}()
	deadline := time.Now().Add(5 * time.Second)
	var v View
	var sessions []Holder
	for time.Now().Before(deadline) {
		if v, sessions, err = ReadView(d.Path); err == nil && len(v.Queue) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-waited
	release()
	if err != nil || v.Running["ci"] != 1 || queueKeys(v) != "other" {
		t.Errorf("ReadView = %+v, %v", v, err)
	}
	if len(sessions) != 2 || sessions[0].Key != "ci" || sessions[1].Key != "free" || sessions[0].Pid == 0 || sessions[0].Since.IsZero() {
		t.Errorf("sessions %s; want those of ci and free still open", fmt.Sprint(sessions))
	}
}
