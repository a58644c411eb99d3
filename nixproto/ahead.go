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
// goroutine calls Read, watchEnd and stopAhead.
type aheadReader struct {
	r io.Reader

	// ahead is closed when the read-ahead goroutine has stopped; nil when
	// none runs.
	ahead chan struct{}

	mu   sync.Mutex
	stop bool   // set by stopAhead: read no more ahead
	data []byte // read ahead and not yet returned
	err  error  // the error that ended the read-ahead, returned after data
}

// Read returns what was read ahead first, then reads on.
func (a *aheadReader) Read(p []byte) (int, error) {
	if a.ahead != nil {
		<-a.ahead
		a.ahead = nil
	}
	if len(a.data) > 0 {
		n := copy(p, a.data)
		a.data = a.data[n:]
		return n, nil
	}
	if a.err != nil {
		return 0, a.err
	}
	return a.r.Read(p)
}

// watchEnd reads the client's stream ahead, up to aheadLimit, until
// stopAhead, and returns a channel that is closed if the stream ends
// (EOF or an error) before that.
func (a *aheadReader) watchEnd() <-chan struct{} {
	ended := make(chan struct{})
	if a.err != nil {
		close(ended)
		return ended
	}
	a.mu.Lock()
	a.stop = false
	a.mu.Unlock()
	done := make(chan struct{})
	a.ahead = done
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			a.mu.Lock()
			full := a.stop || len(a.data) >= aheadLimit
			a.mu.Unlock()
			if full {
				return
			}
			n, err := a.r.Read(buf)
			a.mu.Lock()
			a.data = append(a.data, buf[:n]...)
			if err != nil {
				a.err = err
			}
			a.mu.Unlock()
			if err != nil {
				close(ended)
				return
			}
		}
	}()
	return ended
}

// stopAhead ends the read-ahead that watchEnd started: the read in
// flight, if any, is the last, and Read waits for it.
func (a *aheadReader) stopAhead() {
	a.mu.Lock()
	a.stop = true
	a.mu.Unlock()
}
