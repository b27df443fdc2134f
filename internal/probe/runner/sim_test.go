package runner

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// dag is an in-memory bundle: root -> fanout dag-pb nodes -> fanout raw leaves.
type dag struct {
	root   cid.Cid
	blocks map[cid.Cid][]byte
	leaves []cid.Cid
}

func buildDAG(t testing.TB, seed uint64, fanout int) *dag {
	t.Helper()
	d := &dag{blocks: map[cid.Cid][]byte{}}
	rng := rand.New(rand.NewPCG(seed, 7))
	pb := cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}
	raw := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}
	root := merkledag.NodeWithData(nil)
	root.SetCidBuilder(pb)
	for i := range fanout {
		mid := merkledag.NodeWithData(nil)
		mid.SetCidBuilder(pb)
		for j := range fanout {
			data := make([]byte, 256)
			for k := range data {
				data[k] = byte(rng.Uint32())
			}
			c, err := raw.Sum(data)
			if err != nil {
				t.Fatal(err)
			}
			d.blocks[c] = data
			d.leaves = append(d.leaves, c)
			if err := mid.AddRawLink(fmt.Sprint(j), &format.Link{Cid: c, Size: uint64(len(data))}); err != nil {
				t.Fatal(err)
			}
		}
		d.blocks[mid.Cid()] = mid.RawData()
		if err := root.AddNodeLink(fmt.Sprint(i), mid); err != nil {
			t.Fatal(err)
		}
	}
	d.root = root.Cid()
	d.blocks[d.root] = root.RawData()
	return d
}

type behaviour int

const (
	honest   behaviour = iota
	garbage            // attests holding the bundle, serves wrong bytes for every block
	half               // serves the root and inner nodes but only half the leaves
	starved            // serves fine, but all its own probes time out
	empty              // attests holding the bundle, answers 404 for every block
	vanished           // down: listed nowhere, serves nothing
)

type simMirror struct {
	addr   netip.Addr // each mirror in its own /24
	id     peer.ID
	key    crypto.PrivKey
	how    behaviour
	bundle *dag
	drop   map[cid.Cid]bool
	runner *Runner
}

type sim struct {
	t       testing.TB
	cfg     Config
	mirrors []*simMirror
	byURL   map[string]*simMirror
	byID    map[peer.ID]*simMirror
	ev      *probe.Evidence
	now     time.Time
	loss    float64
	rng     *rand.Rand
	added   int
	dropped map[error]int
}

// Mirrors implements ViewReader; Alive and Holds implement probe.View.
func (s *sim) Mirrors(time.Time) []Mirror {
	var out []Mirror
	for i, m := range s.mirrors {
		if m.how == vanished {
			continue
		}
		out = append(out, Mirror{ID: m.id, HTTP: fmt.Sprintf("sim://%d", i), Bundles: []string{m.bundle.root.String()}})
	}
	return out
}
func (s *sim) Alive(now time.Time) []peer.ID {
	var out []peer.ID
	for _, m := range s.Mirrors(now) {
		out = append(out, m.ID)
	}
	return out
}

// Domain implements probe.Domains: every mirror in its own /24.
func (s *sim) Domain(p peer.ID) string {
	if m := s.byID[p]; m != nil {
		return "net:" + netip.PrefixFrom(m.addr, 24).Masked().String()
	}
	return ""
}

func (s *sim) Holds(t peer.ID, b string, _ time.Time) bool {
	m := s.byID[t]
	return m != nil && m.how != vanished && m.bundle.root.String() == b
}

// fetcher is one observer's view of the network.
type fetcher struct {
	s    *sim
	self *simMirror
}

func (f *fetcher) FetchBlock(ctx context.Context, base string, c cid.Cid, ch Challenge) (Block, error) {
	if f.self.how == starved {
		return Block{}, context.DeadlineExceeded
	}
	if f.s.rng.Float64() < f.s.loss {
		return Block{}, errors.New("connection reset by peer")
	}
	m := f.s.byURL[base]
	if m == nil || m.how == vanished {
		return Block{}, errors.New("connection refused")
	}
	data, ok := m.bundle.blocks[c]
	if !ok || m.drop[c] || m.how == empty {
		return Block{}, fmt.Errorf("%w: 404", ErrStatus)
	}
	if m.how == garbage {
		data = []byte("not the block you asked for")
	}
	r, err := attest.SignProbeReceipt(m.key, ch.Observer.String(), ch.Nonce, c.String(), f.s.now)
	return Block{Data: data, Receipt: r, Addr: m.addr}, err
}

// publisher verifies each statement as a gossip validator would and adds it to the evidence.
type publisher struct{ s *sim }

func (p publisher) Publish(_ context.Context, raw []byte) error {
	st, err := attest.Verify(raw, p.s.now)
	if err != nil {
		p.s.t.Fatalf("own statement does not verify: %v", err)
	}
	if err := p.s.ev.Add(st, p.s.now); err != nil {
		p.s.dropped[errors.Unwrap(err)]++
		return nil
	}
	p.s.added++
	return nil
}

func newSim(t testing.TB, seed uint64, hows []behaviour, loss float64) *sim {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Parallel = 1 // deterministic order of injected loss
	s := &sim{t: t, cfg: cfg, byURL: map[string]*simMirror{}, byID: map[peer.ID]*simMirror{},
		now: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), loss: loss,
		rng: rand.New(rand.NewPCG(seed, 1)), dropped: map[error]int{}}
	ev, err := probe.NewEvidence(cfg.Config, s, s) // every mirror its own failure domain
	if err != nil {
		t.Fatal(err)
	}
	s.ev = ev
	keys := rand.NewChaCha8([32]byte{byte(seed), 1})
	shared := buildDAG(t, seed, 8)
	for i, how := range hows {
		k, _, err := crypto.GenerateEd25519Key(keys)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		m := &simMirror{id: id, key: k, how: how, bundle: shared, drop: map[cid.Cid]bool{},
			addr: netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i % 256), 1})}
		if how == half {
			for j, l := range shared.leaves {
				if j%2 == 0 {
					m.drop[l] = true
				}
			}
		}
		m.runner, err = NewRunner(cfg, id, k, s, &fetcher{s, m}, publisher{s}, func() time.Time { return s.now })
		if err != nil {
			t.Fatal(err)
		}
		s.mirrors = append(s.mirrors, m)
		s.byURL[fmt.Sprintf("sim://%d", i)] = m
		s.byID[id] = m
	}
	return s
}

// round has every live mirror run its assigned probes at the current time,
// then advances the clock by one interval.
func (s *sim) round() {
	for _, m := range s.mirrors {
		if m.how == vanished {
			continue
		}
		if _, err := m.runner.ProbeOnce(context.Background(), s.now); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *sim) status(i int) probe.TargetStatus { return s.ev.Status(s.mirrors[i].id, s.now) }

func excluded(st probe.State) bool { return st == probe.StateDegraded || st == probe.StateFailing }

func TestSimulatedNetwork(t *testing.T) {
	n, rounds, minHonest := 24, 50, 1000
	if raceEnabled {
		n, rounds, minHonest = 12, 12, 100
	}
	hows := make([]behaviour, n)
	hows[0], hows[1], hows[2], hows[3] = garbage, half, empty, starved
	s := newSim(t, 42, hows, 0.05)
	caughtGarbage, caughtHalf, caughtEmpty := -1, -1, -1
	honestRounds := 0
	for r := 1; r <= rounds; r++ {
		s.round()
		if g := s.status(0); caughtGarbage < 0 && g.State == probe.StateFailing && g.FailDomains > s.cfg.Observers/2 {
			caughtGarbage = r
		}
		if h := s.status(1); caughtHalf < 0 && excluded(h.State) {
			caughtHalf = r
		}
		if e := s.status(2); caughtEmpty < 0 && e.State == probe.StateFailing && e.FailDomains > s.cfg.Observers/2 {
			caughtEmpty = r
		}
		for i := 3; i < n; i++ { // the starved observer serves fine: it is an honest target
			honestRounds++
			if st := s.status(i); excluded(st.State) {
				t.Fatalf("round %d: honest mirror %d excluded: %+v", r, i, st)
			}
		}
		s.now = s.now.Add(s.cfg.Interval)
	}
	t.Logf("garbage failing after %d rounds, empty after %d, half-serving excluded after %d; %d honest mirror-rounds; %d results counted, dropped %v",
		caughtGarbage, caughtEmpty, caughtHalf, honestRounds, s.added, s.dropped)
	if caughtEmpty < 1 || caughtEmpty > 3 {
		t.Errorf("mirror serving nothing marked failing by most observers after %d rounds, want <= 3", caughtEmpty)
	}
	if caughtGarbage < 1 || caughtGarbage > 3 {
		t.Errorf("garbage mirror marked failing by most observers after %d rounds, want <= 3", caughtGarbage)
	}
	if caughtHalf < 1 || caughtHalf > 10 {
		t.Errorf("half-serving mirror caught after %d rounds, want <= 10", caughtHalf)
	}
	if honestRounds < minHonest {
		t.Errorf("only %d honest mirror-rounds", honestRounds)
	}
	s.now = s.now.Add(-s.cfg.Interval)
	for i := 3; i < n; i++ {
		if st := s.status(i); st.State != probe.StateVerified || st.PassRate24h < 0.8 {
			t.Errorf("honest mirror %d: %+v", i, st)
		}
	}
	if s.dropped[probe.ErrNotAssigned]+s.dropped[probe.ErrNotHeld] != 0 {
		t.Errorf("honest observers' results dropped: %v", s.dropped)
	}
}

func TestVanishedMirrorIsNotProbed(t *testing.T) {
	hows := make([]behaviour, 8)
	hows[0] = vanished
	s := newSim(t, 3, hows, 0)
	for range 3 {
		s.round()
		s.now = s.now.Add(s.cfg.Interval)
	}
	if st := s.status(0); st.Samples != 0 || st.State != probe.StateUnverified {
		t.Errorf("vanished mirror: %+v", st)
	}
	if st := s.status(1); st.State != probe.StateVerified {
		t.Errorf("honest mirror: %+v", st)
	}
}

func TestChallengeIsReplayableFromNonce(t *testing.T) {
	hows := make([]behaviour, 5)
	s := newSim(t, 5, hows, 0)
	res, err := s.mirrors[0].runner.ProbeOnce(context.Background(), s.now)
	if err != nil || len(res) == 0 {
		t.Fatalf("%v %v", res, err)
	}
	seqs := make([]uint64, len(res))
	for i, p := range res {
		seqs[i] = p.Seq
		if strings.HasPrefix(p.Challenge, "canary:") {
			if p.Outcome == protocol.OutcomePass {
				t.Errorf("canary passed: %+v", p)
			}
			continue
		}
		if p.Outcome != protocol.OutcomePass {
			t.Fatalf("honest target failed: %+v", p)
		}
		var nonce [16]byte
		parts := strings.Split(p.Challenge, ":")
		if n, err := hex.Decode(nonce[:], []byte(parts[1])); err != nil || n != 16 || len(parts) != 3 {
			t.Fatalf("challenge %q: %v", p.Challenge, err)
		}
		path := parts[2]
		want := fmt.Sprintf("%d.%d,%d.%d", Choose(nonce, 0, 0, 8), Choose(nonce, 0, 1, 8), Choose(nonce, 1, 0, 8), Choose(nonce, 1, 1, 8))
		if path != want {
			t.Errorf("path %s, nonce says %s", path, want)
		}
	}
	if !sort.SliceIsSorted(seqs, func(i, j int) bool { return seqs[i] < seqs[j] }) {
		t.Errorf("sequence numbers not rising: %v", seqs)
	}
}
