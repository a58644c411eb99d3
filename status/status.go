// Package status is what nixgate status shows of a builder: whether it
// takes sessions (draining, health), its build slots and queue, and the
// sessions running, with what they build. serve makes it from its own
// state (gateway); exec mode's is read from its lock directory.
package status

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nixgate/nixgate/admission"
)

// Status is one look at a builder.
type Status struct {
	// Mode is "serve" or "exec".
	Mode string    `json:"mode"`
	Time time.Time `json:"time"`
	// Draining is set while nixgate drain is in force, with its reason.
	Draining    bool   `json:"draining"`
	DrainReason string `json:"drain_reason,omitempty"`
	// Healthy is false while Nix on the builder cannot work, with why.
	Healthy      bool   `json:"healthy"`
	HealthReason string `json:"health_reason,omitempty"`
	// Slots are the build slots and the builds waiting for one.
	Slots admission.View `json:"slots"`
	// Sessions are the Nix sessions running, oldest first.
	Sessions []Session `json:"sessions"`
}

// Session is one running session.
type Session struct {
	Key     string    `json:"key"`
	Remote  string    `json:"remote,omitempty"`
	Command string    `json:"command,omitempty"`
	Pid     int       `json:"pid,omitempty"`
	Started time.Time `json:"started"`
	// Building are the derivations Nix is building for it, since
	// BuildStarted; exec mode does not know them.
	Building     []string   `json:"building,omitempty"`
	BuildStarted *time.Time `json:"build_started,omitempty"`
	// BytesIn and BytesOut are what passed to and from Nix so far
	// (serve mode).
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// Text writes s for a person: one line for the builder, then the slots,
// the queue and the sessions, with times as ages.
func (s Status) Text(w io.Writer) {
	now := s.Time
	state := "taking sessions"
	switch {
	case s.Draining:
		state = "draining: " + clean(s.DrainReason)
	case !s.Healthy:
		state = "unhealthy: " + clean(s.HealthReason)
	}
	fmt.Fprintf(w, "nixgate %s, %s, at %s\n", s.Mode, state, now.Format("15:04:05"))
	running := 0
	keys := make([]string, 0, len(s.Slots.Running))
	for k, n := range s.Slots.Running {
		running += n
		keys = append(keys, k)
	}
	slices.Sort(keys)
	limit := "no limit"
	if s.Slots.MaxBuilds > 0 {
		limit = fmt.Sprintf("of %d", s.Slots.MaxBuilds)
	}
	var by []string
	for _, k := range keys {
		by = append(by, fmt.Sprintf("%s %d", clean(k), s.Slots.Running[k]))
	}
	fmt.Fprintf(w, "builds: %d running (%s)", running, limit)
	if len(by) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(by, ", "))
	}
	fmt.Fprintf(w, "; %d waiting\n", len(s.Slots.Queue))
	if len(s.Slots.Queue) > 0 {
		fmt.Fprintln(w, "\nqueue (next first):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tkey\twaiting")
		for i, q := range s.Slots.Queue {
			fmt.Fprintf(tw, "  %d\t%s\t%s\n", i+1, clean(q.Key), age(now, q.Since))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nsessions: %d\n", len(s.Sessions))
	if len(s.Sessions) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  key\tfor\tremote\tin\tout\tbuilding")
	for _, se := range s.Sessions {
		building := "-"
		if len(se.Building) > 0 {
			building = clean(strings.Join(se.Building, " "))
			if se.BuildStarted != nil {
				building += " (" + age(now, *se.BuildStarted) + ")"
			}
		}
		remote := se.Remote
		if remote == "" {
			remote = fmt.Sprintf("pid %d", se.Pid)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", clean(se.Key), age(now, se.Started), clean(remote), size(se.BytesIn), size(se.BytesOut), building)
	}
	tw.Flush()
}

// clean is s for a terminal: control characters and invalid UTF-8, which
// a key name read from exec mode's lock directory (the build account's
// to write) or a derivation's name could hold, are shown escaped, never
// sent to the terminal.
func clean(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// age is how long ago t was, to the second.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return now.Sub(t).Round(time.Second).String()
}

// size is n bytes for a person.
func size(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
