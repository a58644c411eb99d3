package admission

import (
	"slices"
	"testing"
	"time"
)

func TestNextKey(t *testing.T) {
	tests := []struct {
		name string
		qs   []keyQueue
		want int
	}{
		{"none", nil, -1},
		{"no waiters", []keyQueue{{running: 1}, {served: 3}}, -1},
		{"one", []keyQueue{{waiters: []uint64{4}}}, 0},
		{"least recently served", []keyQueue{{served: 9, waiters: []uint64{1}}, {served: 5, waiters: []uint64{8}}}, 1},
		{"never served goes first", []keyQueue{{served: 2, waiters: []uint64{1}}, {waiters: []uint64{8}}}, 1},
		{"tie: oldest waiter", []keyQueue{{waiters: []uint64{7}}, {waiters: []uint64{3}}, {waiters: []uint64{5}}}, 1},
		{"at its own limit", []keyQueue{{running: 2, max: 2, waiters: []uint64{1}}, {served: 9, waiters: []uint64{8}}}, 1},
		{"all at their limits", []keyQueue{{running: 1, max: 1, waiters: []uint64{1}}, {running: 3, max: 2, waiters: []uint64{2}}}, -1},
		{"under its limit", []keyQueue{{running: 1, max: 2, waiters: []uint64{1}}, {served: 9, waiters: []uint64{8}}}, 0},
		{"only the head counts", []keyQueue{{waiters: []uint64{5, 1}}, {waiters: []uint64{3, 4}}}, 1},
	}
	for _, tt := range tests {
		if got := nextKey(tt.qs); got != tt.want {
			t.Errorf("%s: nextKey(%+v) = %d; want %d", tt.name, tt.qs, got, tt.want)
		}
	}
}

func TestFairGrants(t *testing.T) {
	tests := []struct {
		name string
		free int
		seq  uint64
		qs   []keyQueue
		want []uint64
	}{
		{"no free slot", 0, 10, []keyQueue{{waiters: []uint64{1}}}, nil},
		{"no waiters", 3, 10, []keyQueue{{running: 1}}, nil},
		{"one slot, FIFO within a key", 1, 10, []keyQueue{{waiters: []uint64{2, 1}}}, []uint64{2}},
		// A (served at 4) has five waiting, B (never served) one:
		// B's goes first, then A's in order.
		{"round robin", 3, 10, []keyQueue{{served: 4, waiters: []uint64{5, 6, 7, 8, 9}}, {waiters: []uint64{10}}}, []uint64{10, 5, 6}},
		{"three keys take turns", -1, 10, []keyQueue{
			{waiters: []uint64{1, 2, 3}}, {waiters: []uint64{4, 5}}, {waiters: []uint64{6}},
		}, []uint64{1, 4, 6, 2, 5, 3}},
		{"key limits with no builder limit", -1, 10, []keyQueue{
			{running: 1, max: 2, waiters: []uint64{1, 2, 3}}, {max: 1, waiters: []uint64{4, 5}},
		}, []uint64{1, 4}},
		{"a key at its limit does not hold back others", 2, 10, []keyQueue{
			{running: 1, max: 1, waiters: []uint64{1}}, {served: 9, waiters: []uint64{2, 3}},
		}, []uint64{2, 3}},
	}
	for _, tt := range tests {
		before := slices.Clone(tt.qs)
		if got := fairGrants(tt.free, tt.seq, tt.qs); !slices.Equal(got, tt.want) {
			t.Errorf("%s: fairGrants(%d, %d, %+v) = %v; want %v", tt.name, tt.free, tt.seq, tt.qs, got, tt.want)
		}
		for i := range before {
			if before[i].running != tt.qs[i].running || before[i].served != tt.qs[i].served || !slices.Equal(before[i].waiters, tt.qs[i].waiters) {
				t.Errorf("%s: fairGrants changed its argument: %+v; was %+v", tt.name, tt.qs, before)
			}
		}
	}
}

func TestNoSlotError(t *testing.T) {
	tests := []struct {
		max, keyMax int
		want        string
	}{
		{1, 0, "admission: no build slot within 1s (max_builds 1, 2 waiting)"},
		{0, 1, "admission: no build slot within 1s (key a max_builds 1, 2 waiting)"},
		{4, 1, "admission: no build slot within 1s (max_builds 4, key a max_builds 1, 2 waiting)"},
	}
	for _, tt := range tests {
		if got := noSlotError(time.Second, "a", tt.max, tt.keyMax, 2).Error(); got != tt.want {
			t.Errorf("noSlotError(max %d, keyMax %d) = %q; want %q", tt.max, tt.keyMax, got, tt.want)
		}
	}
}
