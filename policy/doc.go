// Package policy decides what a Nix client may run on a builder.
//
// It loads and validates the TOML configuration, parses the command
// string an SSH client sent with a POSIX shell-word parser, matches the
// resulting argv exactly against the forms Nix, Lix and Hydra send, and
// returns a Decision; for the Nix protocols it decides each operation by
// the key's role (OpPolicy). Its only I/O is reading the configuration
// file and playing Lix 2.93.0's start-up dialogue on the session's
// stdin and stdout (ReadLixBootstrap); it never starts a process.
// Package sandbox turns an allowing Decision into a running command, and
// package nixproto applies its per-operation decisions to the stream.
//
// It also holds Error, the error type of every nixgate package but keys:
// its text names the package ("sandbox: …"), and Line is the line a
// client or operator is shown.
package policy
