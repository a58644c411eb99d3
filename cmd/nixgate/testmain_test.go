package main

import (
	"os"
	"testing"

	keyusage "github.com/nixgate/nixgate/usage"
)

// TestMain lets the test binary be the nixgate whose process reads and
// writes the usage store (keyusage.SumsIn runs os.Executable()).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == keyusage.ChildCommand {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
