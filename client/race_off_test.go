//go:build !race

package client

// raceEnabled: the race detector is on (see oneProcUnderRace).
const raceEnabled = false
