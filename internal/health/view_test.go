package health_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// t0 is the virtual start of every test: no test reads the clock.
var t0 = time.UnixMilli(1_800_000_000_000)

var testCfg = health.Config{SuspectAfter: 2 * time.Second, DeadAfter: 4 * time.Second, ForgetAfter: 10 * time.Second}

type signer struct {
	key crypto.PrivKey
	id  peer.ID
}

// newSigner derives a fixed Ed25519 key from n, so peer IDs (and their
// order) are the same on every run.
func newSigner(t testing.TB, n int) signer {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = byte(n), byte(n>>8)
	key, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer{key, id}
}

// sign returns a verified liveness statement of s.
func (s signer) sign(t testing.TB, seq uint64, at time.Time, state string, bundles ...string) *attest.Statement {
	t.Helper()
	raw, err := attest.SignLiveness(s.key, protocol.Liveness{
		Peer: s.id.String(), State: state, Seq: seq, Time: at.UnixMilli(),
		Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Bundles: protocol.SortUnique(bundles), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func stateAt(t *testing.T, v *health.View, id peer.ID, now time.Time) health.State {
	t.Helper()
	m, ok := v.Mirror(id, now)
	if !ok {
		return "gone"
	}
	return m.State
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   health.Config
		field string // "" = valid
	}{
		{"default", health.DefaultConfig(), ""},
		{"keep forever", health.Config{SuspectAfter: time.Second, DeadAfter: 2 * time.Second}, ""},
		{"zero suspect", health.Config{DeadAfter: time.Second}, "SuspectAfter"},
		{"negative suspect", health.Config{SuspectAfter: -1, DeadAfter: time.Second}, "SuspectAfter"},
		{"dead equals suspect", health.Config{SuspectAfter: time.Second, DeadAfter: time.Second}, "DeadAfter"},
		{"dead before suspect", health.Config{SuspectAfter: 2 * time.Second, DeadAfter: time.Second}, "DeadAfter"},
		{"negative forget", health.Config{SuspectAfter: time.Second, DeadAfter: 2 * time.Second, ForgetAfter: -1}, "ForgetAfter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, health.ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want ErrConfig naming %s", err, tc.field)
			}
		})
	}
}

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("New accepted an invalid config")
		}
	}()
	health.New(health.Config{})
}

func TestProfiles(t *testing.T) {
	for _, name := range health.ProfileNames() {
		p, err := health.ProfileByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != name {
			t.Errorf("ProfileByName(%q).Name = %q", name, p.Name)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("profile %s: %v", name, err)
		}
		// No false positives from a couple of lost heartbeats: a mirror is
		// declared dead only after at least three heartbeats went missing.
		if p.Health.DeadAfter < 3*p.Heartbeat {
			t.Errorf("profile %s: DeadAfter %s is under three heartbeats (%s)", name, p.Health.DeadAfter, p.Heartbeat)
		}
	}
	lan, _ := health.ProfileByName("lan")
	// memberlist's LAN defaults take about 9 s to make a crash known at
	// N=50; the goal is half that, gossip delay included.
	if budget := 4500 * time.Millisecond; lan.Health.DeadAfter+200*time.Millisecond > budget {
		t.Errorf("lan DeadAfter %s leaves no room for gossip within %s", lan.Health.DeadAfter, budget)
	}
	_, err := health.ProfileByName("lna")
	if !errors.Is(err, health.ErrUnknownProfile) || !strings.Contains(err.Error(), `"lna"`) {
		t.Fatalf("ProfileByName(lna) = %v, want ErrUnknownProfile naming the value", err)
	}
	bad := lan
	bad.Heartbeat = 2 * time.Second // SuspectAfter 2.5 s is under two heartbeats
	if err := bad.Validate(); !errors.Is(err, health.ErrConfig) {
		t.Fatalf("Validate of a profile with a slow heartbeat = %v", err)
	}
}

func TestTransitionsByTime(t *testing.T) {
	a := newSigner(t, 1)
	up := a.sign(t, 10, t0, protocol.StateUp)
	leaving := a.sign(t, 11, t0, protocol.StateLeaving)
	const ns = time.Nanosecond
	for _, tc := range []struct {
		name string
		st   *attest.Statement
		cfg  health.Config
		at   time.Duration // after t0
		want health.State
	}{
		{"fresh", up, testCfg, 0, health.StateAlive},
		{"slightly in the future", up, testCfg, -time.Second, health.StateAlive},
		{"just before suspect", up, testCfg, 2*time.Second - ns, health.StateAlive},
		{"suspect", up, testCfg, 2 * time.Second, health.StateSuspect},
		{"just before dead", up, testCfg, 4*time.Second - ns, health.StateSuspect},
		{"dead", up, testCfg, 4 * time.Second, health.StateDead},
		{"dead until forgotten", up, testCfg, 14*time.Second - ns, health.StateDead},
		{"forgotten", up, testCfg, 14 * time.Second, "gone"},
		{"kept when ForgetAfter is 0", up, health.Config{SuspectAfter: 2 * time.Second, DeadAfter: 4 * time.Second}, 1000 * time.Hour, health.StateDead},
		{"left", leaving, testCfg, 0, health.StateLeft},
		{"left is not dead", leaving, testCfg, 9 * time.Second, health.StateLeft},
		{"left forgotten", leaving, testCfg, 10 * time.Second, "gone"},
		{"left kept when ForgetAfter is 0", leaving, health.Config{SuspectAfter: 2 * time.Second, DeadAfter: 4 * time.Second}, 1000 * time.Hour, health.StateLeft},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := health.New(tc.cfg)
			if !v.Apply(tc.st, t0) {
				t.Fatal("Apply of a fresh statement changed nothing")
			}
			if got := stateAt(t, v, a.id, t0.Add(tc.at)); got != tc.want {
				t.Fatalf("state at t0%+v = %s, want %s", tc.at, got, tc.want)
			}
			n := 0
			for _, c := range v.Counts(t0.Add(tc.at)) {
				n += c
			}
			if want := map[bool]int{true: 0, false: 1}[tc.want == "gone"]; n != want {
				t.Fatalf("Counts total %d, want %d", n, want)
			}
		})
	}
}

func TestApplyKeepsHighestSeq(t *testing.T) {
	a := newSigner(t, 1)
	v := health.New(testCfg)
	newer := a.sign(t, 5, t0, protocol.StateUp, "bafynew")
	older := a.sign(t, 4, t0.Add(time.Second), protocol.StateUp, "bafyold")
	if !v.Apply(newer, t0) {
		t.Fatal("first statement not applied")
	}
	if v.Apply(newer, t0) {
		t.Fatal("the same statement applied twice changed the view")
	}
	if v.Apply(older, t0.Add(time.Second)) {
		t.Fatal("a lower seq replaced a higher one")
	}
	m, _ := v.Mirror(a.id, t0.Add(time.Second))
	if m.Seq != 5 || m.Liveness.Bundles[0] != "bafynew" || !slices.Equal(m.Raw, newer.Raw) {
		t.Fatalf("mirror = seq %d %v, want seq 5 [bafynew]", m.Seq, m.Liveness.Bundles)
	}
	// Age comes from the kept statement's own time, not from arrival.
	if got := stateAt(t, v, a.id, t0.Add(2*time.Second)); got != health.StateSuspect {
		t.Fatalf("state = %s, want suspect: the older statement's later time must not refresh", got)
	}
}

func TestLeaveAndRevive(t *testing.T) {
	a := newSigner(t, 1)
	v := health.New(testCfg)
	steps := []struct {
		st      *attest.Statement
		changed bool
		want    health.State
	}{
		{a.sign(t, 1, t0, protocol.StateUp), true, health.StateAlive},
		{a.sign(t, 2, t0.Add(time.Second), protocol.StateLeaving), true, health.StateLeft},
		{a.sign(t, 1, t0, protocol.StateUp), false, health.StateLeft}, // replayed old "up"
		{a.sign(t, 3, t0.Add(5*time.Second), protocol.StateUp), true, health.StateAlive},
	}
	for i, s := range steps {
		if got := v.Apply(s.st, s.st.Time); got != s.changed {
			t.Fatalf("step %d: Apply = %v, want %v", i, got, s.changed)
		}
		if got := stateAt(t, v, a.id, s.st.Time); got != s.want {
			t.Fatalf("step %d: state %s, want %s", i, got, s.want)
		}
	}
}

func TestApplyRefuses(t *testing.T) {
	a := newSigner(t, 1)
	v := health.New(testCfg)
	future := a.sign(t, 1, t0.Add(protocol.MaxClockDisparity+time.Millisecond), protocol.StateUp)
	stale := a.sign(t, 2, t0.Add(-15*time.Second), protocol.StateUp) // dead 11 s ago, forgotten at 14 s
	probe := &attest.Statement{Kind: attest.KindProbe, Signer: a.id, Seq: 3, Time: t0}
	for name, st := range map[string]*attest.Statement{"nil": nil, "future": future, "forgotten already": stale, "probe": probe} {
		if v.Apply(st, t0) {
			t.Errorf("Apply(%s) changed the view", name)
		}
	}
	if ms := v.Mirrors(t0); len(ms) != 0 {
		t.Fatalf("view holds %d mirrors", len(ms))
	}
	// Within the clock disparity window a statement is taken.
	if !v.Apply(a.sign(t, 4, t0.Add(protocol.MaxClockDisparity), protocol.StateUp), t0) {
		t.Fatal("statement within the clock disparity window refused")
	}
}

func TestPruneAndStatements(t *testing.T) {
	a, b, c := newSigner(t, 1), newSigner(t, 2), newSigner(t, 3)
	v := health.New(testCfg)
	v.Apply(a.sign(t, 1, t0, protocol.StateUp), t0)
	v.Apply(b.sign(t, 1, t0, protocol.StateLeaving), t0)
	v.Apply(c.sign(t, 1, t0.Add(20*time.Second), protocol.StateUp), t0.Add(20*time.Second))
	if n := len(v.Statements()); n != 3 {
		t.Fatalf("Statements before prune = %d, want 3", n)
	}
	if n := v.Prune(t0.Add(13 * time.Second)); n != 1 { // only b (left at t0, forget 10 s)
		t.Fatalf("Prune at +13s dropped %d, want 1", n)
	}
	if n := v.Prune(t0.Add(20 * time.Second)); n != 1 { // a (dead at 4 s, forgotten at 14 s)
		t.Fatalf("Prune at +20s dropped %d, want 1", n)
	}
	sts := v.Statements()
	if len(sts) != 1 {
		t.Fatalf("Statements after prune = %d, want 1", len(sts))
	}
	st, err := attest.Verify(sts[0], t0.Add(20*time.Second))
	if err != nil || st.Signer != c.id {
		t.Fatalf("remaining statement: %v, signer %s", err, st.Signer)
	}
}

func TestHoldersAndCounts(t *testing.T) {
	ss := []signer{newSigner(t, 1), newSigner(t, 2), newSigner(t, 3), newSigner(t, 4), newSigner(t, 5)}
	v := health.New(testCfg)
	now := t0.Add(10 * time.Second)
	v.Apply(ss[0].sign(t, 1, now, protocol.StateUp, "bafyA", "bafyB"), now)
	v.Apply(ss[1].sign(t, 1, now.Add(-time.Second), protocol.StateUp, "bafyA"), now)
	v.Apply(ss[2].sign(t, 1, now.Add(-3*time.Second), protocol.StateUp, "bafyA"), now) // suspect
	v.Apply(ss[3].sign(t, 1, now.Add(-5*time.Second), protocol.StateUp, "bafyA"), now) // dead
	v.Apply(ss[4].sign(t, 1, now, protocol.StateLeaving, "bafyA"), now)

	var got []peer.ID
	for _, m := range v.Holders("bafyA", now) {
		got = append(got, m.Peer)
	}
	want := []peer.ID{ss[0].id, ss[1].id}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Holders(bafyA) = %v, want %v", got, want)
	}
	if h := v.Holders("bafyB", now); len(h) != 1 || h[0].Peer != ss[0].id {
		t.Fatalf("Holders(bafyB) = %v", h)
	}
	if h := v.Holders("bafyC", now); len(h) != 0 {
		t.Fatalf("Holders(bafyC) = %v", h)
	}
	wantCounts := map[health.State]int{health.StateAlive: 2, health.StateSuspect: 1, health.StateDead: 1, health.StateLeft: 1}
	if c := v.Counts(now); !reflect.DeepEqual(c, wantCounts) {
		t.Fatalf("Counts = %v, want %v", c, wantCounts)
	}
	empty := health.New(testCfg).Counts(now)
	if len(empty) != 4 || empty[health.StateDead] != 0 {
		t.Fatalf("Counts of an empty view = %v, want every state at 0", empty)
	}
	ms := v.Mirrors(now)
	if !slices.IsSortedFunc(ms, func(a, b health.Mirror) int { return strings.Compare(string(a.Peer), string(b.Peer)) }) {
		t.Fatal("Mirrors not sorted by peer ID")
	}
	ms[0] = health.Mirror{} // the slice is the caller's
	if v.Mirrors(now)[0].Peer == "" {
		t.Fatal("Mirrors returned the view's own storage")
	}
}

func TestSetLocalLag(t *testing.T) {
	a := newSigner(t, 1)
	v := health.New(testCfg)
	v.Apply(a.sign(t, 1, t0, protocol.StateUp), t0)
	at := func(d time.Duration) health.State { return stateAt(t, v, a.id, t0.Add(d)) }
	if got := at(4500 * time.Millisecond); got != health.StateDead {
		t.Fatalf("without lag: %s, want dead", got)
	}
	v.SetLocalLag(time.Second) // this observer's timers ran a second late
	if got := at(4500 * time.Millisecond); got != health.StateSuspect {
		t.Fatalf("with 1s lag at 4.5s: %s, want suspect", got)
	}
	if got := at(2500 * time.Millisecond); got != health.StateAlive {
		t.Fatalf("with 1s lag at 2.5s: %s, want alive", got)
	}
	if got := at(5 * time.Second); got != health.StateDead {
		t.Fatalf("with 1s lag at 5s: %s, want dead", got)
	}
	v.SetLocalLag(-time.Hour)
	if got := at(4500 * time.Millisecond); got != health.StateDead {
		t.Fatalf("negative lag must count as none: %s", got)
	}
}

// corpus returns statements of n mirrors: several sequence numbers each,
// some leaving, some reviving, and one equivocation (two different statements
// with the same seq).
func corpus(t *testing.T, n int) []*attest.Statement {
	var out []*attest.Statement
	for i := range n {
		s := newSigner(t, 100+i)
		base := t0.Add(time.Duration(i) * 700 * time.Millisecond)
		for k := range 1 + i%4 {
			state := protocol.StateUp
			if (i+k)%5 == 3 {
				state = protocol.StateLeaving
			}
			out = append(out, s.sign(t, uint64(10+k), base.Add(time.Duration(k)*time.Second), state, fmt.Sprintf("bafy%d", k)))
		}
		if i == 2 {
			out = append(out, s.sign(t, 12, base.Add(2*time.Second), protocol.StateUp, "bafyother"))
		}
	}
	return out
}

type snapshot struct {
	Mirrors    []health.Mirror
	Counts     map[health.State]int
	Statements [][]byte
}

func snap(v *health.View, now time.Time) snapshot {
	return snapshot{v.Mirrors(now), v.Counts(now), v.Statements()}
}

func checkpoints() []time.Time {
	return []time.Time{t0.Add(5 * time.Second), t0.Add(9 * time.Second), t0.Add(15 * time.Second), t0.Add(40 * time.Second)}
}

func TestOrderDoesNotMatter(t *testing.T) {
	sts := corpus(t, 12)
	last := t0.Add(12 * time.Second)
	ref := health.New(testCfg)
	for _, st := range sts {
		ref.Apply(st, last)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 60 {
		perm := slices.Clone(sts)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		v := health.New(testCfg)
		for _, st := range perm {
			v.Apply(st, last)
		}
		for _, now := range checkpoints() {
			if got, want := snap(v, now), snap(ref, now); !reflect.DeepEqual(got, want) {
				t.Fatalf("trial %d at %s: view differs with order\n got %+v\nwant %+v", trial, now.Sub(t0), got.Counts, want.Counts)
			}
		}
	}
	// The reference itself is what the rules say: the equivocating mirror
	// (index 2) kept the greater bytes of seq 12.
	if c := ref.Counts(t0.Add(12 * time.Second)); c[health.StateLeft]+c[health.StateAlive]+c[health.StateSuspect]+c[health.StateDead] != 12 {
		t.Fatalf("reference view counts %v, want 12 mirrors", c)
	}
}

// merge copies every statement from's view holds into to, verifying each as
// a sync client does (old statements are kept as evidence of death).
func merge(t *testing.T, from, to *health.View, now time.Time) {
	t.Helper()
	for _, raw := range from.Statements() {
		st, err := attest.Verify(raw, now)
		if st == nil || errors.Is(err, attest.ErrFuture) {
			t.Fatalf("sync: %v", err)
		}
		to.Apply(st, now)
	}
}

func TestPartitionsConverge(t *testing.T) {
	sts := corpus(t, 12)
	now := t0.Add(12 * time.Second)
	whole := health.New(testCfg)
	for _, st := range sts {
		whole.Apply(st, now)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 30 {
		a, b := health.New(testCfg), health.New(testCfg)
		for _, st := range sts {
			switch rng.IntN(3) { // one side, the other, or both
			case 0:
				a.Apply(st, now)
			case 1:
				b.Apply(st, now)
			default:
				a.Apply(st, now)
				b.Apply(st, now)
			}
		}
		// The partition heals: each side syncs from the other.
		merge(t, a, b, now)
		merge(t, b, a, now)
		for _, at := range checkpoints() {
			sa, sb, sw := snap(a, at), snap(b, at), snap(whole, at)
			if !reflect.DeepEqual(sa, sb) || !reflect.DeepEqual(sa, sw) {
				t.Fatalf("trial %d at %s: views did not converge: %v / %v / %v", trial, at.Sub(t0), sa.Counts, sb.Counts, sw.Counts)
			}
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	sts := corpus(t, 8)
	v := health.New(testCfg)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i, st := range sts {
				if (i+w)%2 == 0 {
					v.Apply(st, t0.Add(10*time.Second))
				}
				v.Mirrors(t0.Add(10 * time.Second))
				v.Holders("bafy0", t0)
				v.Counts(t0)
				v.Statements()
				v.SetLocalLag(time.Duration(w) * time.Millisecond)
				v.Prune(t0.Add(11 * time.Second))
			}
		})
	}
	wg.Wait()
}
