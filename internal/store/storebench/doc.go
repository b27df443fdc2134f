// Package storebench compares block store layouts on this machine: the
// pack files mirrornet uses (internal/store), the file-per-block store it
// used before (internal/store/layout1), and kubo's pebble datastore
// (github.com/ipfs/go-ds-pebble) under boxo's blockstore. It is a module of
// its own so that pebble is not a dependency of mirrornet; run it with
//
//	cd internal/store/storebench && go test -run '^$' -bench . -benchtime 3x
//
// See docs/BENCHMARKS.md ("Block store layouts") for the figures.
package storebench
