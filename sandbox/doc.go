// Package sandbox turns an allowing policy.Decision into a running Nix
// command: it finds nixgate's own copy of the program in the configured
// Nix directories, builds a clean environment with a PATH that finds Nix,
// checks that the build account cannot change its own access, and runs
// the command.
package sandbox
