package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts the profiles the environment asks for, of the
// whole command, for commands too short-lived to profile through a node's
// admin socket (`mirrornet get`): MIRRORNET_CPUPROFILE=FILE writes a CPU
// profile (go tool pprof FILE), MIRRORNET_TRACE=FILE an execution trace
// (go tool trace FILE). stop ends them and closes the files.
func startProfiles(getenv func(string) string) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	open := func(name string) (*os.File, error) {
		f, err := os.Create(getenv(name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return f, nil
	}
	if getenv("MIRRORNET_CPUPROFILE") != "" {
		f, err := open("MIRRORNET_CPUPROFILE")
		if err != nil {
			return stop, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("MIRRORNET_CPUPROFILE: %w", err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if getenv("MIRRORNET_TRACE") != "" {
		f, err := open("MIRRORNET_TRACE")
		if err != nil {
			stop()
			return func() {}, err
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			stop()
			return func() {}, fmt.Errorf("MIRRORNET_TRACE: %w", err)
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	return stop, nil
}
