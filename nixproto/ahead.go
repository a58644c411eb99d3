package nixproto

import (
	"io"
	"sync"
)

// aheadLimit bounds what aheadReader reads ahead while a build waits for
// a slot: a client that sends more than this before its build has a slot
// is read no further until it has.
const aheadLimit = 1 << 20

// aheadReader is the client's stream, which can be read ahead while the
// filter waits (for a build slot) and so learn that the client has closed
// its end: a Nix client never does that while it awaits an answer, so a
// closed end means the build waits for nobody. Only the filter's own
// goroutine calls Read, watchEnd and stopAhead; at most one read-ahead
// goroutine reads the stream at a time, and Read waits for it to stop.
type aheadReader struct {
	r io.Reader

	// ahead is closed when the read-ahead goroutine that Read must wait
	// for has stopped; nil when there is none to wait for. Only the
	// filter's goroutine uses it.
	ahead chan struct{}

	mu      sync.Mutex
	running bool          // a read-ahead goroutine runs
	stop    bool          // set by stopAhead: the goroutine reads no more
	ended   chan struct{} // closed when the running read-ahead met the end
	data    []byte        // read ahead and not yet returned
	err     error         // the error that ended the stream, returned after data
}

// Read returns what was read ahead first, then reads on.
func (a *aheadReader) Read(p []byte) (int, error) {
	if a.ahead != nil {
		<-a.ahead
		a.ahead = nil
	}
	a.mu.Lock()
	if len(a.data) > 0 {
		n := copy(p, a.data)
		a.data = a.data[n:]
		if len(a.data) == 0 {
			a.data = nil
		}
		a.mu.Unlock()
		return n, nil
	}
	err := a.err
	a.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return a.r.Read(p)
}

// watchEnd reads the client's stream ahead, up to aheadLimit, until
// stopAhead, and returns a channel that is closed if the stream ends
// (EOF or an error) before that. A read-ahead still blocked in a read
// from an earlier wait is taken up again rather than joined by another.
func (a *aheadReader) watchEnd() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		ended := make(chan struct{})
		close(ended)
		return ended
	}
	a.stop = false
	if a.running {
		return a.ended
	}
	a.running = true
	a.ended = make(chan struct{})
	done := make(chan struct{})
	a.ahead = done
	go a.readAhead(done, a.ended)
	return a.ended
}

// readAhead is the read-ahead goroutine: it appends what it reads to
// a.data until stopped, full, or at the stream's end (closing ended), and
// closes done when it no longer touches the stream.
func (a *aheadReader) readAhead(done, ended chan struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	for {
		a.mu.Lock()
		if a.stop || len(a.data) >= aheadLimit {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		n, err := a.r.Read(buf)
		a.mu.Lock()
		a.data = append(a.data, buf[:n]...)
		if err != nil {
			a.err = err
			a.running = false
			a.mu.Unlock()
			close(ended)
			return
		}
		a.mu.Unlock()
	}
}

// stopAhead ends the read-ahead that watchEnd started: the read in
// flight, if any, is the last, and Read waits for it.
func (a *aheadReader) stopAhead() {
	a.mu.Lock()
	a.stop = true
	a.mu.Unlock()
}
