package e2e

// Harness: nixgate's audit log. Every test reads its JSON records through
// logRecords and looks for one through findRecord, the one finder, or
// through waitRecord, waitLog and waitCommandLog, which fail the test
// when the record does not come.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logWait bounds how long the tests wait for a record that must be
// there. nixgate writes most records before it answers the client, but
// serve writes a session's record as the session ends, which may be
// after the client has gone; a record that is there is found at once.
const logWait = 30 * time.Second

// absentWait is how long a test that a record is not there watches the
// log: a session's record is written within milliseconds of its end, so
// it would have appeared by then, and a test can afford it per record.
const absentWait = 5 * time.Second

// logPoll is how often findRecord reads the log again.
const logPoll = 10 * time.Millisecond

// logRecords reads the JSON records of an audit log, oldest first; nil
// when the log does not exist (yet).
func logRecords(t testing.TB, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// findRecord is the one log finder: it reads b's audit log until a record
// for which match is true is there, for up to within (and at most
// within/logPoll+1 reads), and returns the newest such record; nil when
// none appeared. It does not fail the test: waitRecord does, for a record
// that must be there; a test that a record is absent passes absentWait
// and checks for nil.
func findRecord(t testing.TB, b *builder, within time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for reads := int(within/logPoll) + 1; reads > 0; reads-- {
		recs := logRecords(t, b.log)
		for i := len(recs) - 1; i >= 0; i-- {
			if match(recs[i]) {
				return recs[i]
			}
		}
		if !time.Now().Before(deadline) {
			break
		}
		time.Sleep(logPoll)
	}
	return nil
}

// waitRecord is findRecord within logWait for a record that must be
// there: it fails the test, saying what it looked for, when none came.
func waitRecord(t testing.TB, b *builder, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	if rec := findRecord(t, b, logWait, match); rec != nil {
		return rec
	}
	t.Fatalf("no %s appeared in %s within %v", what, b.log, logWait)
	return nil
}

// msgWith matches a record whose msg is msg and whose fields named in
// want each contain want's value, printed (fmt.Sprint); a nil want
// matches on msg alone.
func msgWith(msg string, want map[string]string) func(map[string]any) bool {
	return func(r map[string]any) bool {
		if r["msg"] != msg {
			return false
		}
		for k, v := range want {
			if !strings.Contains(fmt.Sprint(r[k]), v) {
				return false
			}
		}
		return true
	}
}

// commandMsg matches a record whose command is exactly command and whose
// msg is msg.
func commandMsg(command, msg string) func(map[string]any) bool {
	return func(r map[string]any) bool { return r["command"] == command && r["msg"] == msg }
}

// waitLog returns the newest record of b's audit log with message msg
// whose fields contain want (see msgWith), waiting for it up to logWait;
// it fails the test when none came.
func waitLog(t testing.TB, b *builder, msg string, want map[string]string) map[string]any {
	t.Helper()
	return waitRecord(t, b, fmt.Sprintf("%q log record with %v", msg, want), msgWith(msg, want))
}

// waitCommandLog is waitLog for the record with message msg of exactly
// command (see commandMsg).
func waitCommandLog(t testing.TB, b *builder, command, msg string) map[string]any {
	t.Helper()
	return waitRecord(t, b, fmt.Sprintf("%q log record for command %q", msg, command), commandMsg(command, msg))
}

// TestFindRecord checks the finder itself, on a log of its own: the
// newest match; the matchers; nil when the record never comes; and a
// record written while it waits (as serve writes a session's record)
// found.
func TestFindRecord(t *testing.T) {
	b := &builder{log: filepath.Join(t.TempDir(), "audit.log")}
	line := func(msg, command, key string) string {
		return fmt.Sprintf(`{"msg":%q,"command":%q,"key":%q}`+"\n", msg, command, key)
	}
	writeFile(t, b.log, line("allowed", "nix-store --serve --write", "build")+line("allowed", "nix-store --serve --write", "trusted"), 0o644)

	if rec := findRecord(t, b, 0, msgWith("allowed", nil)); rec == nil || rec["key"] != "trusted" {
		t.Errorf("findRecord = %v; want the newest match, key trusted", rec)
	}
	if rec := findRecord(t, b, 0, msgWith("allowed", map[string]string{"key": "buil"})); rec == nil || rec["key"] != "build" {
		t.Errorf("msgWith with a part of a field = %v; want key build", rec)
	}
	if rec := findRecord(t, b, 0, commandMsg("nix-store --serve", "allowed")); rec != nil {
		t.Errorf("commandMsg matched a longer command: %v", rec)
	}
	if rec := findRecord(t, b, 200*time.Millisecond, msgWith("session ended", nil)); rec != nil {
		t.Errorf("an absent record: %v; want nil", rec)
	}

	go func() {
		time.Sleep(100 * time.Millisecond)
		f, err := os.OpenFile(b.log, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return
		}
		f.WriteString(line("session ended", "nix-store --serve --write", "build"))
		f.Close()
	}()
	if rec := waitLog(t, b, "session ended", map[string]string{"key": "build"}); rec["command"] != "nix-store --serve --write" {
		t.Errorf("waitLog = %v", rec)
	}
}
