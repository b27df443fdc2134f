package holdings_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/internal/netsim"
	"github.com/mirrornet/mirrornet/protocol"
)

// fakeStore is a holdings.Store: statements it serves, references it
// wants, what it kept.
type fakeStore struct {
	mu    sync.Mutex
	serve map[protocol.HoldingsRef][]byte
	want  map[protocol.HoldingsRef]bool
	kept  []*attest.Statement
	addrs map[peer.ID][]string
}

func newStore() *fakeStore {
	return &fakeStore{serve: map[protocol.HoldingsRef][]byte{}, want: map[protocol.HoldingsRef]bool{}, addrs: map[peer.ID][]string{}}
}

func (s *fakeStore) Holdings(id peer.ID, digest string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.serve[protocol.HoldingsRef{Peer: id.String(), Digest: digest}]
	return b, ok
}

func (s *fakeStore) Wants(ref protocol.HoldingsRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.want[ref]
}

func (s *fakeStore) AddHoldings(st *attest.Statement) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := protocol.HoldingsRef{Peer: st.Signer.String(), Digest: st.Holdings.Digest()}
	if !s.want[ref] {
		return false, fmt.Errorf("not wanted")
	}
	delete(s.want, ref)
	s.serve[ref] = st.Raw
	s.kept = append(s.kept, st)
	return true, nil
}

func (s *fakeStore) Pending(time.Time) []protocol.HoldingsRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.HoldingsRef
	for ref := range s.want {
		out = append(out, ref)
	}
	return out
}

func (s *fakeStore) Addrs(id peer.ID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[id]
}

func (s *fakeStore) keptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.kept)
}

type mirror struct {
	h     host.Host
	key   crypto.PrivKey
	store *fakeStore
	svc   *holdings.Service
	mu    sync.Mutex
	bad   map[string]int
}

func (m *mirror) badCount(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bad[reason]
}

// sign returns m's signed holdings statement of set and its reference.
func (m *mirror) sign(t *testing.T, seq uint64, set ...string) ([]byte, protocol.HoldingsRef) {
	t.Helper()
	set = protocol.SortUnique(set)
	raw, err := attest.SignHoldings(m.key, protocol.Holdings{Peer: m.h.ID().String(), Seq: seq, Time: time.Now().UnixMilli(), Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	return raw, protocol.HoldingsRef{Peer: m.h.ID().String(), Digest: protocol.HoldingsDigest(set)}
}

// newMirrors starts n hosts on a netsim network (10 ms links), none
// connected to another, each running the holdings service; every
// store knows every host's addresses.
func newMirrors(t *testing.T, n int, rate, burst float64) []*mirror {
	t.Helper()
	return newMirrorsWith(t, n, func(_ int, c *holdings.Config) { c.Rate, c.Burst = rate, burst })
}

// newMirrorsWith is newMirrors with tweak applied to mirror i's config.
func newMirrorsWith(t *testing.T, n int, tweak func(i int, c *holdings.Config)) []*mirror {
	t.Helper()
	nw, err := netsim.New(netsim.Config{Latency: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out []*mirror
	t.Cleanup(func() {
		cancel()
		for _, m := range out {
			m.svc.Close()
			m.h.Close()
		}
	})
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := nw.NewHost(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), sk)
		if err != nil {
			t.Fatal(err)
		}
		m := &mirror{h: h, key: sk, store: newStore(), bad: map[string]int{}}
		cfg := holdings.Config{
			Host: h, Store: m.store, Retry: time.Second,
			OnBadInput: func(r string) { m.mu.Lock(); m.bad[r]++; m.mu.Unlock() },
		}
		tweak(i, &cfg)
		m.svc, err = holdings.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.svc.Start(ctx)
		out = append(out, m)
	}
	for _, m := range out {
		for _, o := range out {
			for _, a := range o.h.Addrs() {
				m.store.addrs[o.h.ID()] = append(m.store.addrs[o.h.ID()], a.String())
			}
		}
	}
	return out
}

// TestWantPullsFromSources: a wanted holdings statement is pulled from the
// first source that has it (the forwarder lacks it, the subject has it),
// verified and kept, within one exchange per source.
func TestWantPullsFromSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 3, 0, 0)
		subject, forwarder, asker := ms[0], ms[1], ms[2]
		raw, ref := subject.sign(t, 1, "bafyA", "bafyB")
		subject.store.serve[ref] = raw
		asker.store.want[ref] = true
		start := time.Now()
		asker.svc.Want(ref, forwarder.h.ID(), subject.h.ID())
		synctest.Wait()
		for asker.store.keptCount() == 0 && time.Since(start) < 10*time.Second {
			time.Sleep(10 * time.Millisecond) // virtual time: advances the bubble
			synctest.Wait()
		}
		if asker.store.keptCount() != 1 {
			t.Fatal("holdings statement not pulled")
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("pull took %s of virtual time", d)
		}
		// Now the asker serves it too.
		if _, ok := asker.store.Holdings(subject.h.ID(), ref.Digest); !ok {
			t.Fatal("kept statement not served")
		}
		if asker.svc.BytesReceived() < int64(len(raw)) || subject.svc.BytesSent() < int64(len(raw)) {
			t.Fatal("pull bytes not counted")
		}
	})
}

// TestPendingRetried: what the store lacks is asked of its subject at the
// next Retry, without anyone calling Want.
func TestPendingRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2, 0, 0)
		subject, asker := ms[0], ms[1]
		raw, ref := subject.sign(t, 1, "bafyA")
		subject.store.serve[ref] = raw
		asker.store.mu.Lock()
		asker.store.want[ref] = true
		asker.store.mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if asker.store.keptCount() != 1 {
			t.Fatal("pending holdings not pulled at the retry")
		}
	})
}

// TestBadAnswersRefused: a source that answers with the list signed by
// another key, another list of the subject, or garbage changes nothing in
// the asker's store, and each is counted by reason.
func TestBadAnswersRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 3, 0, 0)
		subject, liar, asker := ms[0], ms[1], ms[2]
		_, ref := subject.sign(t, 2, "bafyA", "bafyB")
		older, _ := subject.sign(t, 1, "bafyA")
		forged, _ := liar.sign(t, 1, "bafyA", "bafyB") // same list, same digest, the liar's key
		asker.store.want[ref] = true

		liar.h.SetStreamHandler(protocol.HoldingsProtocolID, func(s network.Stream) {
			defer s.Close()
			for _, b := range [][]byte{forged, older, []byte("garbage"), nil} {
				_ = protocol.WriteFrame(s, b)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kept, err := asker.svc.Pull(ctx, liar.h.ID(), []protocol.HoldingsRef{ref})
		if kept != 0 || asker.store.keptCount() != 0 {
			t.Fatalf("kept %d statements from a liar (err %v)", kept, err)
		}
		if got := asker.badCount(holdings.ReasonMismatch); got < 1 {
			t.Fatalf("mismatch not counted: %v", asker.bad)
		}
		if !asker.store.want[ref] {
			t.Fatal("the reference is no longer wanted")
		}
		// The answer had more frames than asked for: counted as malformed.
		if asker.badCount(holdings.ReasonMalformed)+asker.badCount(holdings.ReasonInvalid) == 0 {
			t.Fatalf("extra or garbage frames not counted: %v", asker.bad)
		}
	})
}

// TestAnswerFramesCounted: one bad frame of each kind is counted under its
// own reason.
func TestAnswerFramesCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 3, 0, 0)
		subject, liar, asker := ms[0], ms[1], ms[2]
		_, ref := subject.sign(t, 2, "bafyA", "bafyB")
		_, ref2 := subject.sign(t, 3, "bafyC")
		forged, _ := liar.sign(t, 1, "bafyA", "bafyB")
		asker.store.want[ref], asker.store.want[ref2] = true, true
		liar.h.SetStreamHandler(protocol.HoldingsProtocolID, func(s network.Stream) {
			defer s.Close()
			for _, b := range [][]byte{forged, []byte("garbage"), nil} {
				_ = protocol.WriteFrame(s, b)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := asker.svc.Pull(ctx, liar.h.ID(), []protocol.HoldingsRef{ref, ref2}); err != nil {
			t.Fatal(err)
		}
		if asker.badCount(holdings.ReasonMismatch) != 1 || asker.badCount(holdings.ReasonInvalid) != 1 || asker.store.keptCount() != 0 {
			t.Fatalf("bad = %v, kept %d", asker.bad, asker.store.keptCount())
		}
	})
}

// TestRequestFloodLimited: a peer asking faster than the limit is cut off
// and counted; honest peers are still answered.
func TestRequestFloodLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 3, 1, 2)
		server, flooder, honest := ms[0], ms[1], ms[2]
		raw, ref := server.sign(t, 1, "bafyA")
		server.store.serve[ref] = raw
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		flooder.store.want[ref] = true
		ok := 0
		for range 10 {
			flooder.store.mu.Lock()
			flooder.store.want[ref] = true
			flooder.store.mu.Unlock()
			if n, err := flooder.svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); err == nil && n == 1 {
				ok++
			}
		}
		if ok > 2 || server.badCount(holdings.ReasonFlood) < 8 {
			t.Fatalf("flooder answered %d times, flood counted %d", ok, server.badCount(holdings.ReasonFlood))
		}
		honest.store.want[ref] = true
		if n, err := honest.svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); n != 1 || err != nil {
			t.Fatalf("honest pull during a flood: %d, %v", n, err)
		}
	})
}

// TestMalformedRequestCounted: a request that does not decode is reset and
// counted.
func TestMalformedRequestCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2, 0, 0)
		server, client := ms[0], ms[1]
		client.h.Peerstore().AddAddrs(server.h.ID(), server.h.Addrs(), time.Hour)
		s, err := client.h.NewStream(context.Background(), server.h.ID(), protocol.HoldingsProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		_ = protocol.WriteFrame(s, []byte(`{"want":[{"peer":"x","digest":"nothex"}]}`))
		_ = s.CloseWrite()
		buf := make([]byte, 16)
		_, _ = s.Read(buf)
		s.Close()
		synctest.Wait()
		if server.badCount(holdings.ReasonMalformed) != 1 {
			t.Fatalf("malformed request not counted: %v", server.bad)
		}
	})
}

// TestManyWantsPacedUnderTheLimit: a puller wanting more lists from one
// peer than one request carries batches them and paces its requests, so
// a responder with the default limits answers every one and counts no
// flood.
func TestManyWantsPacedUnderTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := newMirrors(t, 2, 0, 0)
		server, asker := ms[0], ms[1]
		const n = 12 * protocol.MaxHoldingsWant
		for i := range n {
			k, _, err := crypto.GenerateEd25519Key(nil)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := peer.IDFromPrivateKey(k)
			set := []string{fmt.Sprintf("bafy%d", i)}
			raw, err := attest.SignHoldings(k, protocol.Holdings{Peer: id.String(), Seq: 1, Time: time.Now().UnixMilli(), Bundles: set})
			if err != nil {
				t.Fatal(err)
			}
			ref := protocol.HoldingsRef{Peer: id.String(), Digest: protocol.HoldingsDigest(set)}
			server.store.serve[ref] = raw
			asker.store.want[ref] = true
		}
		asker.store.mu.Lock()
		refs := make([]protocol.HoldingsRef, 0, n)
		for ref := range asker.store.want {
			refs = append(refs, ref)
		}
		asker.store.mu.Unlock()
		for _, ref := range refs {
			asker.svc.Want(ref, server.h.ID())
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := asker.store.keptCount(); got != n {
			t.Fatalf("kept %d of %d", got, n)
		}
		if f := server.badCount(holdings.ReasonFlood); f != 0 {
			t.Fatalf("the responder counted %d floods from an honest puller", f)
		}
	})
}

// TestStrangerNotServed: a peer Serve refuses gets no answer (counted as
// holdings_stranger); a peer it admits does.
func TestStrangerNotServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var stranger peer.ID
		ms := newMirrorsWith(t, 3, func(i int, c *holdings.Config) {
			if i == 0 {
				c.Serve = func(p peer.ID) bool { return p != stranger }
			}
		})
		server, honest := ms[0], ms[1]
		stranger = ms[2].h.ID()
		raw, ref := server.sign(t, 1, "bafyA")
		server.store.serve[ref] = raw
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ms[2].store.want[ref] = true
		if n, _ := ms[2].svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); n != 0 || ms[2].store.keptCount() != 0 {
			t.Fatalf("stranger was answered: %d statements", n)
		}
		if got := server.badCount(holdings.ReasonStranger); got != 1 {
			t.Fatalf("stranger counted %d times, want 1: %v", got, server.bad)
		}
		honest.store.want[ref] = true
		if n, err := honest.svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); n != 1 || err != nil {
			t.Fatalf("admitted peer: %d, %v", n, err)
		}
	})
}

// TestMaxServingBounded: while MaxServing answers are running, another
// request is refused (counted as holdings_busy); once one ends, requests
// are answered again.
func TestMaxServingBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxServing = 2
		ms := newMirrorsWith(t, 4, func(i int, c *holdings.Config) {
			if i == 0 {
				c.MaxServing = maxServing
			}
		})
		server, asker := ms[0], ms[3]
		raw, ref := server.sign(t, 1, "bafyA")
		server.store.serve[ref] = raw
		// Two peers each open a request and send only the start of its
		// frame: their answers hold a slot until the stream ends.
		var held []network.Stream
		for _, m := range ms[1:3] {
			m.h.Peerstore().AddAddrs(server.h.ID(), server.h.Addrs(), time.Hour)
			s, err := m.h.NewStream(context.Background(), server.h.ID(), protocol.HoldingsProtocolID)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write([]byte{0x20}); err != nil {
				t.Fatal(err)
			}
			held = append(held, s)
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		asker.store.want[ref] = true
		if n, _ := asker.svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); n != 0 {
			t.Fatalf("request over MaxServing answered: %d statements", n)
		}
		if got := server.badCount(holdings.ReasonBusy); got != 1 {
			t.Fatalf("busy counted %d times, want 1: %v", got, server.bad)
		}
		held[0].Reset()
		// Fake time (the bubble's): lets the reset cross the simulated
		// link, so that answer ends and frees its slot.
		time.Sleep(time.Second)
		synctest.Wait()
		if server.badCount(holdings.ReasonMalformed) != 1 {
			t.Fatalf("the reset request did not end: %v", server.bad)
		}
		asker.store.mu.Lock()
		asker.store.want[ref] = true
		asker.store.mu.Unlock()
		if n, err := asker.svc.Pull(ctx, server.h.ID(), []protocol.HoldingsRef{ref}); n != 1 || err != nil {
			t.Fatalf("after a slot freed: %d, %v", n, err)
		}
		held[1].Reset()
	})
}
