package gateway

import (
	"slices"
	"testing"
)

// TestProcsFollowConnections drives procs with a stand-in runtime
// (default of 4 processors) and checks what it sets as connections open
// and close.
func TestProcsFollowConnections(t *testing.T) {
	tests := []struct {
		name  string
		off   bool  // GOMAXPROCS in the environment
		steps []int // +1 opened, -1 closed
		want  []int // GOMAXPROCS after each step
		calls []string
	}{
		{"one connection runs on one processor", false, []int{+1, -1}, []int{1, 1}, []string{"set 1"}},
		{"as many as connections", false, []int{+1, +1, +1, -1, -1}, []int{1, 2, 3, 2, 1}, []string{"set 1", "set 2", "set 3", "set 2", "set 1"}},
		{"never more than the runtime's choice, which is reset, not set",
			false, []int{+1, +1, +1, +1, +1, -1, -1}, []int{1, 2, 3, 4, 4, 4, 3},
			[]string{"set 1", "set 2", "set 3", "reset", "set 3"}},
		{"the environment's setting stands", true, []int{+1, +1, -1}, []int{4, 4, 4}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, def := 4, 4
			var calls []string
			p := &procs{
				set: func(n int) int {
					prev := cur
					if n > 0 {
						cur = n
						calls = append(calls, "set "+string(rune('0'+n)))
					}
					return prev
				},
				reset: func() { cur = def; calls = append(calls, "reset") },
				off:   tt.off, most: def, now: def,
			}
			var got []int
			for _, d := range tt.steps {
				p.add(d)
				got = append(got, cur)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("GOMAXPROCS after each step = %v, want %v", got, tt.want)
			}
			if !slices.Equal(calls, tt.calls) {
				t.Errorf("calls = %q, want %q", calls, tt.calls)
			}
		})
	}
}
