package health_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// A full view refuses alive strangers, lets them replace dead or suspect
// strangers, and lets a mirror with evidence push out the stalest stranger.
func TestLimitsMaxMirrors(t *testing.T) {
	v := health.New(testCfg)
	friend := newSigner(t, 100)
	v.SetLimits(health.Limits{MaxMirrors: 3, Protected: func(id peer.ID) bool { return id == friend.id }})
	for i := range 3 {
		if ok, err := v.Add(newSigner(t, i).sign(t, 1, t0.Add(time.Duration(i)*time.Millisecond), protocol.StateUp), t0); !ok || err != nil {
			t.Fatalf("stranger %d: %v %v", i, ok, err)
		}
	}
	if ok, err := v.Add(newSigner(t, 3).sign(t, 1, t0, protocol.StateUp), t0); ok || !errors.Is(err, health.ErrViewFull) {
		t.Fatalf("fourth alive stranger: %v %v, want ErrViewFull", ok, err)
	}
	// Existing members still refresh.
	if ok, err := v.Add(newSigner(t, 1).sign(t, 2, t0.Add(time.Second), protocol.StateUp), t0.Add(time.Second)); !ok || err != nil {
		t.Fatalf("refresh: %v %v", ok, err)
	}
	// A mirror with evidence evicts the stalest stranger (0).
	if ok, err := v.Add(friend.sign(t, 1, t0.Add(time.Second), protocol.StateUp), t0.Add(time.Second)); !ok || err != nil {
		t.Fatalf("protected newcomer: %v %v", ok, err)
	}
	if _, ok := v.Mirror(newSigner(t, 0).id, t0.Add(time.Second)); ok {
		t.Fatal("stalest stranger not evicted")
	}
	// Once stranger 2 is suspect (and 1 is not), a new stranger replaces it.
	now := t0.Add(2500 * time.Millisecond)
	if ok, err := v.Add(newSigner(t, 4).sign(t, 1, now, protocol.StateUp), now); !ok || err != nil {
		t.Fatalf("stranger vs suspect stranger: %v %v", ok, err)
	}
	if _, ok := v.Mirror(newSigner(t, 2).id, now); ok {
		t.Fatal("suspect stranger not evicted")
	}
	if v.Len() != 3 {
		t.Fatalf("Len = %d, want 3", v.Len())
	}
}

// The byte budget holds whatever the statements' sizes, and the counted
// bytes return to zero when everything is forgotten.
func TestLimitsMaxBytes(t *testing.T) {
	v := health.New(testCfg)
	big := make([]string, 400)
	for i := range big {
		big[i] = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	one := health.StatementCost(newSigner(t, 0).sign(t, 1, t0, protocol.StateUp, big...))
	v.SetLimits(health.Limits{MaxBytes: 5 * one})
	refused := 0
	for i := range 50 {
		ok, err := v.Add(newSigner(t, i).sign(t, 1, t0, protocol.StateUp, big...), t0)
		if !ok {
			if !errors.Is(err, health.ErrOverBudget) {
				t.Fatalf("%d: %v", i, err)
			}
			refused++
		}
		if v.Bytes() > 5*one {
			t.Fatalf("bytes %d over budget %d", v.Bytes(), 5*one)
		}
	}
	if refused != 45 {
		t.Fatalf("refused %d, want 45", refused)
	}
	v.Prune(t0.Add(time.Hour))
	if v.Bytes() != 0 || v.Len() != 0 {
		t.Fatalf("after prune: %d bytes, %d mirrors", v.Bytes(), v.Len())
	}
}

// StatementCost is what a kept statement really takes: the live heap held
// by a view full of statements (small ones and near-limit ones) is within
// a quarter of the sum of their costs, and never above it by more. The
// statements arrive as signed bytes, as gossip delivers them, and are
// verified and kept by the view alone.
func TestStatementCostMatchesHeap(t *testing.T) {
	big := make([]string, protocol.MaxBundles)
	for i := range big {
		big[i] = fmt.Sprintf("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa%06d", i)
	}
	for _, tc := range []struct {
		name    string
		n       int
		bundles []string
	}{{"small", 2000, []string{"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"}}, {"near-limit", 100, big}} {
		t.Run(tc.name, func(t *testing.T) {
			v := health.New(testCfg)
			before := liveHeap()
			raws := make([][]byte, tc.n)
			for i := range raws {
				s := newSigner(t, i)
				raw, err := attest.SignLiveness(s.key, protocol.Liveness{
					Peer: s.id.String(), State: protocol.StateUp, Seq: 1, Time: t0.UnixMilli(),
					Addrs: []string{"/ip4/192.0.2.1/tcp/4001", "/ip6/2001:db8::1/udp/4001/quic-v1"}, HTTP: "http://192.0.2.1:8080",
					Bundles: protocol.SortUnique(slices.Clone(tc.bundles)), Version: "v0.1.0",
				})
				if err != nil {
					t.Fatal(err)
				}
				raws[i] = raw
			}
			for _, raw := range raws {
				st, err := attest.Verify(raw, t0)
				if err != nil {
					t.Fatal(err)
				}
				v.Apply(st, t0)
			}
			raws = nil // the view holds the bytes now
			heap := int64(liveHeap()) - int64(before)
			runtime.KeepAlive(v)
			counted := v.Bytes()
			t.Logf("%d statements: counted %d KiB, heap %d KiB (%.2f)", tc.n, counted>>10, heap>>10, float64(heap)/float64(counted))
			if heap > counted*5/4 || heap < counted*3/4 {
				t.Fatalf("the view's statements take %d KiB of heap, StatementCost counts %d KiB", heap>>10, counted>>10)
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Listings are shared per version of the view (snapshot.go): every kind
// of change shows in the next listing, and a listing taken before a
// change is not handed out after it.
func TestListingFollowsEveryChange(t *testing.T) {
	v := health.New(testCfg)
	a, b := newSigner(t, 1), newSigner(t, 2)
	v.Apply(a.sign(t, 1, t0, protocol.StateUp), t0)
	if got := v.Mirrors(t0); len(got) != 1 || !slices.Equal(v.Alive(t0), []peer.ID{a.id}) {
		t.Fatalf("one mirror: %v, alive %v", got, v.Alive(t0))
	}
	v.Apply(b.sign(t, 1, t0, protocol.StateUp), t0) // added
	if got := v.Alive(t0); len(got) != 2 || len(v.Statements()) != 2 {
		t.Fatalf("after a second mirror: alive %v, %d statements", got, len(v.Statements()))
	}
	if _, err := v.AddSuspicion(suspicion(t, b, a, 1, t0), t0); err != nil { // suspected
		t.Fatal(err)
	}
	if m := v.Mirrors(t0); m[slices.IndexFunc(m, func(m health.Mirror) bool { return m.Peer == a.id })].State != health.StateSuspect {
		t.Fatalf("suspicion not in the listing: %+v", m)
	}
	if got := len(v.Statements()); got != 3 {
		t.Fatalf("%d statements with a standing suspicion, want 3", got)
	}
	v.Apply(a.sign(t, 2, t0, protocol.StateLeaving), t0) // replaced
	if c := v.Counts(t0); c[health.StateLeft] != 1 || c[health.StateAlive] != 1 {
		t.Fatalf("after a leaving statement: %v", c)
	}
	late := t0.Add(testCfg.SuspectAfter + time.Millisecond)
	if c := v.Counts(late); c[health.StateSuspect] != 1 {
		t.Fatalf("later: %v", c)
	}
	v.SetLocalLag(time.Hour) // lag stretches the thresholds
	if c := v.Counts(late); c[health.StateAlive] != 1 {
		t.Fatalf("with local lag: %v", c)
	}
	if n := v.Prune(t0.Add(24 * time.Hour)); n != 2 || len(v.Mirrors(t0)) != 0 || len(v.Alive(t0)) != 0 { // pruned
		t.Fatalf("after pruning %d: %v", n, v.Mirrors(t0))
	}
}
