// Package gctune sets the Go garbage collector for a long-running mirror
// process (`mirrornet node`).
//
// A mirror's heap is mostly long-lived data held to budgets: the verified
// statements of its view (health.DefaultMaxBytes), the evidence it keeps,
// its caches. With Go's default GOGC=100 the collector lets the heap grow
// to twice what is live before it runs, so every MiB a budget allows costs
// about two MiB of resident memory, and a flood of strangers that fills
// the statement budget shows twice over in RSS. GOGC=50 lets the heap
// grow by half of what is live instead: measured with 10,000 valid
// statements from throwaway keys (internal/adversary,
// TestFloodThrowawayKeysRSS), the victim's RSS grew by 47 MiB instead of
// 59-64 MiB, for about 5% of a core in collection during the flood
// (docs/BENCHMARKS.md). An idle mirror allocates little, so collecting
// more often costs it next to nothing.
//
// An operator's own GOGC (or GOMEMLIMIT, which works alongside it) always
// wins: Apply changes nothing when GOGC is set.
package gctune

import "runtime/debug"

// DefaultGCPercent is the GOGC a mirror process runs with unless GOGC is
// set (see the package doc for the measurement behind it).
const DefaultGCPercent = 50

// Apply sets the collector's target percentage to DefaultGCPercent unless
// lookup (os.LookupEnv: the runtime reads the process environment) finds
// GOGC set. It returns the percentage it set, or -1 if it left the
// runtime's setting alone.
func Apply(lookup func(string) (string, bool)) int {
	if _, set := lookup("GOGC"); set {
		return -1
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
