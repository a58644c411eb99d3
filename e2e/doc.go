// Package e2e holds the end-to-end tests: real Nix clients, a real OpenSSH
// client and, for exec mode, a real OpenSSH sshd started by the tests on
// 127.0.0.1 with their own configuration, keys, build account and builder
// store. They need root (to create the account and run sshd) and the
// Debian packages nix-bin, openssh-server, openssh-client and
// busybox-static; `make test` installs those.
//
// The harness is in the files below; every other file holds tests and the
// helpers only its tests use:
//
//   - harness_test.go: TestMain (builds nixgate once), run and mustRun
//     (programs bounded by commandTimeout), processes, ports, files, and
//     nixgate check's findings; raceEnabled (race_on_test.go,
//     race_off_test.go) builds nixgate with the race detector too.
//   - harness_log_test.go: the audit log. findRecord is the one finder:
//     it waits, bounded, for the newest record that matches and returns
//     nil when none came; waitRecord, waitLog and waitCommandLog fail the
//     test instead. A test that a record is absent waits absentWait.
//   - builder_test.go: the builder (newBuilder, forEachMode): its build
//     account, nixgate.toml, the read-only home, OpenSSH's sshd for exec
//     mode, Nix's root daemon (startNixDaemon), nixgate drain.
//   - builder_serve_test.go: nixgate serve, started, signalled and
//     waited for; its metrics, descriptors and health.
//   - builder_client_test.go: the client side: keys, the Nix client
//     (nix, mustNix, startNix), the OpenSSH client (ssh, greet),
//     golang.org/x/crypto dials, the protocols' greetings, store paths,
//     derivations, and checkRefused, what every refusal must look like.
//   - builder_rawclient_test.go: a raw Nix worker-protocol client.
//   - readme_machine_test.go: a machine of a test's own for the README's
//     flows (mount and network namespaces: /etc, /usr/local/bin and /var
//     copy-on-write, an empty /root and /home, only lo), shells logged in
//     to it (sessions) and services started from their unit files.
//   - readme_extract_test.go: the README's flows as plans: sections, code
//     blocks, "# on the client" segments, shell steps, substitutions and
//     stand-ins.
//
// The benchmarks (bench_*_test.go, BenchmarkReport among them) are behind
// the build tag bench, out of the correctness tests' binary: the bench/
// scripts run them with `go test -tags bench`, and `make lint` vets them.
package e2e
