// Package archtest holds the architecture test: it fails when a pure
// package (wire formats, attestation, health view, block store, bundle
// builder, probe scheduling, domain and release logic) comes to depend, even
// indirectly, on the libp2p host, gossipsub, net/http or the node package,
// when protocol imports anything outside the standard library, or when
// anything but cmd/... imports node (the one composition root).
//
// The package has no code; run it with `go test ./internal/archtest`. It
// runs `go list` and is skipped when the go tool is not on PATH. To declare a
// new pure package, add it to the pure table in arch_test.go.
package archtest
