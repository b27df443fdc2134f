package node

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
)

// These benchmarks compare mirrornet's gossip with hashicorp/memberlist
// (LAN config, real loopback UDP/TCP), in the same run:
//
//   - propagation: one node announces something new; time until every
//     node has it (mirrornet: a signed liveness statement; memberlist: a
//     node-metadata update);
//   - failure detection: one node crashes; time until every survivor
//     considers it dead (mirrornet: view state dead; memberlist:
//     NotifyLeave).
//
// mirrornet runs on mocknet with 10 ms links (each node connected to 8
// others), on the lan profile. Run with:
//
//	go test ./node -run XXX -bench Gossip -benchtime 1x -timeout 30m

// benchNet is N mirrornet nodes on mocknet.
type benchNet struct {
	mn    mocknet.Mocknet
	nodes []*Node
	// seen[i] is the highest (signer → seq) accepted by node i.
	mu     sync.Mutex
	seen   []map[peer.ID]uint64
	cond   *sync.Cond
	dilate int
}

// newBenchNet starts n nodes on the named profile. dilate > 1 slows the
// simulated world down by that factor (heartbeats, timeouts and link
// latency all stretched) so that n nodes sharing two cores get the CPU
// time per simulated second that n real machines would have: every node
// verifies every other node's signature each heartbeat, n² verifications
// in one process. Durations measured in a dilated net are divided by
// dilate before they are reported. Links have 10 ms latency unless
// MIRRORNET_BENCH_LINK_MS says otherwise.
func newBenchNet(b *testing.B, n int, profile string, dilate int) *benchNet {
	return newBenchNetLinks(b, n, profile, dilate, benchLinkLatency(b, 10*time.Millisecond))
}

// benchLinkLatency is MIRRORNET_BENCH_LINK_MS, or def when it is unset.
func benchLinkLatency(b testing.TB, def time.Duration) time.Duration {
	v := os.Getenv("MIRRORNET_BENCH_LINK_MS")
	if v == "" {
		return def
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms < 0 {
		b.Fatalf("MIRRORNET_BENCH_LINK_MS=%q: want a whole number of milliseconds", v)
	}
	return time.Duration(ms) * time.Millisecond
}

// newBenchNetLinks is newBenchNet with the given link latency (before
// dilation).
//
// Mind mocknet's link model: a stream hands each write of 256 bytes or
// more to one delivery goroutine that waits out the full latency before it
// takes the next, so a link carries at most 1/latency such writes per
// second, one after the other. Every gossipsub RPC carrying a statement is
// one such write. With a 1 s heartbeat each mesh link forwards about N
// statements a second, so at N=100 a 10 ms link is full (and at N=200
// twice over), whatever the CPU does: gossipsub's 32-RPC outbound queues
// overflow and statements are dropped. Real TCP links pipeline writes.
func newBenchNetLinks(b *testing.B, n int, profile string, dilate int, latency time.Duration) *benchNet {
	b.Helper()
	bn := &benchNet{mn: mocknet.New(), seen: make([]map[peer.ID]uint64, n), dilate: dilate}
	bn.cond = sync.NewCond(&bn.mu)
	bn.mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency * time.Duration(dilate)})
	prof, err := health.ProfileByName(profile)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range bn.nodes {
			wg.Add(1)
			go func() { defer wg.Done(); nd.Close() }()
		}
		wg.Wait()
		bn.mn.Close()
	})
	keys := make([]crypto.PrivKey, n)
	for i := range n {
		sk, _, _ := crypto.GenerateEd25519Key(nil)
		keys[i] = sk
		addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/250, i%250+1))
		if _, err := bn.mn.AddPeer(sk, addr); err != nil {
			b.Fatal(err)
		}
	}
	if err := bn.mn.LinkAll(); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		bn.seen[i] = map[peer.ID]uint64{}
		cfg := testConfig(b)
		cfg.Profile = profile
		d := time.Duration(dilate)
		cfg.Heartbeat = prof.Heartbeat * d
		cfg.Health = health.Config{SuspectAfter: prof.Health.SuspectAfter * d, DeadAfter: prof.Health.DeadAfter * d, ForgetAfter: prof.Health.ForgetAfter * d}
		h := bn.mn.Hosts()[0]
		for _, hh := range bn.mn.Hosts() {
			if id, _ := peer.IDFromPrivateKey(keys[i]); hh.ID() == id {
				h = hh
			}
		}
		i := i
		nd, err := New(cfg, WithHost(h, keys[i]), func(o *options) {
			o.onAccept = func(st *attest.Statement) {
				bn.mu.Lock()
				if st.Seq > bn.seen[i][st.Signer] {
					bn.seen[i][st.Signer] = st.Seq
				}
				bn.mu.Unlock()
				bn.cond.Broadcast()
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		bn.nodes = append(bn.nodes, nd)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		for k := 0; k < 4; k++ {
			j := rng.IntN(n)
			if k == 0 {
				j = (i + 1) % n
			}
			if j != i {
				if _, err := bn.mn.ConnectPeers(bn.nodes[i].ID(), bn.nodes[j].ID()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	// Wait until every node has heard from every other.
	bn.waitAll(b, 120*time.Second*time.Duration(dilate), func(i int) bool { return len(bn.seen[i]) >= n })
	return bn
}

// waitAll waits until ok(i) holds for every node i.
func (bn *benchNet) waitAll(b *testing.B, within time.Duration, ok func(i int) bool) {
	b.Helper()
	timer := time.AfterFunc(within, func() { bn.cond.Broadcast() })
	defer timer.Stop()
	deadline := time.Now().Add(within)
	bn.mu.Lock()
	defer bn.mu.Unlock()
	for {
		all := true
		for i := range bn.nodes {
			if !ok(i) {
				all = false
				break
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not within %s", within)
		}
		bn.cond.Wait()
	}
}

// propagate publishes a fresh statement from node 0 and returns the time
// until every node accepted it.
func (bn *benchNet) propagate(b *testing.B) time.Duration {
	src := bn.nodes[0]
	// Peers rate-limit each signer to one statement per half heartbeat.
	src.mu.Lock()
	wait := src.lastPublished.Add(minPublishGap(src.prof.Heartbeat)).Sub(src.clock())
	src.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait) // pacing the publisher, not synchronising
	}
	start := time.Now()
	src.publishLiveness("up")
	src.mu.Lock()
	seq := src.seq
	src.mu.Unlock()
	bn.waitAll(b, 30*time.Second*time.Duration(bn.dilate), func(i int) bool { return bn.seen[i][src.ID()] >= seq })
	return time.Since(start) / time.Duration(bn.dilate)
}

// detect crashes node victim and returns the time until every survivor's
// view says dead, and how many false "dead" verdicts about live nodes were
// seen meanwhile.
func (bn *benchNet) detect(b *testing.B, victim int) (time.Duration, int) {
	v := bn.nodes[victim]
	start := time.Now()
	v.Close()
	v.host.Close()
	falseDead := 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(60 * time.Second * time.Duration(bn.dilate))
	for {
		all := true
		for i, nd := range bn.nodes {
			if i == victim || nd.ctx.Err() != nil {
				continue
			}
			now := nd.clock()
			nd.mu.Lock()
			m, ok := nd.view.Mirror(v.ID(), now)
			nd.mu.Unlock()
			if !ok || m.State != health.StateDead {
				all = false
				break
			}
		}
		if all {
			falseDead = bn.countFalseDead(victim)
			return time.Since(start) / time.Duration(bn.dilate), falseDead
		}
		if time.Now().After(deadline) {
			b.Fatal("crash not detected within 60s")
		}
		<-tick.C
	}
}

// diagFalseDead (DIAG=1) prints, for every false verdict, the observer's
// lag, the subject's statement age at the observer and at the subject
// itself, and the observer's freshest statement from anyone: what told lost
// statements from late ones (docs/BENCHMARKS.md).
var diagFalseDead = os.Getenv("DIAG") != ""

// countFalseDead counts (observer, live node) pairs where the observer's
// view says dead although the node runs.
func (bn *benchNet) countFalseDead(skip ...int) int {
	skipped := map[int]bool{}
	for _, s := range skip {
		skipped[s] = true
	}
	bad := 0
	for i, obs := range bn.nodes {
		if skipped[i] || obs.ctx.Err() != nil {
			continue
		}
		now := obs.clock()
		obs.mu.Lock()
		for j, nd := range bn.nodes {
			if skipped[j] || nd.ctx.Err() != nil {
				continue
			}
			if m, ok := obs.view.Mirror(nd.ID(), now); ok && m.State == health.StateDead {
				bad++
				if diagFalseDead {
					var fresh time.Time
					for _, o := range obs.view.Mirrors(now) {
						if o.Peer != obs.id && o.LastSeen.After(fresh) {
							fresh = o.LastSeen
						}
					}
					selfAge := time.Duration(-1)
					if sm, ok := nd.view.Mirror(nd.ID(), now); ok {
						selfAge = now.Sub(sm.LastSeen)
					}
					fmt.Printf("DIAG obs=%d subj=%d lag=%v age=%v freshestAge=%v relAge=%v subjSelfAge=%v subjLag=%v\n", i, j, obs.view.LocalLag(), now.Sub(m.LastSeen), now.Sub(fresh), fresh.Sub(m.LastSeen), selfAge, nd.view.LocalLag())
				}
			}
		}
		obs.mu.Unlock()
	}
	return bad
}

// mlNet is N memberlist members on loopback, LAN config.
type mlNet struct {
	members []*memberlist.Memberlist
	metas   []*atomic.Value
	mu      sync.Mutex
	cond    *sync.Cond
	// updated[i][name] = latest meta seen; left[i][name] = seen leave/dead
	updated []map[string]string
	left    []map[string]bool
}

type mlDelegate struct {
	net *mlNet
	i   int
}

func (d mlDelegate) NodeMeta(limit int) []byte       { return []byte(d.net.metas[d.i].Load().(string)) }
func (d mlDelegate) NotifyMsg([]byte)                {}
func (d mlDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d mlDelegate) LocalState(bool) []byte          { return nil }
func (d mlDelegate) MergeRemoteState([]byte, bool)   {}
func (d mlDelegate) NotifyJoin(n *memberlist.Node)   { d.record(n, false) }
func (d mlDelegate) NotifyUpdate(n *memberlist.Node) { d.record(n, false) }
func (d mlDelegate) NotifyLeave(n *memberlist.Node)  { d.record(n, true) }
func (d mlDelegate) record(n *memberlist.Node, gone bool) {
	d.net.mu.Lock()
	if gone {
		d.net.left[d.i][n.Name] = true
	} else {
		d.net.updated[d.i][n.Name] = string(n.Meta)
	}
	d.net.mu.Unlock()
	d.net.cond.Broadcast()
}

func newMLNet(b *testing.B, n int) *mlNet {
	b.Helper()
	mn := &mlNet{}
	mn.cond = sync.NewCond(&mn.mu)
	b.Cleanup(func() {
		for _, m := range mn.members {
			m.Shutdown()
		}
	})
	for i := range n {
		mn.metas = append(mn.metas, &atomic.Value{})
		mn.metas[i].Store("v0")
		mn.updated = append(mn.updated, map[string]string{})
		mn.left = append(mn.left, map[string]bool{})
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.BindAddr = "127.0.0.1"
		cfg.BindPort = 0
		cfg.AdvertiseAddr = "127.0.0.1"
		cfg.LogOutput = io.Discard
		d := mlDelegate{net: mn, i: i}
		cfg.Delegate = d
		cfg.Events = d
		m, err := memberlist.Create(cfg)
		if err != nil {
			b.Fatal(err)
		}
		mn.members = append(mn.members, m)
		if i > 0 {
			// Join through a few earlier members (spreading the push-pull
			// load), retrying: a loaded machine can time out a join.
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				seeds := []string{mn.members[0].LocalNode().FullAddress().Addr, mn.members[i/2].LocalNode().FullAddress().Addr, mn.members[i-1].LocalNode().FullAddress().Addr}
				if _, err = m.Join(seeds); err == nil {
					break
				}
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	mn.waitAll(b, 120*time.Second, func(i int) bool { return mn.members[i].NumMembers() == n })
	return mn
}

func (mn *mlNet) waitAll(b *testing.B, within time.Duration, ok func(i int) bool) {
	b.Helper()
	timer := time.AfterFunc(within, func() { mn.cond.Broadcast() })
	defer timer.Stop()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond) // NumMembers changes without an event
	defer tick.Stop()
	go func() {
		for range tick.C {
			mn.cond.Broadcast()
			if time.Now().After(deadline) {
				return
			}
		}
	}()
	mn.mu.Lock()
	defer mn.mu.Unlock()
	for {
		all := true
		for i := range mn.members {
			if mn.members[i] != nil && !ok(i) {
				all = false
				break
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("memberlist: not within %s", within)
		}
		mn.cond.Wait()
	}
}

func (mn *mlNet) propagate(b *testing.B, round int) time.Duration {
	meta := fmt.Sprintf("v%d", round)
	mn.metas[0].Store(meta)
	start := time.Now()
	if err := mn.members[0].UpdateNode(0); err != nil {
		b.Fatal(err)
	}
	mn.waitAll(b, 60*time.Second, func(i int) bool { return i == 0 || mn.updated[i]["m0"] == meta })
	return time.Since(start)
}

func (mn *mlNet) detect(b *testing.B, victim int) time.Duration {
	name := fmt.Sprintf("m%d", victim)
	start := time.Now()
	mn.members[victim].Shutdown()
	dead := mn.members[victim]
	mn.mu.Lock()
	mn.members[victim] = nil
	mn.mu.Unlock()
	defer func() { mn.members[victim] = dead }()
	mn.waitAll(b, 120*time.Second, func(i int) bool { return mn.left[i][name] })
	return time.Since(start)
}

func BenchmarkGossip(b *testing.B) {
	for _, n := range []int{50, 100, 200} {
		// n² signature checks per heartbeat in one process: slow the
		// simulated world down (see newBenchNet) where two cores cannot
		// keep up in real time.
		dilate := max(1, n*n/2500)
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var ourDet, mlDet time.Duration
			var ours, theirs []time.Duration
			falseDead := 0
			for range b.N {
				bn := newBenchNet(b, n, "lan", dilate)
				ml := newMLNet(b, n)
				const rounds = 9
				for r := range rounds {
					ours = append(ours, bn.propagate(b))
					theirs = append(theirs, ml.propagate(b, r+1))
				}
				d, f := bn.detect(b, n/2)
				ourDet += d
				falseDead += f
				mlDet += ml.detect(b, n/2)
			}
			b.Logf("N=%d propagation rounds: mirrornet %v, memberlist %v", n, ours, theirs)
			per := float64(b.N)
			ourMed, mlMed := median(ours), median(theirs)
			b.ReportMetric(float64(ourMed.Microseconds())/1000, "prop-ms")
			b.ReportMetric(float64(mlMed.Microseconds())/1000, "memberlist-prop-ms")
			b.ReportMetric(float64(ourMed)/float64(mlMed), "prop-ratio")
			b.ReportMetric(float64(slices.Max(ours).Microseconds())/1000, "prop-max-ms")
			b.ReportMetric(ourDet.Seconds()*1000/per, "detect-ms")
			b.ReportMetric(mlDet.Seconds()*1000/per, "memberlist-detect-ms")
			b.ReportMetric(float64(ourDet)/float64(mlDet), "detect-ratio")
			b.ReportMetric(float64(falseDead), "false-dead")
			b.ReportMetric(float64(dilate), "dilation")
		})
	}
}

// BenchmarkFalseDeadUnderLoad runs N=100 on the lan profile with every core
// saturated by busy loops for a while and counts false "dead" verdicts
// about live mirrors (goal: zero).
func BenchmarkFalseDeadUnderLoad(b *testing.B) {
	const n = 100
	linkLatency := benchLinkLatency(b, time.Millisecond)
	for range b.N {
		// 1 ms links: on 10 ms mocknet links N=100 saturates the links
		// themselves (see newBenchNetLinks) and what is measured is
		// mocknet's queueing, not a CPU-starved observer.
		bn := newBenchNetLinks(b, n, "lan", 2, linkLatency)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		var wg sync.WaitGroup
		for range 2 * runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := 0
				for ctx.Err() == nil {
					for k := 0; k < 1_000_000; k++ {
						x += k
					}
				}
				_ = x
			}()
		}
		worst := 0
		tick := time.NewTicker(100 * time.Millisecond)
		for ctx.Err() == nil {
			<-tick.C
			if f := bn.countFalseDead(); f > worst {
				worst = f
			}
		}
		tick.Stop()
		cancel()
		wg.Wait()
		b.ReportMetric(float64(worst), "false-dead")
		var drop, qfull, thr int64
		for _, nd := range bn.nodes {
			drop += nd.gossipBytes.dropped.Load()
			qfull += nd.gossipBytes.queueFull.Load()
			thr += nd.gossipBytes.throttled.Load()
		}
		b.ReportMetric(float64(drop), "dropped-rpcs")
		b.ReportMetric(float64(qfull), "validation-queue-full")
		b.ReportMetric(float64(thr), "validation-throttled")
	}
}

// BenchmarkGossipBytes measures gossip traffic per node per heartbeat on the
// lan profile, once the mesh has formed: every gossipsub RPC byte sent and
// received (statements, IHAVE/IWANT, GRAFT/PRUNE), averaged over the nodes
// and over a window of ten heartbeats. It also reports one liveness
// statement's size.
func BenchmarkGossipBytes(b *testing.B) {
	for _, n := range []int{50, 100} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			for range b.N {
				bn := newBenchNet(b, n, "lan", 1)
				hb := bn.nodes[0].prof.Heartbeat
				var before int64
				for _, nd := range bn.nodes {
					before += nd.gossipBytes.sent.Load() + nd.gossipBytes.recv.Load()
				}
				const beats = 10
				<-time.After(beats * hb) // the measurement window, not a synchronisation
				var after int64
				for _, nd := range bn.nodes {
					after += nd.gossipBytes.sent.Load() + nd.gossipBytes.recv.Load()
				}
				perNode := float64(after-before) / float64(n) / beats
				b.ReportMetric(perNode, "bytes/node/heartbeat")
				b.ReportMetric(perNode/hb.Seconds()*8/1e6, "Mbit/s/node")
				statements := bn.nodes[0].statements()
				b.ReportMetric(float64(len(statements[0])), "statement-bytes")
			}
		})
	}
}

// median of durations (the slice is sorted in place).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
