//go:build race

package e2e

// raceEnabled builds nixgate with the race detector too, so that the
// end-to-end tests also look for data races in the server.
const raceEnabled = true
