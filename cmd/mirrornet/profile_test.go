package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// MIRRORNET_CPUPROFILE and MIRRORNET_TRACE profile a whole command: the
// files are written by the time run returns.
func TestProfileEnv(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"MIRRORNET_CPUPROFILE": filepath.Join(dir, "cpu.prof"),
		"MIRRORNET_TRACE":      filepath.Join(dir, "run.trace"),
	}
	getenv := func(k string) string { return env[k] }
	if err := run(context.Background(), []string{"version"}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, p := range env {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: not written (%v)", p, err)
		}
	}
	env["MIRRORNET_TRACE"] = filepath.Join(dir, "no", "such", "dir")
	if err := run(context.Background(), []string{"version"}, getenv, io.Discard, io.Discard); err == nil {
		t.Error("an unwritable MIRRORNET_TRACE was accepted")
	}
}
