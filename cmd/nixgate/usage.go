package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nixgate/nixgate/policy"
	keyusage "github.com/nixgate/nixgate/usage"
)

const usageExample = `Shows what each key used of this builder: Nix sessions run, builds (build
operations that asked for something to be built), build time (each build
operation from reaching Nix until the client's next operation), bytes to
and from Nix, store paths imported, and refusals (sessions refused and
protocol operations refused). serve and exec mode add every session to
` + keyusage.FileName + ` in the configuration's state_dir; it lasts across restarts.
The store counts by the hour: --since starts at the hour it falls in.
It may run while serve runs.

Without --config it uses what nixgate serve would use: ` + defaultConfigPath + `,
or the embedded default when that does not exist.

Examples:
  nixgate usage
  nixgate usage --since 24h
  nixgate usage --since 7d --json
  nixgate usage --since 2026-11-01 --config /etc/nixgate/nixgate.toml`

// usageReadTimeout bounds the wait for a session being added to the
// store.
const usageReadTimeout = 5 * time.Second

func runUsage(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("usage", "[--since DURATION|DATE] [--json] [--config FILE | --embedded]", usageExample, stdout, stderr)
	configFile := fs.String("config", "", "the nixgate configuration `FILE` (default: what nixgate serve would use)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration, as nixgate serve --embedded (make run) does")
	sinceFlag := fs.String("since", "", "count from `WHEN` on: a duration ago (90m, 24h, 7d) or a date (2026-11-01, 2026-11-01T15:00, RFC 3339); default: from the start")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *embedded && *configFile != "" {
		fmt.Fprintln(stderr, "nixgate usage: give --config or --embedded, not both")
		return exitUsage
	}
	now := time.Now()
	since, err := parseSince(*sinceFlag, now)
	if err != nil {
		fmt.Fprintln(stderr, "nixgate usage: "+err.Error())
		return exitUsage
	}
	cfg, err := settingsOf(*configFile, *embedded)
	if err != nil {
		fmt.Fprintln(stderr, "nixgate usage: "+policy.Line(err))
		return exitRefused
	}
	// In a process of its own: in exec mode the build account can write
	// the store, and a damaged one could make bbolt loop or allocate
	// without end.
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "nixgate usage: "+err.Error())
		return exitRefused
	}
	sums, err := keyusage.SumsIn(exe, cfg.Serve.StateDir, since, usageReadTimeout)
	if err != nil {
		fmt.Fprintln(stderr, "nixgate usage: "+policy.Line(err))
		return exitRefused
	}
	if *asJSON {
		report := struct {
			Since *time.Time                   `json:"since"`
			Keys  map[string]keyusage.Counters `json:"keys"`
		}{Keys: sums}
		if !since.IsZero() {
			s := since.Truncate(keyusage.Bucket)
			report.Since = &s
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintln(stderr, "nixgate usage: "+err.Error())
			return exitRefused
		}
		return exitOK
	}
	if len(sums) == 0 {
		fmt.Fprintf(stdout, "no usage recorded in %s\n", keyusage.Path(cfg.Serve.StateDir))
		return exitOK
	}
	if !since.IsZero() {
		fmt.Fprintf(stdout, "since %s\n", since.Truncate(keyusage.Bucket).Format("2006-01-02 15:04 MST"))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "KEY\tSESSIONS\tBUILDS\tBUILD TIME\tBYTES IN\tBYTES OUT\tIMPORTED\tREFUSALS\t")
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		c := sums[k]
		bt := time.Duration(c.BuildSeconds * float64(time.Second))
		if bt < time.Minute {
			bt = bt.Round(time.Millisecond)
		} else {
			bt = bt.Round(time.Second)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t\n", k, c.Sessions, c.Builds, bt, humanBytes(c.BytesIn), humanBytes(c.BytesOut), c.PathsImported, c.Refusals)
	}
	tw.Flush()
	return exitOK
}

// parseSince reads --since: empty is the zero time (from the start); a
// duration (Go's syntax, plus whole days "7d") counts back from now; else
// a date, a date and time, or RFC 3339, in local time unless it says.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: a duration ago must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (24h, 7d) or a date (2026-11-01, 2026-11-01T15:00, RFC 3339)", s)
}

// humanBytes shows n in binary units, one decimal.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return ""
}
