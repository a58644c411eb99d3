// Package sandbox turns an allowing policy.Decision into a running Nix
// command: it finds nixgate's own copy of the program in the configured
// Nix directories, builds a clean environment with a PATH that finds Nix,
// checks that the build account cannot change its own access, and runs
// the command. It also starts the operator's login shell (role shell),
// on a pseudo-terminal when asked, as a process like the others: in a
// group of its own, stopped and reported the same way. nixgate check
// calls its checks rather than copies of them.
package sandbox
