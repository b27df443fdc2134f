//go:build !race

package adversary_test

// raceEnabled: the race detector is on.
const raceEnabled = false
