package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
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

// BenchmarkIdleNetwork runs MIRRORNET_IDLE_N (default 12) real `mirrornet
// node` processes on the lan profile, each in a network namespace of its
// own (needs root; skipped otherwise), joined by a bridge in a further
// namespace, so that each mirror's traffic is exactly its namespace's
// interface counters (/proc/PID/net/dev: every byte on the wire, TCP/IP
// headers and ACKs included, not only gossip). Mirror 0 holds the sample
// dapp; the others bootstrap from it. After they settle, over a window of
// MIRRORNET_IDLE_WINDOW (default 60 s), it reports per mirror the mean and
// the worst of: CPU (% of one core), RSS, and bytes per second sent plus
// received. Goals: under 1% of a core, under 50 MiB RSS, under 5 KB/s.
//
//	go test ./cmd/mirrornet -run XXX -bench IdleNetwork -benchtime 1x -timeout 20m
//
// The namespaces are named mirrornet-idle-PID-*, never touch the machine's
// own interfaces, and are deleted at the end.
func BenchmarkIdleNetwork(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("needs iproute2")
	}
	n := 12
	if v := os.Getenv("MIRRORNET_IDLE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 || n > 200 {
			b.Fatalf("MIRRORNET_IDLE_N=%q: want 2 to 200", v)
		}
	}
	window := 60 * time.Second
	if v := os.Getenv("MIRRORNET_IDLE_WINDOW"); v != "" {
		var err error
		if window, err = time.ParseDuration(v); err != nil {
			b.Fatalf("MIRRORNET_IDLE_WINDOW=%q: %v", v, err)
		}
	}
	for range b.N {
		nss := idleNamespaces(b, n)
		load, _ := os.ReadFile("/proc/loadavg")
		b.Logf("%d mirrors, load average at start: %s", n, strings.TrimSpace(string(load)))
		var procs []*proc
		var bootstrap string
		for i := range n {
			args := []string{"--profile", "lan", "--log-level", "warn",
				"--listen", fmt.Sprintf("/ip4/%s/tcp/4001", idleIP(i)), "--http", idleIP(i) + ":8080"}
			if i > 0 {
				args = append(args, "--bootstrap", bootstrap)
			}
			p := startNodeIn(b, nss[i], args...)
			procs = append(procs, p)
			if i == 0 {
				bootstrap = p.info(b).Addrs[0]
				if _, errOut, code := mirrornet(b, "publish", "--data", p.data, "../../examples/sample-dapp/site"); code != 0 {
					b.Fatalf("publish: %s", errOut)
				}
			}
		}
		// Settle: every mirror sees all n alive (status of the last one),
		// then a little more for meshes and syncs.
		waitFor(b, 120*time.Second, "every mirror alive", func() (bool, string) {
			alive, msg := aliveIn(b, nss[n-1], "http://"+idleIP(n-1)+":8080")
			return alive >= n, msg
		})
		<-time.After(10 * time.Second) // settle, not a synchronisation
		type snap struct {
			cpu     time.Duration
			bytes   int64
			packets int64
		}
		before := make([]snap, n)
		// The nodes' own counters of gossipsub RPC bytes and ping payload
		// (read before the interface counters at the start and after them
		// at the end: reading /metrics is traffic too).
		gossip0, ping0 := make([]float64, n), make([]float64, n)
		for i := range procs {
			gossip0[i], ping0[i] = livenessCounters(b, nss[i], "http://"+idleIP(i)+":8080")
		}
		for i, p := range procs {
			_, cpu, err := procStat(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			nb, np := netCounters(b, p.cmd.Process.Pid)
			before[i] = snap{cpu, nb, np}
		}
		<-time.After(window) // the measurement window
		var cpuSum, cpuMax, rssSum, rssMax, bwSum, bwMax, pktSum float64
		after, afterPackets := make([]int64, n), make([]int64, n)
		for i, p := range procs {
			after[i], afterPackets[i] = netCounters(b, p.cmd.Process.Pid)
		}
		var gossipSum, pingSum float64
		for i := range procs {
			g, p := livenessCounters(b, nss[i], "http://"+idleIP(i)+":8080")
			gossipSum += g - gossip0[i]
			pingSum += p - ping0[i]
		}
		for i, p := range procs {
			rss, cpu, err := procStat(p.cmd.Process.Pid)
			if err != nil {
				b.Fatal(err)
			}
			c := 100 * float64(cpu-before[i].cpu) / float64(window)
			m := float64(rss) / (1 << 20)
			bw := float64(after[i]-before[i].bytes) / window.Seconds()
			pktSum += float64(afterPackets[i]-before[i].packets) / window.Seconds()
			cpuSum, rssSum, bwSum = cpuSum+c, rssSum+m, bwSum+bw
			cpuMax, rssMax, bwMax = max(cpuMax, c), max(rssMax, m), max(bwMax, bw)
		}
		f := float64(n)
		b.ReportMetric(cpuSum/f, "CPU-%core/mirror")
		b.ReportMetric(cpuMax, "CPU-%core-max")
		b.ReportMetric(rssSum/f, "RSS-MiB/mirror")
		b.ReportMetric(rssMax, "RSS-MiB-max")
		b.ReportMetric(bwSum/f, "net-B/s/mirror")
		b.ReportMetric(bwMax, "net-B/s-max")
		b.ReportMetric(pktSum/f, "net-packets/s/mirror")
		b.ReportMetric(gossipSum/f/window.Seconds(), "gossipsub-B/s/mirror")
		b.ReportMetric(pingSum/f/window.Seconds(), "ping-payload-B/s/mirror")
	}
}

// livenessCounters reads a node's /metrics in its namespace: gossipsub RPC
// bytes sent plus received, and ping payload bytes sent plus received.
func livenessCounters(b *testing.B, ns, url string) (gossip, ping float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "curl", "-sf", url+"/metrics").Output()
	if err != nil {
		b.Logf("metrics of %s: %v (gossip and ping figures will be wrong)", url, err)
		return 0, 0
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "mirrornet_gossip_sent_bytes_total", "mirrornet_gossip_received_bytes_total":
			gossip += v
		case "mirrornet_liveness_ping_sent_bytes_total", "mirrornet_liveness_ping_received_bytes_total":
			ping += v
		}
	}
	return gossip, ping
}

// idleIP is mirror i's address on the benchmark's bridge.
func idleIP(i int) string { return fmt.Sprintf("10.213.%d.%d", (i+1)/250, (i+1)%250+1) }

// idleNamespaces makes n namespaces, each with a veth to a bridge in a
// hub namespace, and removes them at cleanup.
func idleNamespaces(b *testing.B, n int) []string {
	b.Helper()
	run := func(args ...string) {
		b.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	prefix := fmt.Sprintf("mirrornet-idle-%d", os.Getpid())
	hub := prefix + "-hub"
	if out, err := exec.Command("ip", "netns", "add", hub).CombinedOutput(); err != nil {
		b.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "delete", hub).Run() })
	run("-n", hub, "link", "add", "br0", "type", "bridge")
	run("-n", hub, "link", "set", "br0", "up")
	var out []string
	for i := range n {
		ns := fmt.Sprintf("%s-%d", prefix, i)
		run("netns", "add", ns)
		b.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
		// Create the pair inside the mirror's namespace, then move the
		// hub end: nothing is ever created in the machine's namespace.
		run("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", fmt.Sprintf("v%d", i))
		run("-n", ns, "link", "set", fmt.Sprintf("v%d", i), "netns", hub)
		run("-n", hub, "link", "set", fmt.Sprintf("v%d", i), "master", "br0")
		run("-n", hub, "link", "set", fmt.Sprintf("v%d", i), "up")
		run("-n", ns, "addr", "add", idleIP(i)+"/16", "dev", "eth0")
		run("-n", ns, "link", "set", "eth0", "up")
		run("-n", ns, "link", "set", "lo", "up")
		out = append(out, ns)
	}
	return out
}

// netCounters reads the bytes and packets, received plus sent, of every
// interface but lo in the network namespace of process pid.
func netCounters(b *testing.B, pid int) (bytes, packets int64) {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, _ := strconv.ParseInt(f[0], 10, 64)
		rxp, _ := strconv.ParseInt(f[1], 10, 64)
		tx, _ := strconv.ParseInt(f[8], 10, 64)
		txp, _ := strconv.ParseInt(f[9], 10, 64)
		bytes += rx + tx
		packets += rxp + txp
	}
	return bytes, packets
}

// startNodeIn starts `mirrornet node` in network namespace ns.
func startNodeIn(b *testing.B, ns string, extra ...string) *proc {
	b.Helper()
	data := b.TempDir()
	args := append([]string{"netns", "exec", ns, binPath, "node", "--data", data, "--mdns=false", "--dht=false"}, extra...)
	cmd := exec.Command("ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "HOME="+data)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &proc{cmd: cmd, data: data, stderr: &stderr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-p.done
		p.done <- err
	})
	waitFor(b, 30*time.Second, "node.json of "+data, func() (bool, string) {
		_, err := node.ReadInfo(data)
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup, which waits for it
			b.Fatalf("node exited early: %v\n%s", err, stderr.String())
		default:
		}
		return err == nil, fmt.Sprint(err)
	})
	return p
}

// aliveIn counts the mirrors `mirrornet status --json`, run in namespace
// ns against url, lists alive.
func aliveIn(b *testing.B, ns, url string) (int, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, binPath, "status", "--http", url, "--json").Output()
	if err != nil {
		return 0, err.Error()
	}
	var st struct {
		Mirrors []struct {
			State string `json:"state"`
		} `json:"mirrors"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, err.Error()
	}
	alive := 0
	for _, m := range st.Mirrors {
		if m.State == "alive" {
			alive++
		}
	}
	return alive, fmt.Sprintf("%d alive", alive)
}
