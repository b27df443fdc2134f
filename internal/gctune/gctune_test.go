package gctune_test

import (
	"runtime/debug"
	"testing"

	"github.com/mirrornet/mirrornet/internal/gctune"
)

func TestApply(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	if got := gctune.Apply(func(string) (string, bool) { return "200", true }); got != -1 {
		t.Fatalf("with GOGC set: Apply = %d, want -1 (untouched)", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("with GOGC set, the percentage changed to %d", now)
	}
	if got := gctune.Apply(func(string) (string, bool) { return "", false }); got != gctune.DefaultGCPercent {
		t.Fatalf("without GOGC: Apply = %d, want %d", got, gctune.DefaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != gctune.DefaultGCPercent {
		t.Fatalf("without GOGC, the percentage is %d, want %d", now, gctune.DefaultGCPercent)
	}
}
