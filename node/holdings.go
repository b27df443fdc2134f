package node

import (
	"fmt"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/protocol"
)

// defaultInlineHoldings is the most bundles a liveness statement lists
// inline (the older form). 0: every statement names what its mirror holds
// by the digest of its holdings statement only, so it stays the same size
// whatever the mirror holds, and a refresh carries no list at all.
const defaultInlineHoldings = 0

// errHoldingsGossiped refuses a holdings statement on gossip: they are
// pulled (and carried by sync), never gossiped, so one on a topic is
// provably out of protocol (reject, reason "kind").
var errHoldingsGossiped = fmt.Errorf("%w: holdings statements are pulled, never gossiped", attest.ErrKind)

// holdingsWiring is the holdings pull protocol's wiring (package
// holdings) and this mirror's own signed holdings statement.
type holdingsWiring struct {
	svc      *holdings.Service
	badInput *prometheus.CounterVec
	own      *holdings.Own // this mirror's signed holdings statement
}

// startHoldings serves and pulls holdings statements.
func (n *Node) startHoldings() error {
	w := &n.held
	w.badInput = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_holdings_bad_input_total",
		Help: "Holdings input refused, by reason: holdings_mismatch (a holdings list signed by another key than its subject's, or whose digest is not the one asked for), holdings_invalid (an answer that does not verify), holdings_malformed (a request or answer that breaks the protocol), holdings_flood (a peer over the request rate limit), holdings_sync_oversize (a sync response with more holdings bytes than protocol.MaxSyncHoldingsBytes; the stream is reset), holdings_stranger (a pull request from a peer that is not a mirror held alive or suspect), holdings_busy (a pull request while the most answers allowed at once were running). None of them changes the view.",
	}, []string{"reason"})
	svc, err := holdings.New(holdings.Config{
		Host: n.host, Store: holdingsStore{n}, Retry: n.prof.Heartbeat,
		Log:        n.log,
		Serve:      n.knownMirror,
		OnBadInput: func(reason string) { w.badInput.WithLabelValues(reason).Inc() },
		OnAdded:    func(st *attest.Statement) { n.kickFetches(st.Holdings.Bundles) },
		Now:        n.clock,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	w.svc = svc
	pullBytes := func(dir string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mirrornet_holdings_" + dir + "_bytes_total", Help: "Holdings pull protocol payload bytes " + dir + " (frames).",
		}, func() float64 { return float64(f()) })
	}
	n.registry.MustRegister(w.badInput, pullBytes("sent", svc.BytesSent), pullBytes("received", svc.BytesReceived))
	for _, r := range []string{holdings.ReasonMismatch, holdings.ReasonInvalid, holdings.ReasonMalformed, holdings.ReasonFlood, holdings.ReasonSyncOversize, holdings.ReasonStranger, holdings.ReasonBusy} {
		w.badInput.WithLabelValues(r)
	}
	svc.Start(n.ctx)
	return nil
}

// ownHoldings returns the digest of bundles, signing this mirror's new
// holdings statement when they changed (holdings.Own.Update).
func (n *Node) ownHoldings(bundles []string, now time.Time) (digest string, err error) {
	return n.held.own.Update(bundles, now)
}

// ownHoldingsStatement is this mirror's current signed holdings statement
// (nil before the first liveness statement).
func (n *Node) ownHoldingsStatement() (*attest.Statement, protocol.HoldingsRef) {
	return n.held.own.Statement()
}

// learnedLiveness follows up an accepted liveness statement: its
// holdings, when it names them by digest, are pulled from the peer that
// forwarded it (from; "" when it came by sync) and from the subject, and
// this mirror's own are put in its view next to its statement.
func (n *Node) learnedLiveness(st *attest.Statement, from peer.ID) {
	if st.Kind != attest.KindLiveness || st.Liveness.Inline() || st.Liveness.Holdings == "" {
		return
	}
	ref := protocol.HoldingsRef{Peer: st.Signer.String(), Digest: st.Liveness.Holdings}
	if st.Signer == n.id {
		if own, r := n.ownHoldingsStatement(); own != nil && r == ref {
			_, _ = n.view.AddHoldings(own)
		}
		return
	}
	if n.held.svc != nil && n.view.Wants(ref) {
		n.held.svc.Want(ref, from, st.Signer)
	}
}

// serveHoldings answers this mirror's own signed holdings statement
// (protocol.HTTPHoldingsPath): a light client checks it against the
// digest of the liveness statement it holds.
func (n *Node) serveHoldings(w http.ResponseWriter, _ *http.Request) {
	st, _ := n.ownHoldingsStatement()
	if st == nil {
		http.Error(w, "no holdings statement signed yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", protocol.HoldingsContentType)
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(st.Raw)
}

// holdingsStore is the holdings service's view of the node: the health
// view, and this mirror's own statement.
type holdingsStore struct{ n *Node }

var _ holdings.Store = holdingsStore{}

func (s holdingsStore) Holdings(id peer.ID, digest string) ([]byte, bool) {
	if id == s.n.id {
		if st, ref := s.n.ownHoldingsStatement(); st != nil && ref.Digest == digest {
			return st.Raw, true
		}
		return nil, false
	}
	return s.n.view.Holdings(id, digest)
}

func (s holdingsStore) Wants(ref protocol.HoldingsRef) bool { return s.n.view.Wants(ref) }

func (s holdingsStore) AddHoldings(st *attest.Statement) (bool, error) {
	return s.n.view.AddHoldings(st)
}

func (s holdingsStore) Pending(now time.Time) []protocol.HoldingsRef {
	var out []protocol.HoldingsRef
	for _, ref := range s.n.view.Pending(now) {
		if ref.Peer != s.n.id.String() {
			out = append(out, ref)
		}
	}
	return out
}

func (s holdingsStore) Addrs(id peer.ID) []string {
	if m, ok := s.n.view.Mirror(id, s.n.clock()); ok && m.Liveness != nil {
		return m.Liveness.Addrs
	}
	return nil
}

// withInlineHoldings lists at most k bundles inline (tests: 0 names every
// set by digest).
func withInlineHoldings(k int) Option { return func(o *options) { o.inlineHoldings = &k } }
