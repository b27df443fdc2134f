package adversary_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// fakeClock is a wall clock the test moves by hand: rate limits and ages
// are then judged in time the test controls, however slowly the machine
// runs.
type fakeClock struct{ ms atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(time.Now().UnixMilli())
	return c
}

func (c *fakeClock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Advance(d time.Duration) time.Time {
	return time.UnixMilli(c.ms.Add(d.Milliseconds()))
}

// verdicts records what a victim node decided about each gossiped
// statement, by signer.
type verdicts struct {
	mu       sync.Mutex
	cond     *sync.Cond
	total    int
	judged   map[peer.ID]int
	accepted map[peer.ID]int
	reasons  map[string]int
}

func newVerdicts() *verdicts {
	v := &verdicts{judged: map[peer.ID]int{}, accepted: map[peer.ID]int{}, reasons: map[string]int{}}
	v.cond = sync.NewCond(&v.mu)
	return v
}

func (v *verdicts) hook(st *attest.Statement, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.total++
	if st != nil {
		v.judged[st.Signer]++
	}
	if err == nil && st != nil {
		v.accepted[st.Signer]++
	}
	v.reasons[attest.Reason(err)]++
	v.cond.Broadcast()
}

// waitTotal waits until at least n verdicts were given; the deadline only
// guards against a hang.
func (v *verdicts) waitTotal(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	stop := time.AfterFunc(within, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer stop.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.total < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d statements judged within %s", v.total, n, within)
		}
		v.cond.Wait()
	}
}

func (v *verdicts) acceptedFrom(id peer.ID) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.accepted[id]
}

// victim is an honest mirror on a mocknet host.
type victim struct {
	*node.Node
	reg      *prometheus.Registry
	verdicts *verdicts
	dataDir  string
}

// newHost adds a mocknet host with a fresh Ed25519 key, linked to all.
func newHost(t testing.TB, mn mocknet.Mocknet) (host.Host, crypto.PrivKey) {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 20000+len(mn.Peers())))
	h, err := mn.AddPeer(sk, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return h, sk
}

// newVictim starts a mirror on the lan profile (one heartbeat a second)
// on mocknet. httpAddr "" turns HTTP off.
func newVictim(t testing.TB, mn mocknet.Mocknet, clock func() time.Time, httpAddr string, edit func(*node.Config)) *victim {
	t.Helper()
	h, sk := newHost(t, mn)
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = httpAddr
	cfg.MDNS, cfg.DHT = false, false
	cfg.Profile = "lan"
	if edit != nil {
		edit(&cfg)
	}
	v := &victim{reg: prometheus.NewRegistry(), verdicts: newVerdicts(), dataDir: cfg.DataDir}
	var log *slog.Logger
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts := []node.Option{node.WithHost(h, sk), node.WithRegistry(v.reg), node.WithStatementHook(v.verdicts.hook), node.WithLogger(log)}
	if clock != nil {
		opts = append(opts, node.WithClock(clock))
	}
	n, err := node.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	v.Node = n
	return v
}

// refusals returns mirrornet_statements_total by reason, summed over kind
// and verdict.
func (v *victim) refusals(t testing.TB) map[string]float64 {
	t.Helper()
	mfs, err := v.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mirrornet_statements_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// throwaway is a fresh key and its peer ID.
type throwaway struct {
	key crypto.PrivKey
	id  peer.ID
}

func newThrowaway(t testing.TB) throwaway {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(sk)
	return throwaway{sk, id}
}

// liveness signs a valid "up" statement of k at now. fat makes it as
// large as the protocol allows (every bundle and address slot used).
func (k throwaway) liveness(t testing.TB, seq uint64, now time.Time, httpURL string, fat bool, bundles ...string) []byte {
	t.Helper()
	l := protocol.Liveness{
		Peer: k.id.String(), State: protocol.StateUp, Seq: seq, Time: now.UnixMilli(),
		Addrs: []string{"/ip4/192.0.2.1/tcp/4001"}, HTTP: httpURL, Bundles: protocol.SortUnique(bundles), Version: "attacker",
	}
	if fat {
		l.Bundles = fatBundles
		l.Addrs = fatAddrs
	}
	raw, err := attest.SignLiveness(k.key, l)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fatBundles and fatAddrs fill a liveness statement close to
// protocol.MaxStatementSize.
var fatBundles, fatAddrs = func() ([]string, []string) {
	var b []string
	for i := range protocol.MaxBundles {
		b = append(b, fmt.Sprintf("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa%06d", i))
	}
	var a []string
	for i := range 20 {
		a = append(a, fmt.Sprintf("/dns4/%s.example.org/tcp/%d", strings.Repeat("x", 200), 4000+i))
	}
	return protocol.SortUnique(b), a
}()

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitJudged waits until n statements of id were judged.
func (v *verdicts) waitJudged(t testing.TB, id peer.ID, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	stop := time.AfterFunc(within, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer stop.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.judged[id] < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d statements of %s judged within %s", v.judged[id], n, id, within)
		}
		v.cond.Wait()
	}
}

// waitOthers waits until n statements of signers other than the victim
// were judged.
func (v *verdicts) waitOthers(t testing.TB, self peer.ID, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	stop := time.AfterFunc(within, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer stop.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.total-v.judged[self] < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d statements judged within %s", v.total-v.judged[self], n, within)
		}
		v.cond.Wait()
	}
}
