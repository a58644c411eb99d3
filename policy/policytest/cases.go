// Package policytest loads the command cases of policy/testdata, which
// drive the policy unit tests and the end-to-end tests of both modes.
package policytest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Case is one command case.
type Case struct {
	Name    string   `toml:"name"`
	Role    string   `toml:"role"`
	Command string   `toml:"command"`
	Allow   bool     `toml:"allow"`
	Program string   `toml:"program"`
	Args    []string `toml:"args"`
	Reason  string   `toml:"reason"`
	// ExecE2E, when not empty, says why the case cannot be sent through
	// OpenSSH.
	ExecE2E string `toml:"exec_e2e"`
}

// Stores are the values of the placeholders in the cases.
type Stores struct {
	Store, Allowed, Other string
}

// Load reads the case table with the placeholders replaced.
func Load(s Stores) ([]Case, error) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "testdata", "commands.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	var doc struct {
		Case []Case `toml:"case"`
	}
	if err := toml.NewDecoder(strings.NewReader(string(data))).DisallowUnknownFields().Decode(&doc); err != nil {
		return nil, fmt.Errorf("policytest: %s: %w", path, err)
	}
	r := strings.NewReplacer("@STORE@", s.Store, "@ALLOWED@", s.Allowed, "@OTHER@", s.Other)
	for i := range doc.Case {
		c := &doc.Case[i]
		c.Command = r.Replace(c.Command)
		for j := range c.Args {
			c.Args[j] = r.Replace(c.Args[j])
		}
	}
	return doc.Case, nil
}
