// Package nixproto carries the two Nix protocols nixgate serves — the
// worker protocol of nix-daemon --stdio (ssh-ng://) and the serve protocol
// of nix-store --serve (ssh://) — between a client and Nix, as a stream
// filter.
//
// It parses everything the client sends: both hellos, whose versions it
// lowers to what it understands, and the arguments of every operation,
// framed and unframed NARs included (their contents are streamed, not
// inspected). Package policy decides each operation; nixproto passes it
// on, rewritten where the verdict says, or answers it with an error of
// its own, and not one byte of a refused operation reaches Nix.
//
// Nix reads, as an operation, only what nixgate parsed and allowed: an
// operation reaches Nix as nixgate parsed it, framed payloads in frames
// of nixgate's own (frameWriter), and what Nix checks between starting
// its answer and reading the payload nixgate checks first (check.go),
// since an error there would leave the payload to be read as operations.
// Should Nix stop there all the same, the first frame header it reads is
// an operation no Nix has, and it ends the connection (firstFrame). What Nix
// sends back reaches the client unchanged. Along the way it records what
// the session moved: the store paths imported, built and read.
//
// It neither runs processes nor speaks SSH.
package nixproto
