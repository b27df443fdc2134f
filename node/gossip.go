package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/catchup"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/p2plimits"
	"github.com/mirrornet/mirrornet/protocol"
)

// startGossip starts gossipsub with mirrornet's peer scoring and validators,
// and joins the statement topics.
func (n *Node) startGossip() error {
	// Signature checks run on a bounded pool of workers (p2plimits), so a
	// flood of valid statements leaves a core to the rest of the mirror.
	val := p2plimits.DefaultValidation()
	params := gossipParams()
	if n.tuneGossip != nil {
		n.tuneGossip(&params)
	}
	opts := append(val.PubSubOptions(),
		// Publish a statement to every peer we know, not only the mesh: a
		// heartbeat then reaches direct peers in one hop, and publishing
		// right after start is not dropped for want of a mesh.
		pubsub.WithFloodPublish(true),
		// Content-addressed message IDs: the same signed statement arriving
		// from many peers is one message.
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			h := sha256.Sum256(m.Data)
			return string(h[:])
		}),
		// Every statement is signed by its author already (attest), so
		// gossipsub's own per-message signature would only cost a second
		// Ed25519 check and ~100 bytes per message: carry none (as
		// Ethereum's consensus gossip does), with content-addressed IDs.
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		// ...and no author or sequence number either: a StrictNoSign peer
		// built from the spec (js-libp2p, rust-libp2p) drops any message
		// that carries from or seqno.
		pubsub.WithNoAuthor(),
		pubsub.WithPeerScore(n.scoreParams(), scoreThresholds()),
		pubsub.WithMaxMessageSize(protocol.MaxGossipRPCSize),
		pubsub.WithGossipSubParams(params),
		pubsub.WithRawTracer(&n.gossipBytes),
		// One more sync once this mirror is first in a liveness mesh: what
		// was published between its sync on connect and the graft went
		// along meshes it was not in yet (see internal/catchup).
		pubsub.WithRawTracer(&catchup.Tracer{
			Topic: protocol.TopicLiveness, Trigger: &catchup.Trigger{MinGap: n.prof.RefreshMin},
			Now: n.clock, Sync: func(p peer.ID) {
				n.gossipBytes.catchups.Add(1)
				n.queueSync(p)
			},
		}),
	)
	ps, err := pubsub.NewGossipSub(n.ctx, n.host, opts...)
	if err != nil {
		return err
	}
	n.ps = ps
	for _, ts := range n.allTopics() {
		validate := ts.validate
		if bh := n.blackhole; bh != nil {
			// A test partition cuts every topic, features' included.
			inner := validate
			validate = func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
				if from != n.id && bh(from) {
					return pubsub.ValidationIgnore
				}
				return inner(ctx, from, msg)
			}
		}
		if err := ps.RegisterTopicValidator(ts.topic, validate, val.ValidatorOptions()...); err != nil {
			return err
		}
		t, err := ps.Join(ts.topic)
		if err != nil {
			return err
		}
		sub, err := t.Subscribe()
		if err != nil {
			return err
		}
		n.topics[ts.topic] = t
		n.subs = append(n.subs, sub)
		n.wg.Add(1)
		go n.drain(sub)
	}
	return nil
}

// gossipParams are gossipsub's defaults with explicit control-message
// limits that honest traffic never reaches. After a burst of spam an honest
// peer announces up to MaxIHaveLength message IDs per topic per heartbeat;
// at about 34 bytes an ID that is three frames of MaxGossipRPCSize, so
// with our four topics a dozen IHAVE messages in one heartbeat, beyond
// gossipsub's default of ten: the rest, and the honest statements they
// announce, would be ignored. The limits below leave a fourfold margin;
// what a peer may ask for in return stays bounded by MaxIHaveLength.
func gossipParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.MaxIHaveLength = 5000
	p.MaxIHaveMessages = 64
	// One IDONTWANT per large message a mesh peer received: at most the
	// statements a heartbeat can carry from every signer.
	p.MaxIDontWantMessages = 4096
	// IHAVE goes to Dlazy peers outside the mesh, not to a quarter of
	// them: probes connect a mirror to many peers, and gossip to a share
	// of all of them would grow with the network.
	p.GossipFactor = 0
	// What liveness costs a mirror is mostly how many copies of each
	// statement it sends and receives. Statements are a few hundred bytes,
	// below IDONTWANT's threshold, so a mirror receives about one copy per
	// mesh peer: a mesh of 4 instead of 6 cuts that by a third and still
	// reaches a thousand mirrors in about five hops (Dout 1: the spec
	// wants it below D/2). IHAVE then announces each message ID once, to
	// one peer outside the mesh, instead of in three heartbeats to 6 (18
	// IDs of ~35 bytes each for every statement, more than the
	// statement); a peer that missed a message still asks for it with
	// IWANT, and the message cache keeps it for HistoryLength heartbeats.
	// One lazy peer rather than three: every mirror announces every
	// statement to one more peer chosen afresh each heartbeat, so a mirror
	// a mesh left out still hears of it from many; one that missed a
	// refresh for good still holds the mirror alive (a TTL covers two
	// refresh gaps) and pulls statements with its syncs (a new
	// connection's, and on its first graft). Two more announcements per
	// statement cost each mirror 8% of its bytes.
	// Meshes may grow to Dhi by peers' GRAFTs before a heartbeat prunes
	// them, and every mesh peer is sent a copy: Dhi 5 (gossipsub's
	// pattern would give 8) cut the gossip bytes a mirror sends per
	// statement from about 1,760 to 1,210 in the scale benchmark at N=100
	// (MIRRORNET_SCALE_MESH=4,3,5 against 4), detection and heals alike;
	// a mesh of 3 saves as much but needs Dout 0 (no outbound quota).
	p.D, p.Dlo, p.Dhi, p.Dscore, p.Dout = 4, 3, 5, 2, 1
	p.Dlazy = 1
	p.HistoryGossip = 1
	return p
}

// allTopics are the core's topics and every feature's.
func (n *Node) allTopics() []topicSpec {
	out := []topicSpec{{topic: protocol.TopicLiveness, validate: n.validate}, {topic: protocol.TopicSuspicion, validate: n.validate}}
	for _, f := range n.features {
		out = append(out, f.topics()...)
	}
	return out
}

// scoreParams configures gossipsub peer scoring for our topics: invalid
// statements cost the forwarder (P4), and the IP-colocation penalty (P6)
// spares loopback and private ranges so testnets are not punished.
func (n *Node) scoreParams() *pubsub.PeerScoreParams {
	topics := map[string]*pubsub.TopicScoreParams{}
	for _, ts := range n.allTopics() {
		topics[ts.topic] = &pubsub.TopicScoreParams{
			SkipAtomicValidation: true,
			TopicWeight:          1,
			// P1: a little credit for time in the mesh (the quantum must be
			// set even when it is the only P1 knob we use).
			TimeInMeshWeight:  0.01,
			TimeInMeshQuantum: time.Second,
			TimeInMeshCap:     100,
			// P4: an invalid statement costs the peer that forwarded it.
			InvalidMessageDeliveriesWeight: -100,
			InvalidMessageDeliveriesDecay:  0.5,
		}
	}
	var white []*net.IPNet
	for _, s := range n.cfg.ColocationWhitelist {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue // Validate already rejected it
		}
		white = append(white, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return &pubsub.PeerScoreParams{
		SkipAtomicValidation: true,
		Topics:               topics,
		// P5: features (retrieval probes) may set n.appScore in their
		// constructor to feed probe outcomes and diversity into scoring.
		AppSpecificScore: func(p peer.ID) float64 {
			if n.appScore != nil {
				return n.appScore(p)
			}
			return 0
		},
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: 3,
		IPColocationFactorWhitelist: white,
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 10 * time.Minute,
	}
}

func scoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             -500,
		PublishThreshold:            -1000,
		GraylistThreshold:           -2500,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 5,
	}
}

// validate is the topic validator: it verifies the statement, maps the
// result to Accept/Reject/Ignore in one place, and applies accepted
// statements to the node's state atomically with the sequence check.
//
// Cost bound per signer: a statement arriving sooner than half a heartbeat
// after the last accepted one of its signer (and kind), and signed less
// than that after it, is ignored and not forwarded (attest.SeqGuard).
func (n *Node) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if n.blackhole != nil && from != n.id && n.blackhole(from) {
		return pubsub.ValidationIgnore
	}
	now := n.clock()
	if err := n.refusedUnverified(msg.Data, now); err != nil {
		// Refused on the claimed signer alone: no signature is checked.
		n.metrics.statement(nil, err)
		if n.onVerdict != nil {
			n.onVerdict(nil, err)
		}
		return pubsub.ValidationIgnore
	}
	st, err := attest.Verify(msg.Data, now)
	if err == nil && from == n.id && n.holdsExactly(st) {
		// Our own republication of a statement we learned through sync
		// (see syncWith): already applied, passed on as it is.
		return pubsub.ValidationAccept
	}
	if err == nil {
		err = n.accept(st)
		if err == nil {
			n.learnedLiveness(st, from)
		}
	}
	if err == nil && st.Kind == attest.KindLiveness && st.Signer != n.id {
		// Gossip only: sync hands over old statements on purpose.
		n.mu.Lock()
		if d := now.Sub(st.Time); d < n.bestDelay {
			n.bestDelay = max(d, 0)
		}
		n.mu.Unlock()
	}
	n.metrics.statement(st, err)
	if n.onVerdict != nil {
		n.onVerdict(st, err)
	}
	switch verdict(err) {
	case attest.Accept:
		return pubsub.ValidationAccept
	case attest.Ignore:
		n.log.Debug("ignored statement", "from", from, "reason", reason(err), "err", err)
		return pubsub.ValidationIgnore
	default:
		n.log.Debug("rejected statement", "from", from, "reason", reason(err), "err", err)
		return pubsub.ValidationReject
	}
}

// refusedUnverified is the cheap check a statement passes before its
// signature is: a liveness statement from a stranger that the full view
// would refuse whoever signed it (health.View.RefusesStranger) is refused
// on its claimed signer, for the reason the view gives. Under a flood of
// throwaway keys that fills the view, the rest of the flood then costs an
// envelope decode each instead of a signature check.
func (n *Node) refusedUnverified(raw []byte, now time.Time) error {
	id, kind, err := attest.Peek(raw)
	if err != nil || kind != attest.KindLiveness || id == n.id {
		return nil // Verify says what is wrong, or the statement is ours
	}
	return n.view.RefusesStranger(id, len(raw), now)
}

// verdict is attest.Classify extended with the view's refusals, which are
// not the sender's fault.
func verdict(err error) attest.Verdict {
	if errors.Is(err, health.ErrViewFull) || errors.Is(err, health.ErrOverBudget) ||
		errors.Is(err, health.ErrUnknownSubject) || errors.Is(err, health.ErrStaleSuspicion) {
		return attest.Ignore
	}
	return attest.Classify(err)
}

// reason is the metrics label of err: attest.Reason extended with the
// view's refusals.
func reason(err error) string {
	switch {
	case errors.Is(err, health.ErrViewFull):
		return "view_full"
	case errors.Is(err, health.ErrOverBudget):
		return "over_budget"
	case errors.Is(err, health.ErrUnknownSubject):
		return "unknown_subject"
	case errors.Is(err, health.ErrStaleSuspicion):
		return "stale_suspicion"
	}
	return attest.Reason(err)
}

// accept applies a verified statement if it is newer than what we hold
// from its signer, not rate-limited, and there is room for it; otherwise
// it returns why not.
func (n *Node) accept(st *attest.Statement) error {
	now := n.clock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if st.Kind == attest.KindSuspicion {
		// Not sequence-guarded: one observer reports on many subjects.
		// The view keeps one suspicion per subject, so a flood of them
		// costs verification only.
		if err := n.acceptSuspicionLocked(st, now); err != nil {
			return err
		}
		if n.onAccept != nil {
			n.onAccept(st)
		}
		return nil
	}
	if st.Kind == attest.KindHoldings {
		return errHoldingsGossiped
	}
	if err := n.guard.Admit(st, now); err != nil {
		return err
	}
	switch st.Kind {
	case attest.KindLiveness:
		changed, err := n.view.Add(st, now)
		if err != nil {
			return err
		}
		n.guard.Accept(st, now)
		if changed && st.Signer != n.id && st.Liveness.State == protocol.StateUp {
			n.kickFetches(st.Liveness.Bundles)
		}
	default:
		n.guard.Accept(st, now)
	}
	if n.onAccept != nil {
		n.onAccept(st)
	}
	return nil
}

// drain reads a subscription: validation already applied what it carries.
func (n *Node) drain(sub *pubsub.Subscription) {
	defer n.wg.Done()
	for {
		if _, err := sub.Next(n.ctx); err != nil {
			return
		}
	}
}

// heartbeatLoop publishes a liveness statement when its content changed or
// its refresh is due (see publishLiveness), and soon after announce asks
// for one, never two closer than minPublishGap (peers
// ignore statements that follow the last one by less than half a
// heartbeat). It also measures how late its own timer fires: a starved
// observer stretches its failure-detection timeouts (Lifeguard) instead of
// declaring others dead.
func (n *Node) heartbeatLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.prof.Heartbeat)
	defer t.Stop()
	gap := minPublishGap(n.prof.Heartbeat)
	var soon *time.Timer
	var soonC <-chan time.Time
	defer func() {
		if soon != nil {
			soon.Stop()
		}
	}()
	last := n.clock()
	var lag time.Duration
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
			if soonC != nil {
				continue // already scheduled
			}
			n.mu.Lock()
			wait := n.lastPublished.Add(gap).Sub(n.clock())
			n.mu.Unlock()
			if wait > 0 {
				soon = time.NewTimer(wait)
				soonC = soon.C
				continue
			}
			n.announceNow(t, &last)
			continue
		case <-soonC:
			soon, soonC = nil, nil
			n.announceNow(t, &last)
			continue
		case <-t.C:
		}
		now := n.clock()
		late := now.Sub(last) - n.prof.Heartbeat
		last = now
		if late < 0 {
			late = 0
		}
		n.mu.Lock()
		// The freshest statement of the last heartbeat was already this old
		// when we got to it: if even the best-case delivery is slow, this
		// node is behind on its own processing (a starved observer, whose
		// timers may still fire on time), not everyone else dead.
		// Bounded, so that a node cannot be talked into never declaring
		// anyone dead.
		if n.bestDelay > late && n.bestDelay < 4*n.prof.Health.DeadAfter {
			late = n.bestDelay
		}
		n.bestDelay = maxDelay
		// Rise at once, decay slowly.
		if late > lag {
			lag = late
		} else {
			lag = lag * 7 / 8
		}
		n.view.SetLocalLag(lag)
		left := n.left
		recent := now.Sub(n.lastPublished) < gap
		due := !now.Before(n.refreshAt)
		n.mu.Unlock()
		n.metrics.heartbeatLag.Set(lag.Seconds())
		// A statement goes out when its content changed or the last one's
		// TTL is running out; between refreshes the failure detector's
		// probes, not statements, show the mirror alive.
		if !left && !recent && (due || n.livenessChanged()) {
			n.publishLiveness(protocol.StateUp)
		}
	}
}

// announceNow publishes at once for announce and restarts the heartbeat
// ticker, so the next heartbeat comes a full period later.
func (n *Node) announceNow(t *time.Ticker, last *time.Time) {
	n.mu.Lock()
	left := n.left
	n.mu.Unlock()
	if left {
		return
	}
	n.publishLiveness(protocol.StateUp)
	t.Reset(n.prof.Heartbeat)
	*last = n.clock()
}

// announce asks for a fresh liveness statement soon (this mirror's bundles
// changed). It never blocks.
func (n *Node) announce() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// minPublishGap is the least time between two of this node's liveness
// statements: peers ignore one that arrives within half a heartbeat of the
// previous, so keep a quarter heartbeat of margin for delivery jitter.
func minPublishGap(heartbeat time.Duration) time.Duration { return heartbeat * 3 / 4 }

// livenessBody is this mirror's liveness statement without its sequence
// number, time and TTL, and the bundles it holds (sorted, unique, at most
// protocol.MaxHoldings). It signs nothing: the statement names the
// bundles by the digest of a holdings statement that publishLiveness signs
// before the statement itself.
func (n *Node) livenessBody(state string) (protocol.Liveness, []string) {
	var addrs []string
	for _, a := range n.host.Addrs() {
		addrs = append(addrs, a.String())
	}
	if len(addrs) > protocol.MaxAddrs {
		addrs = addrs[:protocol.MaxAddrs]
	}
	var bundles []string
	for _, b := range n.store.Bundles() {
		if b.State == "held" {
			bundles = append(bundles, b.Root.String())
		}
	}
	bundles = protocol.SortUnique(bundles)
	if len(bundles) > protocol.MaxHoldings {
		bundles = bundles[:protocol.MaxHoldings]
	}
	l := protocol.Liveness{
		Peer: n.id.String(), State: state, Addrs: addrs, HTTP: n.HTTPURL(), Version: Version, Region: n.cfg.Region,
	}
	if len(bundles) <= n.inlineHoldings {
		l.Bundles = bundles
		if l.Bundles == nil {
			l.Bundles = []string{}
		}
	} else {
		l.Holdings, l.HoldingsCount = protocol.HoldingsDigest(bundles), len(bundles)
	}
	return l, bundles
}

// bodyKey identifies a statement's content (sequence, time and TTL aside).
func bodyKey(l protocol.Liveness) string {
	l.Seq, l.Time, l.TTL = 0, 0, 0
	b, _ := protocol.Encode(&l)
	return string(b)
}

// livenessChanged reports whether this mirror's statement would say
// something else than the last one it published.
func (n *Node) livenessChanged() bool {
	l, _ := n.livenessBody(protocol.StateUp)
	key := bodyKey(l)
	n.mu.Lock()
	defer n.mu.Unlock()
	return key != n.lastBody
}

// publishLiveness signs and publishes this node's current liveness. Its
// TTL and the time of its refresh come from the refresh schedule
// (health.RefreshSchedule): about one refresh interval for the view's size
// apart (the whole network's refreshes per second stay about constant as
// it grows), with TTLs that outlast a missed refresh.
func (n *Node) publishLiveness(state string) {
	now := n.clock()
	l, bundles := n.livenessBody(state)
	// What this mirror holds goes in its signed holdings statement,
	// signed (when the bundles changed) before the liveness statement
	// that names it, so it is served before anyone asks for it.
	if _, err := n.ownHoldings(bundles, now); err != nil {
		n.log.Error("holdings", "err", err)
		l.Holdings, l.HoldingsCount = "", 0
		l.Bundles = bundles[:min(len(bundles), protocol.MaxBundles)]
		if l.Bundles == nil {
			l.Bundles = []string{}
		}
	}
	n.mu.Lock()
	if state == protocol.StateUp && n.left {
		// A heartbeat racing Leave must not follow the leaving statement
		// with a newer "up".
		n.mu.Unlock()
		return
	}
	n.seq++
	if ms := uint64(now.UnixMilli()); ms > n.seq {
		n.seq = ms
	}
	n.lastPublished = now
	ttl, refreshAt := n.refresh.Next(n.prof, now, n.view.Len(), n.rng.Float64())
	l.Seq, l.Time, l.TTL = n.seq, now.UnixMilli(), ttl.Milliseconds()
	n.lastBody = bodyKey(l)
	n.refreshAt = refreshAt
	n.published.Add(1)
	n.mu.Unlock()
	raw, err := attest.SignLiveness(n.key, l)
	if err != nil {
		n.log.Error("sign liveness", "err", err)
		return
	}
	t := n.topics[protocol.TopicLiveness]
	if t == nil {
		return
	}
	// Publish runs our own validator, which applies the statement to our
	// view like anyone else's.
	if err := t.Publish(n.ctx, raw); err != nil && n.ctx.Err() == nil {
		n.log.Warn("publish liveness", "err", err)
	}
}

// maxDelay marks "no statement from another mirror seen this heartbeat".
const maxDelay = time.Duration(1<<63 - 1)
