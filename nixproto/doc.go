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
// an operation no Nix has, and it ends the connection (firstFrame).
//
// In the worker protocol nixgate also follows Nix's answers, operation
// by operation (replies.go): it knows from each operation where Nix's
// answer ends, so it answers a refused operation in its place among
// them, counts a build's time until Nix answers it, and fails closed —
// ends the session, closing Nix's stdin — when Nix answers an operation
// that carries a payload with an error (it cannot know how much of the
// payload Nix read) or answers in a way nixgate cannot follow. Nix's
// bytes reach the client unchanged. Along the way it records what the
// session moved: the store paths imported, built and read.
//
// It neither runs processes nor speaks SSH.
package nixproto
