package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// TestE2EKuboPinRounds pins a bundle of 300 blocks from one mirror into a
// stock kubo again and again (pin, unpin, garbage-collect), as an operator
// checking a mirror would. Every round must finish, and none may take more
// than ten times the median.
//
// kubo v0.43.1 used to hang in about one round in twelve, for good (until
// a reconnect), waiting for a block the mirror holds: see wants.Tracker.Due
// (internal/bitswapserve/wants) for how its bitswap client loses track of a
// want. The race starts when kubo's simulated DONT_HAVEs (its timer for a
// busy peer) fire for many wants at once. A network hiccup does that every time, so
// kubo reaches the mirror through a proxy that holds the mirror's data
// back for a moment in the middle of every round: with it, a mirror
// without the fix stalls within a few rounds.
func TestE2EKuboPinRounds(t *testing.T) {
	bin := os.Getenv(kuboEnv)
	if bin == "" {
		t.Skip(kuboEnv + " is unset: the kubo pin test needs a kubo (ipfs) binary; .ci/kubo installs one and prints its path")
	}
	rounds := 12
	if s := os.Getenv("MIRRORNET_KUBO_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	k := startKubo(t, bin)
	m := startNode(t)
	mi := m.info(t)

	dir := filepath.Join(t.TempDir(), "many")
	for i := range 300 {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%10), fmt.Sprintf("f%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, seededBytes(uint64(1000+i), 256<<10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pub := publishJSON(t, m.data, dir)
	if pub.Blocks < 256 {
		t.Fatalf("bundle has %d blocks, want at least 256", pub.Blocks)
	}

	px := startHiccupProxy(t, mi.Addrs[0])
	k.ipfs(t, "swarm", "connect", px.addr)

	var times []time.Duration
	for i := range rounds {
		px.arm(int64(pub.Size)/3, 1500*time.Millisecond)
		start := time.Now()
		out, errOut, err := k.tryFor(t, 3*time.Minute, "pin", "add", "--progress=false", pub.CID)
		d := time.Since(start)
		if err != nil {
			wl, _, _ := k.tryFor(t, 10*time.Second, "bitswap", "wantlist")
			st, _ := mirrornetStatus(t, mi.HTTP)
			t.Fatalf("round %d: pin add after %s: %v: %s%s\nkubo still wants:\n%s\nmirror's bitswap state: %s", i, d, err, out, errOut, wl, st)
		}
		times = append(times, d)
		k.ipfs(t, "pin", "rm", pub.CID)
		k.ipfs(t, "repo", "gc", "--quiet")
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("%d pin rounds of %d blocks: median %s, max %s; %d hiccups; all %v", rounds, pub.Blocks, median, sorted[len(sorted)-1], px.hiccups(), times)
	for i, d := range times {
		if d > 10*median {
			t.Errorf("round %d took %s, more than 10x the median %s", i, d, median)
		}
	}
	if px.hiccups() == 0 {
		t.Errorf("the proxy never held data back: kubo did not reach the mirror through it")
	}
}

func mirrornetStatus(t *testing.T, httpURL string) (string, int) {
	t.Helper()
	out, _, code := mirrornet(t, "status", "--http", httpURL)
	return out, code
}

// tryFor is try with its own time limit.
func (k *kubo) tryFor(t *testing.T, limit time.Duration, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = k.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within %s: %w", limit, ctx.Err())
	}
	return out.String(), strings.TrimSpace(errb.String()), err
}

// hiccupProxy forwards TCP connections on loopback to a libp2p address
// and, once armed, stops forwarding the target's bytes for a moment after
// a given number of them: what a congested link or a brief outage does.
type hiccupProxy struct {
	addr string // multiaddr with /p2p/ to dial instead of the target

	mu        sync.Mutex
	fromTgt   int64 // bytes forwarded from the target
	pauseAt   int64 // when fromTgt passes this, pause (0: disarmed)
	pauseFor  time.Duration
	nHiccups  int
	listener  net.Listener
	targetTCP string
	conns     []net.Conn // both ends of every forwarded connection
	closed    bool
}

func startHiccupProxy(t *testing.T, target string) *hiccupProxy {
	t.Helper()
	tm, err := ma.NewMultiaddr(target)
	if err != nil {
		t.Fatal(err)
	}
	tcpPart, p2pPart := ma.SplitFunc(tm, func(c ma.Component) bool { return c.Protocol().Code == ma.P_P2P })
	na, err := manet.ToNetAddr(tcpPart)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lma, err := manet.FromNetAddr(ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	px := &hiccupProxy{addr: lma.Encapsulate(p2pPart).String(), listener: ln, targetTCP: na.String()}
	var wg sync.WaitGroup
	// Runs before kubo and the mirror stop (cleanups run last first), so
	// it closes the connections it forwards itself.
	t.Cleanup(func() {
		ln.Close()
		px.mu.Lock()
		px.closed = true
		for _, c := range px.conns {
			c.Close()
		}
		px.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				px.serve(c)
			}()
		}
	}()
	return px
}

// arm makes the proxy pause for d once after n more bytes from the target.
func (px *hiccupProxy) arm(n int64, d time.Duration) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.pauseAt, px.pauseFor = px.fromTgt+n, d
}

func (px *hiccupProxy) hiccups() int {
	px.mu.Lock()
	defer px.mu.Unlock()
	return px.nHiccups
}

func (px *hiccupProxy) serve(c net.Conn) {
	defer c.Close()
	tc, err := net.Dial("tcp", px.targetTCP)
	if err != nil {
		return
	}
	defer tc.Close()
	px.mu.Lock()
	if px.closed {
		px.mu.Unlock()
		return
	}
	px.conns = append(px.conns, c, tc)
	px.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(tc, c)
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := tc.Read(buf)
			if n > 0 {
				px.mu.Lock()
				px.fromTgt += int64(n)
				var pause time.Duration
				if px.pauseAt > 0 && px.fromTgt >= px.pauseAt {
					pause, px.pauseAt = px.pauseFor, 0
					px.nHiccups++
				}
				px.mu.Unlock()
				if pause > 0 {
					time.Sleep(pause) // the hiccup itself, not synchronisation
				}
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
}
