package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStat returns a process's resident set (bytes) and CPU time used.
func procStat(pid int) (rss int64, cpu time.Duration, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which is in parentheses).
	rest := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+2:])
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	cpu = time.Duration(utime+stime) * time.Second / clkTck
	return rss, cpu, nil
}

// BenchmarkIdleNode runs real `mirrornet node` processes on the lan profile
// (three mirrors, so gossip, heartbeats and sync run; one holds the sample
// dapp) and reports the RSS and CPU share of one of them over a 30 s
// window once they have settled. Goal: under 50 MiB RSS and under 1% of one
// core.
func BenchmarkIdleNode(b *testing.B) {
	for range b.N {
		start := func(extra ...string) *proc {
			args := append([]string{"--profile", "lan", "--log-level", "warn"}, extra...)
			return startNode(b, args...)
		}
		a := start()
		ia := a.info(b)
		start("--bootstrap", ia.HTTP)
		start("--bootstrap", ia.HTTP)
		if _, errOut, code := mirrornet(b, "publish", "--data", a.data, "../../examples/sample-dapp/site"); code != 0 {
			b.Fatalf("publish: %s", errOut)
		}
		<-time.After(5 * time.Second) // settle: mesh formed, sync done
		pid := a.cmd.Process.Pid
		_, cpu0, err := procStat(pid)
		if err != nil {
			b.Fatal(err)
		}
		const window = 30 * time.Second
		<-time.After(window) // the measurement window
		rss, cpu1, err := procStat(pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
		b.ReportMetric(100*float64(cpu1-cpu0)/float64(window), "CPU-%")
	}
}
