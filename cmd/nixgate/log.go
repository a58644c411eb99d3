package main

import (
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
)

// The audit log: JSON records, one per event. Serve mode writes them to
// [log] file or its stderr (the journal); exec mode, whose stdout and
// stderr belong to the client, to the system log, and to [log] file too.

// serveLog returns serve mode's audit logger: records appended to file,
// or with file empty written to stderr. A file that cannot be opened is
// an error.
func serveLog(file string, stderr io.Writer) (*slog.Logger, func(), error) {
	if file == "" {
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() {}, nil
	}
	f, err := openLogFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }, nil
}

// execLog returns exec mode's audit logger, which never writes to stdout
// or stderr. Exec mode runs as the build account: a file named by [log]
// file is one the account, and so a build, can rewrite, so each record
// goes to the system log as well, where it cannot. With file empty, or
// when it cannot be opened, records go to the system log alone; with no
// system log either, to the file alone or nowhere.
func execLog(file string) (*slog.Logger, func()) {
	var ws []io.Writer
	var closers []io.Closer
	if file != "" {
		if f, err := openLogFile(file); err == nil {
			ws, closers = append(ws, f), append(closers, f)
		}
	}
	if s, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "nixgate"); err == nil {
		ws, closers = append(ws, s), append(closers, s)
	}
	if len(ws) == 0 {
		return slog.New(slog.DiscardHandler), func() {}
	}
	return slog.New(slog.NewJSONHandler(io.MultiWriter(ws...), nil)), func() {
		for _, c := range closers {
			c.Close()
		}
	}
}

// openLogFile opens the log file for appending, creating it with mode
// 0640.
func openLogFile(file string) (*os.File, error) {
	return os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}
