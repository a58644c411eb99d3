package main

import (
	"io"
	"log/slog"
	"log/syslog"
	"os"
)

// openLog returns the audit logger: JSON records appended to file, or to
// the system log when file is empty or cannot be opened, or nowhere when
// there is no system log either. It never writes to stdout or stderr,
// which belong to the client.
func openLog(file string) (*slog.Logger, func()) {
	var w io.WriteCloser
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err == nil {
			w = f
		}
	}
	if w == nil {
		if s, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "nixgate"); err == nil {
			w = s
		}
	}
	if w == nil {
		return slog.New(slog.DiscardHandler), func() {}
	}
	return slog.New(slog.NewJSONHandler(w, nil)), func() { w.Close() }
}

// openExecLog is openLog for exec mode, which runs as the build account:
// a file named by [log] file is one the account, and so a build, can
// rewrite, so each record goes to the system log as well, where it
// cannot. With file empty it is openLog's system log alone.
func openExecLog(file string) (*slog.Logger, func()) {
	if file == "" {
		return openLog("")
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return openLog("")
	}
	s, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "nixgate")
	if err != nil {
		return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }
	}
	return slog.New(slog.NewJSONHandler(io.MultiWriter(f, s), nil)), func() { f.Close(); s.Close() }
}
