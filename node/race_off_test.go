//go:build !race

package node

// raceEnabled: the race detector is on (see oneProcUnderRace).
const raceEnabled = false
