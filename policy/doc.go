// Package policy decides what a Nix client may run on a builder.
//
// It is pure: it loads and validates the TOML configuration, parses the
// command string an SSH client sent with a POSIX shell-word parser, matches
// the resulting argv exactly against the forms Nix, Lix and Hydra send, and
// returns a Decision. It performs no I/O beyond reading the configuration
// file and never starts a process; package sandbox turns an allowing
// Decision into a running command.
package policy
