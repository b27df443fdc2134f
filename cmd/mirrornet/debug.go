package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mirrornet/mirrornet/internal/debugprof"
	"github.com/mirrornet/mirrornet/node"
)

// runDebug dispatches `mirrornet debug SUBCOMMAND`.
func runDebug(ctx context.Context, env *cmdEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(env.stderr, "usage: mirrornet debug pprof --data DIR [--profile NAME] [--seconds N] -o FILE")
		if len(args) == 0 {
			return usageErrorf("debug: no subcommand given")
		}
		return errHelp
	}
	switch args[0] {
	case "pprof":
		return runDebugPprof(ctx, env, args[1:])
	}
	return usageErrorf("debug: unknown subcommand %q (have: pprof)", args[0])
}

// runDebugPprof writes a profile of the running node, taken through its
// admin socket, for `go tool pprof FILE`.
func runDebugPprof(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "debug pprof", "--data DIR [--profile NAME] [--seconds N] -o FILE")
	data := dataFlag(fs)
	profile := fs.String("profile", "profile", "profile to take: profile (CPU), heap, allocs, goroutine, block, mutex, threadcreate, or trace")
	secs := fs.Int("seconds", 10, fmt.Sprintf("how long to sample a CPU profile (1-%d) or trace (1-%d)", debugprof.MaxCPUSeconds, debugprof.MaxTraceSeconds))
	out := fs.String("o", "", "file to write (required); read it with 'go tool pprof FILE' ('go tool trace FILE' for a trace)")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("debug pprof: unexpected argument %q", pos[0])
	}
	if *out == "" {
		return usageErrorf("debug pprof: -o FILE is required")
	}
	q := url.Values{}
	switch *profile {
	case "profile", "trace":
		max := debugprof.MaxCPUSeconds
		if *profile == "trace" {
			max = debugprof.MaxTraceSeconds
		}
		if *secs < 1 || *secs > max {
			return usageErrorf("debug pprof: --seconds must be from 1 to %d, got %d", max, *secs)
		}
		q.Set("seconds", fmt.Sprint(*secs))
	case "heap":
		q.Set("gc", "1")
	}
	ac, err := node.DialAdmin(*data)
	if err != nil {
		return fmt.Errorf("debug pprof: %w", err)
	}
	// Write beside the target and rename, so a failed download leaves no
	// file that go tool pprof would choke on.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".pprof-*")
	if err != nil {
		return fmt.Errorf("debug pprof: %w", err)
	}
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(ctx, time.Duration(*secs)*time.Second+time.Minute)
	defer cancel()
	n, err := ac.Download(ctx, debugprof.Path+url.PathEscape(*profile)+"?"+q.Encode(), tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("debug pprof: %w", err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("debug pprof: %w", err)
	}
	fmt.Fprintf(env.stderr, "wrote %s (%d bytes); read it with: go tool pprof %s\n", *out, n, *out)
	return nil
}
