//go:build race

package runner

// raceEnabled: the race detector slows Ed25519 by two orders of magnitude;
// simulations then run fewer rounds (the properties they check hold from
// the first rounds on).
const raceEnabled = true
