package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/protocol"
)

// syncTimeout bounds one sync exchange.
const syncTimeout = 10 * time.Second

// maxRelayPerSync bounds the statements one sync exchange makes this node
// republish on gossip.
const maxRelayPerSync = 64

// republish passes on, over gossip, liveness statements and suspicions
// that a sync exchange taught us and that are fresh enough for gossip:
// mirrors no longer sign every heartbeat, so what one side of a new
// connection (a joiner, the other half of a healed partition) knows must
// reach the rest of the network now, not at the next refresh. A mirror
// that learns of a suspicion about itself this way refutes it. Each
// statement travels once: gossip drops it as a duplicate or replay
// everywhere it is already known.
func (n *Node) republish(raws [][]byte) {
	now := n.clock()
	for _, raw := range raws {
		st, err := attest.Verify(raw, now)
		if err != nil || now.Sub(st.Time) > protocol.MaxLivenessAge/2 {
			continue
		}
		topic := protocol.TopicLiveness
		if st.Kind == attest.KindSuspicion {
			topic = protocol.TopicSuspicion
		} else if st.Kind != attest.KindLiveness {
			continue
		}
		if t := n.topics[topic]; t != nil {
			_ = t.Publish(n.ctx, raw) // a duplicate is refused: fine
		}
	}
}

// holdsExactly reports whether st is the statement (or standing
// suspicion) the view holds for its subject, byte for byte.
func (n *Node) holdsExactly(st *attest.Statement) bool {
	now := n.clock()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch st.Kind {
	case attest.KindLiveness:
		m, ok := n.view.Mirror(st.Signer, now)
		return ok && bytes.Equal(m.Raw, st.Raw)
	case attest.KindSuspicion:
		subject, err := peer.Decode(st.Suspicion.Subject)
		if err != nil {
			return false
		}
		s, ok := n.view.Suspicion(subject)
		return ok && bytes.Equal(s.Raw, st.Raw)
	}
	return false
}

// syncVerify verifies a statement of a sync response (a variable so that
// a test can count the signature checks).
var syncVerify = attest.Verify

// holdsRaw reports whether raw is the liveness statement the view holds
// for signer, byte for byte.
func (n *Node) holdsRaw(signer peer.ID, raw []byte) bool {
	now := n.clock()
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.view.Mirror(signer, now)
	return ok && bytes.Equal(m.Raw, raw)
}

// statements returns every signed statement this node holds, for sync and
// the HTTP statements endpoint. The returned slices are shared: do not
// modify them.
func (n *Node) statements() [][]byte {
	out := append(n.view.Statements(), n.featureStatements()...)
	if len(out) > protocol.MaxSyncStatements {
		out = out[:protocol.MaxSyncStatements]
	}
	return out
}

// featureStatements are the statements the features hold (probe results,
// releases, payout statements), shared as statements' are.
func (n *Node) featureStatements() [][]byte {
	var out [][]byte
	for _, f := range n.features {
		out = append(out, f.statements()...)
	}
	return out
}

// writeStatements writes the framed statement stream: one frame per
// statement and an empty frame to end.
func writeStatements(w io.Writer, sts [][]byte) error {
	bw := bufio.NewWriter(w)
	for _, raw := range sts {
		if err := protocol.WriteFrame(bw, raw); err != nil {
			return err
		}
	}
	if err := protocol.WriteFrame(bw, nil); err != nil {
		return err
	}
	return bw.Flush()
}

// handleSync answers a sync request with every statement we hold.
func (n *Node) handleSync(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
	req, err := protocol.ReadFrame(bufio.NewReader(io.LimitReader(s, protocol.MaxSyncRequestSize+16)), protocol.MaxSyncRequestSize)
	if err != nil {
		s.Reset()
		return
	}
	var r protocol.SyncRequest
	if err := json.Unmarshal(req, &r); err != nil {
		s.Reset()
		return
	}
	if err := writeStatements(s, n.syncStatements()); err != nil {
		s.Reset()
	}
}

// syncStatements is statements for a sync response: the view's
// statements, then the holdings statements it keeps (at most
// protocol.MaxSyncHoldingsBytes; the asker pulls the rest), then the
// features'. The HTTP statements stream leaves holdings out: a light
// client reads only the ones it needs, from the mirrors themselves.
func (n *Node) syncStatements() [][]byte {
	out := n.view.Statements()
	budget := protocol.MaxSyncHoldingsBytes
	for _, st := range n.view.HeldHoldings() {
		if len(st.Raw) > budget {
			break
		}
		budget -= len(st.Raw)
		out = append(out, st.Raw)
	}
	out = append(out, n.featureStatements()...)
	if len(out) > protocol.MaxSyncStatements {
		out = out[:protocol.MaxSyncStatements]
	}
	return out
}

// syncWith asks p for every statement it holds and applies each one after
// verifying it ourselves. It returns how many were new to us.
func (n *Node) syncWith(ctx context.Context, p peer.ID) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	s, err := n.host.NewStream(ctx, p, protocol.SyncProtocolID)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	req, _ := json.Marshal(protocol.SyncRequest{})
	if err := protocol.WriteFrame(s, req); err != nil {
		s.Reset()
		return 0, err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return 0, err
	}
	r := bufio.NewReader(s)
	fresh := 0
	var relay [][]byte
	defer func() { n.republish(relay) }()
	// held counts the bytes of holdings statements received: the sender
	// sends at most protocol.MaxSyncHoldingsBytes of them, so a peer that
	// sends more is out of protocol and we stop decoding its frames. A
	// frame larger than protocol.MaxStatementSize can only be a holdings
	// statement, so it is counted before it is verified.
	held := 0
	for i := 0; ; i++ {
		if i > protocol.MaxSyncStatements {
			s.Reset()
			return fresh, fmt.Errorf("node: sync from %s: more than %d statements", p, protocol.MaxSyncStatements)
		}
		raw, err := protocol.ReadFrame(r, max(protocol.MaxStatementSize, protocol.MaxHoldingsSize))
		if err != nil {
			s.Reset()
			return fresh, fmt.Errorf("node: sync from %s: %w", p, err)
		}
		if len(raw) == 0 {
			return fresh, nil
		}
		big := len(raw) > protocol.MaxStatementSize
		if big {
			held += len(raw)
		}
		if held > protocol.MaxSyncHoldingsBytes {
			return fresh, n.syncHoldingsOversize(s, p, held)
		}
		ok, kind := n.applySynced(raw, p)
		if kind == attest.KindHoldings && !big {
			held += len(raw)
		}
		if !ok {
			continue
		}
		fresh++
		// Only liveness and suspicion statements are republished, so only
		// they take relay slots.
		if (kind == attest.KindLiveness || kind == attest.KindSuspicion) && len(relay) < maxRelayPerSync {
			relay = append(relay, raw)
		}
	}
}

// errSyncOversize: a sync response carried more holdings statements than
// protocol.MaxSyncHoldingsBytes.
var errSyncOversize = errors.New("node: sync response over the holdings byte bound")

// syncHoldingsOversize resets a sync stream whose holdings statements
// passed protocol.MaxSyncHoldingsBytes, counts it and says so once.
func (n *Node) syncHoldingsOversize(s network.Stream, p peer.ID, held int) error {
	s.Reset()
	if n.held.badInput != nil {
		n.held.badInput.WithLabelValues(holdings.ReasonSyncOversize).Inc()
	}
	err := fmt.Errorf("node: sync from %s: %w: more than %d bytes of holdings statements (%d so far)", p, errSyncOversize, protocol.MaxSyncHoldingsBytes, held)
	n.log.Info("sync stream reset", "peer", p, "err", err)
	return err
}

// applySynced verifies a statement received through sync. Unlike gossip,
// sync takes old (but genuine) statements: they tell a late joiner which
// mirrors are dead. from is the peer it came from.
func (n *Node) applySynced(raw []byte, from peer.ID) (bool, attest.Kind) {
	// Most of a sync response is what we hold already, byte for byte (a
	// mirror that connects to eight peers is sent the same view eight
	// times): such a statement would verify only to be refused as a
	// replay, so it is refused as one without the signature check.
	if signer, kind, err := attest.Peek(raw); err == nil && kind == attest.KindLiveness && n.holdsRaw(signer, raw) {
		n.metrics.statement(&attest.Statement{Kind: kind}, attest.ErrReplay)
		return false, kind
	}
	for _, f := range n.features {
		if f.applySynced(raw) {
			return true, ""
		}
	}
	st, err := syncVerify(raw, n.clock())
	if err != nil && !(errors.Is(err, attest.ErrTooOld) && st != nil) {
		n.metrics.statement(st, err)
		return false, ""
	}
	if st.Kind == attest.KindHoldings {
		// Kept only if the subject's statement names it.
		changed, _ := n.view.AddHoldings(st)
		if changed {
			n.kickFetches(st.Holdings.Bundles)
		}
		return changed, st.Kind
	}
	if len(raw) > protocol.MaxStatementSize {
		n.metrics.statement(st, attest.ErrOversize)
		return false, st.Kind
	}
	err = n.accept(st)
	n.metrics.statement(st, err)
	if err == nil {
		n.learnedLiveness(st, from)
	}
	return err == nil, st.Kind
}

// syncLoop runs sync requests queued by new connections, one at a time.
func (n *Node) syncLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case p := <-n.syncQueue:
			k, err := n.syncWith(n.ctx, p)
			if err != nil {
				n.log.Debug("sync failed", "peer", p, "err", err)
				continue
			}
			n.mu.Lock()
			n.lastSync = n.clock()
			n.mu.Unlock()
			n.log.Debug("synced", "peer", p, "new", k)
		}
	}
}

// connNotifee queues a sync with every newly connected peer we have not
// synced with recently.
type connNotifee struct{ n *Node }

func (c connNotifee) Connected(_ network.Network, conn network.Conn) {
	n := c.n
	p := conn.RemotePeer()
	now := n.clock()
	n.mu.Lock()
	last, ok := n.synced[p]
	if ok && now.Sub(last) < n.prof.Health.DeadAfter {
		n.mu.Unlock()
		return
	}
	// Probes open connections to many peers, and a full sync on each of
	// them would cost every mirror the whole view per probe: with a peer
	// our view holds alive, sync at most once per RefreshMin (gossip
	// brings every change in between). Newcomers (unknown to us) and
	// mirrors we hold dead or left (the other side of a healed partition)
	// are always synced with.
	if m, known := n.view.Mirror(p, now); known && now.Sub(n.lastSync) < n.prof.RefreshMin &&
		(m.State == health.StateAlive || m.State == health.StateSuspect) {
		n.mu.Unlock()
		return
	}
	n.synced[p] = now
	n.mu.Unlock()
	n.queueSync(p)
}

// queueSync queues a sync with p. It never blocks: when the queue is
// full, the syncs already queued cover it.
func (n *Node) queueSync(p peer.ID) {
	select {
	case n.syncQueue <- p:
	case <-n.ctx.Done():
	default:
	}
}

func (connNotifee) Disconnected(network.Network, network.Conn) {}
func (connNotifee) Listen(network.Network, ma.Multiaddr)       {}
func (connNotifee) ListenClose(network.Network, ma.Multiaddr)  {}
