package node

// Retrieval probes (issue 6): availability proven by retrieval, wired into
// the running mirror as a feature.
//
// Every probe interval the mirror
//
//   - refreshes the failure-domain placer (liveness regions; connection
//     addresses arrive through a network notifee as connections open);
//   - runs one probe round (internal/probe/runner): it challenges the
//     targets the public assignment gives it, over their trustless gateways
//     (GET {target HTTP}/ipfs/{cid}?format=raw), signs each result and
//     publishes it on protocol.TopicProbe;
//   - recomputes the gossipsub application score (P5) of every mirror from
//     the evidence;
//   - every few rounds, with --auto, follows one under-mirrored bundle where
//     it adds a new failure domain.
//
// Probe results from gossip and sync go through one validator into
// probe.Evidence, which answers verified / degraded / failing / unverified
// per mirror. Users see it at GET /api/v1/evidence, GET /api/v1/bundle/{cid}
// (holders and effective redundancy) and the badges under /badge/.
//
// Intervals: the local profile probes every second (a testnet shows
// "verified" within a few seconds of a bundle being held); lan every 30 s;
// wan every minute (see probe.ProfileConfig). Assignment (K, observers,
// epoch length) must agree across a network, so it follows the profile
// and --probe-k only.
//
// RTT co-location (domain.Placer.ObserveRTT) is fed from the latencies in
// passing probe results: each is signed by its observer, so a mirror hears
// many vantage points' estimates of every target.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/badge/badgehttp"
	"github.com/mirrornet/mirrornet/internal/domain"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/runner"
	"github.com/mirrornet/mirrornet/protocol"
)

// HTTP routes of the probe feature.
const (
	// EvidencePath serves an EvidenceReport.
	EvidencePath = "/api/v1/evidence"
	// BundlePathPrefix + CID serves a BundleReport.
	BundlePathPrefix = "/api/v1/bundle/"
)

// ErrNotCID reports a path segment that should be a CID and is not.
var ErrNotCID = errors.New("node: not a CID")

func init() { registerFeature(newProbeFeature) }

// Tuning of the feature's own loop (the probe timings are the profile's).
const (
	// localProbeInterval replaces the local profile's 2 s round: testnets
	// should show "verified" within seconds.
	localProbeInterval = time.Second
	// autoEvery is how many rounds pass between two --auto checks: a
	// bundle just followed needs a few rounds to be held and verified
	// before the figure it changes is known.
	autoEvery = 3
	// spareFraction: --auto follows nothing once the store is this full
	// (of MaxStorage).
	spareFraction = 0.9
	// forgetEvery is how many rounds pass between dropping placement data
	// of peers that are neither mirrors in the view nor connected.
	forgetEvery = 30
)

// P5 (gossipsub application score) per evidence verdict, and a small
// credit for mirrors in another failure domain than ours (a mesh that
// spans domains survives the loss of one). Bounded in [scoreFailing,
// scoreVerified+scoreOtherDomain]: a failing mirror still relays gossip
// (the gossip threshold is -500), it just ranks last in the mesh.
const (
	scoreVerified    = 1.0
	scoreOtherDomain = 0.5
	scoreDegraded    = -10.0
	scoreFailing     = -50.0
)

// EvidenceReport is served at EvidencePath: the probe verdict on every
// mirror in this node's view.
type EvidenceReport struct {
	Self    string `json:"self"`
	Profile string `json:"profile"`
	// K is how many observers in distinct failure domains must pass a
	// mirror for it to be verified.
	K int `json:"k"`
	// IntervalMS is this node's probe round, in milliseconds.
	IntervalMS int64            `json:"interval_ms"`
	Mirrors    []MirrorEvidence `json:"mirrors"`
	// Colocated are groups of mirrors flagged as likely co-located.
	Colocated [][]string `json:"colocated,omitempty"`
}

// MirrorEvidence is one mirror's probe verdict.
type MirrorEvidence struct {
	PeerID string `json:"peer_id"`
	// State is the evidence verdict: verified, degraded, failing or
	// unverified.
	State string `json:"state"`
	// Health is the liveness state: alive, suspect, dead or left.
	Health string `json:"health"`
	// Domain is the mirror's failure domain (asn:, net:, split by an
	// operator's label:, or unknown when nobody observed it).
	Domain string `json:"domain"`
	// DomainName is the mirror's self-declared region: a name for its
	// domain, never a domain of its own.
	DomainName string `json:"domain_name,omitempty"`
	// Seats is the size of its committee (seated failure domains).
	Seats int `json:"seats"`
	// PassRate24h is the weighted pass fraction of the last 24 hours, over
	// Samples24h weighted results.
	PassRate24h float64 `json:"pass_rate_24h"`
	Samples24h  float64 `json:"samples_24h"`
	// PassDomains and FailDomains count distinct observer domains with a
	// recent pass or failure; FailRate is the recent failure fraction.
	PassDomains int     `json:"pass_domains"`
	FailDomains int     `json:"fail_domains"`
	FailRate    float64 `json:"fail_rate"`
	// LastPass is the RFC 3339 time of the latest pass, if any.
	LastPass string `json:"last_pass,omitempty"`
}

// BundleReport is served at BundlePathPrefix+CID. Its field names are a
// contract with `mirrornet status --bundle` and scripts.
type BundleReport struct {
	CID string `json:"cid"`
	// EffectiveRedundancy is the number of distinct failure domains among
	// the verified holders.
	EffectiveRedundancy int            `json:"effective_redundancy"`
	Holders             []BundleHolder `json:"holders"`
}

// BundleHolder is a mirror whose latest liveness statement lists the
// bundle.
type BundleHolder struct {
	PeerID string `json:"peer_id"`
	// State is the evidence verdict when the mirror is alive (verified,
	// degraded, failing, unverified), else its liveness state (suspect,
	// dead, left).
	State  string `json:"state"`
	Domain string `json:"domain"`
}

// probeKey names the latest result of one observer about one target.
type probeKey struct{ observer, target peer.ID }

// heldPerPair is how many results of one observer about one target are
// kept for sync.
const heldPerPair = 4

type heldProbe struct {
	seq uint64
	at  time.Time
	raw []byte
}

// probeFeature runs retrieval probes and serves their evidence.
type probeFeature struct {
	baseFeature
	n      *Node
	log    *slog.Logger
	cfg    runner.Config
	view   lockedView
	ev     *probe.Evidence
	placer *domain.Placer
	runner *runner.Runner
	src    badgehttp.Source
	notify *network.NotifyBundle
	client *http.Client

	results  *prometheus.CounterVec
	reports  *prometheus.CounterVec
	verdicts *prometheus.GaugeVec

	mu       sync.Mutex // guards the fields below
	held     map[probeKey][]heldProbe
	scores   map[peer.ID]float64
	observed map[peer.ID]bool
	autoDone map[string]bool
	rounds   uint64
	autoRuns uint64
}

var _ feature = (*probeFeature)(nil)

// probeConfig is the runner config of the node's profile with --probe-k
// applied.
func probeConfig(cfg Config, prof string) (runner.Config, error) {
	pc, err := probe.ProfileConfig(prof)
	if err != nil {
		return runner.Config{}, fmt.Errorf("node: probes: %w", err)
	}
	if prof == probe.ProfileLocal {
		pc.Interval, pc.Timeout = localProbeInterval, min(pc.Timeout, localProbeInterval)
	}
	if cfg.ProbeK > 0 {
		pc.K = cfg.ProbeK
		pc.Observers = max(pc.Observers, 2*pc.K)
	}
	rc := runner.DefaultConfig()
	rc.Config = pc
	if err := rc.Validate(); err != nil {
		return runner.Config{}, fmt.Errorf("node: probes: %w", err)
	}
	return rc, nil
}

func newProbeFeature(n *Node) (feature, error) {
	rc, err := probeConfig(n.cfg, n.prof.Name)
	if err != nil {
		return nil, err
	}
	var asn *domain.ASNTable
	if n.cfg.ASNDB != "" {
		if asn, err = domain.LoadASNFile(n.cfg.ASNDB); err != nil {
			return nil, fmt.Errorf("node: --asn-db: %w", err)
		}
	}
	var labels map[peer.ID]string
	if n.cfg.Labels != "" {
		if labels, err = domain.LoadLabelFile(n.cfg.Labels); err != nil {
			return nil, fmt.Errorf("node: --labels: %w", err)
		}
	}
	dcfg := domain.DefaultConfig()
	if n.prof.Name == probe.ProfileLocal {
		// One host: every observer shares one domain, so reports from a
		// single domain must place the others.
		dcfg.Quorum = 1
	}
	placer, err := domain.New(dcfg, asn, labels)
	if err != nil {
		return nil, fmt.Errorf("node: failure domains: %w", err)
	}
	f := &probeFeature{
		n: n, log: n.log.With("feature", "probe"), cfg: rc, view: lockedView{n}, placer: placer,
		held: map[probeKey][]heldProbe{}, scores: map[peer.ID]float64{}, observed: map[peer.ID]bool{},
		autoDone: map[string]bool{},
	}
	if f.ev, err = probe.NewEvidence(rc.Config, f.view, placer); err != nil {
		return nil, fmt.Errorf("node: probes: %w", err)
	}
	pub := runner.PublisherFunc(func(ctx context.Context, raw []byte) error {
		err := n.publish(protocol.TopicProbe, raw)
		// Our own validator may ignore our result when our view moved
		// between the round's start and its end: not an error.
		var ve pubsub.ValidationError
		if errors.As(err, &ve) && ve.Reason == pubsub.RejectValidationIgnored {
			return nil
		}
		return err
	})
	// The probe client's own transport: close drops its idle connections.
	f.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	f.runner, err = runner.NewRunner(rc, n.id, n.key, f.view, &runner.HTTPFetcher{Client: f.client}, pub, n.clock,
		runner.WithLogger(n.log), runner.WithSeater(seater{f}))
	if err != nil {
		return nil, fmt.Errorf("node: probes: %w", err)
	}
	f.src = badgehttp.NewSource(f.ev, f.view, placer, f.view.Known, n.clock)

	f.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_probe_results_total",
		Help: "Probe results received (gossip and sync), by verdict (accept, ignore, reject) and reason.",
	}, []string{"verdict", "reason"})
	f.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_domain_reports_total",
		Help: "Observation reports (the address a probe observer reached a mirror at) received, by result: counted, or unobserved (the reporter is in no observed domain, so its report places nobody).",
	}, []string{"result"})
	f.verdicts = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mirrornet_probe_verdicts",
		Help: "Mirrors in this node's view by probe verdict (verified, degraded, failing, unverified).",
	}, []string{"state"})
	if err := n.registry.Register(f.results); err != nil {
		return nil, fmt.Errorf("node: probes: metrics: %w", err)
	}
	if err := n.registry.Register(f.verdicts); err != nil {
		n.registry.Unregister(f.results)
		return nil, fmt.Errorf("node: probes: metrics: %w", err)
	}
	if err := n.registry.Register(f.reports); err != nil {
		n.registry.Unregister(f.results)
		n.registry.Unregister(f.verdicts)
		return nil, fmt.Errorf("node: probes: metrics: %w", err)
	}

	// P5: read by gossipsub's score loop, so it reads a map refreshed
	// once per round and never the evidence or the view.
	n.appScore = f.appScore

	// Failure domains from what we observe of connections: the remote
	// address places the peer, the local address places us.
	f.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) { f.observeConn(c) }}
	n.host.Network().Notify(f.notify)
	for _, c := range n.host.Network().Conns() {
		f.observeConn(c)
	}
	return f, nil
}

func (f *probeFeature) name() string { return "probe" }

func (f *probeFeature) topics() []topicSpec {
	return []topicSpec{{topic: protocol.TopicProbe, validate: f.validate}}
}

func (f *probeFeature) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+EvidencePath, f.serveEvidence)
	mux.HandleFunc("GET "+BundlePathPrefix+"{cid}", f.serveBundle)
	mux.Handle("GET /badge/", badgehttp.Handler(f.src))
}

// wrapHTTP makes the gateway answer challenges with this mirror's
// receipts.
func (f *probeFeature) wrapHTTP(h http.Handler) http.Handler {
	rh, err := runner.ReceiptHandler(h, f.n.key, f.n.clock)
	if err != nil {
		f.log.Error("probe receipts disabled", "err", err)
		return h
	}
	return rh
}

// seater tells the runner where this mirror holds a committee seat, in
// its own view of failure domains.
type seater struct{ f *probeFeature }

func (s seater) Seated(epoch uint64, target peer.ID, alive []peer.ID) bool {
	for _, st := range probe.Committee(epoch, target, alive, s.f.placer.Domain, s.f.cfg.Observers) {
		if st.Holder == s.f.n.id {
			return true
		}
	}
	return false
}

func (f *probeFeature) close() error {
	f.n.host.Network().StopNotify(f.notify)
	err := f.runner.Close()
	f.client.CloseIdleConnections()
	return err
}

// connIP extracts the IP of a connection address; relayed addresses say
// nothing about where the peer is.
func connIP(a ma.Multiaddr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return netip.Addr{}, false
	}
	ip, err := manet.ToIP(a)
	if err != nil {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

func (f *probeFeature) observeConn(c network.Conn) {
	p := c.RemotePeer()
	if ip, ok := connIP(c.RemoteMultiaddr()); ok {
		f.placer.Observe(p, ip)
		f.mu.Lock()
		f.observed[p] = true
		f.mu.Unlock()
	}
	if ip, ok := connIP(c.LocalMultiaddr()); ok && !ip.IsUnspecified() {
		f.placer.Observe(f.n.id, ip)
	}
}

// lockedView adapts the node's health view to the probe components'
// interfaces (runner.ViewReader, probe.View, badgehttp.Holders and Known),
// holding the node's lock as every use of n.view must. Never call the
// evidence with n.mu held: the evidence calls back into this view.
type lockedView struct{ n *Node }

var (
	_ runner.ViewReader = lockedView{}
	_ probe.View        = lockedView{}
	_ badgehttp.Holders = lockedView{}
)

func (v lockedView) Mirrors(now time.Time) []runner.Mirror {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return runner.HealthView{V: v.n.view}.Mirrors(now)
}

func (v lockedView) Alive(now time.Time) []peer.ID {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return runner.HealthView{V: v.n.view}.Alive(now)
}

func (v lockedView) Holds(target peer.ID, bundle string, now time.Time) bool {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return runner.HealthView{V: v.n.view}.Holds(target, bundle, now)
}

func (v lockedView) HolderIDs(bundle string, now time.Time) []peer.ID {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return runner.HealthView{V: v.n.view}.HolderIDs(bundle, now)
}

func (v lockedView) Known(p peer.ID, now time.Time) bool {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return runner.HealthView{V: v.n.view}.Known(p, now)
}

// all returns every mirror of the view (any state).
func (v lockedView) all(now time.Time) []health.Mirror {
	v.n.mu.Lock()
	defer v.n.mu.Unlock()
	return v.n.view.Mirrors(now)
}

// validate is the TopicProbe validator.
func (f *probeFeature) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	now := f.n.clock()
	st, err := attest.Verify(msg.Data, now)
	v, _ := f.apply(st, err, now)
	switch v {
	case attest.Accept:
		return pubsub.ValidationAccept
	case attest.Ignore:
		return pubsub.ValidationIgnore
	default:
		return pubsub.ValidationReject
	}
}

// applySynced takes probe results from a sync response. Old but genuine
// results are welcome (the evidence window decides what counts); every
// statement of the probe kind is ours, whatever becomes of it.
func (f *probeFeature) applySynced(raw []byte) bool {
	now := f.n.clock()
	st, err := attest.Verify(raw, now)
	if st == nil || st.Kind != attest.KindProbe {
		return false
	}
	if errors.Is(err, attest.ErrTooOld) {
		err = nil
	}
	f.apply(st, err, now)
	return true
}

// apply maps a verified (or not) probe statement to a verdict, in one
// place, and counts accepted ones as evidence:
//
//   - signature, format and subject errors: Reject (the sender pays, P4);
//     timing errors: Ignore (attest.Classify);
//   - a statement of another kind on the probe topic: Reject;
//   - a target that is not a peer ID: Reject (the signer wrote it);
//   - not assigned, target not holding the bundle, epoch, outside the
//     window, duplicate: Ignore. They depend on this node's view and
//     config, which may lag or differ from the sender's.
func (f *probeFeature) apply(st *attest.Statement, verr error, now time.Time) (attest.Verdict, string) {
	if st != nil && st.Kind == attest.KindProbe || verr != nil {
		f.n.metrics.statement(st, verr)
	}
	v, reason := f.classify(st, verr, now)
	f.results.WithLabelValues(v.String(), reason).Inc()
	if v != attest.Accept {
		signer := ""
		if st != nil {
			signer = st.Signer.String()
		}
		f.log.Debug("probe result refused", "verdict", v.String(), "reason", reason, "signer", signer, "err", verr)
	}
	return v, reason
}

func (f *probeFeature) classify(st *attest.Statement, verr error, now time.Time) (attest.Verdict, string) {
	if verr != nil {
		return attest.Classify(verr), attest.Reason(verr)
	}
	if st.Kind != attest.KindProbe {
		return attest.Reject, "kind"
	}
	err := f.ev.Add(st, now)
	switch {
	case err == nil:
	case errors.Is(err, probe.ErrBadPeer):
		return attest.Reject, "bad_peer"
	case errors.Is(err, probe.ErrNotProbe):
		return attest.Reject, "kind"
	case errors.Is(err, probe.ErrNotAssigned):
		return attest.Ignore, "not_seated"
	case errors.Is(err, probe.ErrNotHeld):
		return attest.Ignore, "not_held"
	case errors.Is(err, probe.ErrEpoch):
		return attest.Ignore, "epoch"
	case errors.Is(err, probe.ErrStale):
		return attest.Ignore, "stale"
	case errors.Is(err, probe.ErrDuplicate):
		return attest.Ignore, "duplicate"
	default:
		return attest.Ignore, "other"
	}
	target, _ := peer.Decode(st.Probe.Target) // Add checked it
	if a, err := netip.ParseAddr(st.Probe.Addr); err == nil {
		// A signed observation of where the target is: it places the
		// target once observers in enough observed domains agree.
		if f.placer.Observed(st.Signer) {
			f.reports.WithLabelValues("counted").Inc()
		} else {
			f.reports.WithLabelValues("unobserved").Inc()
			f.log.Debug("observation report refused", "reason", "unobserved", "reporter", st.Signer, "target", target)
		}
		f.placer.Report(st.Signer, target, a)
	}
	if st.Probe.Outcome == protocol.OutcomePass {
		// A passing probe's latency, signed by its observer, is that
		// vantage point's round-trip estimate to the target: mirrors with
		// near-identical estimates from many vantage points are flagged as
		// likely co-located.
		f.placer.ObserveRTT(st.Signer, target, time.Duration(st.Probe.LatencyMS)*time.Millisecond)
	}
	k := probeKey{st.Signer, target}
	f.mu.Lock()
	// The latest few results of each observer about each target: one
	// may be a canary, which says nothing about the target.
	hs := append(f.held[k], heldProbe{seq: st.Seq, at: st.Time, raw: st.Raw})
	slices.SortFunc(hs, func(a, b heldProbe) int { return cmp.Compare(b.seq, a.seq) })
	f.held[k] = hs[:min(len(hs), heldPerPair)]
	f.mu.Unlock()
	return attest.Accept, "ok"
}

// statements returns the latest accepted result of every observer about
// every target, within the evidence window, for sync.
func (f *probeFeature) statements() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, 0, heldPerPair*len(f.held))
	for _, hs := range f.held {
		for _, h := range hs {
			out = append(out, h.raw)
		}
	}
	return out
}

func (f *probeFeature) appScore(p peer.ID) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scores[p]
}

// run probes once per interval until ctx is done.
func (f *probeFeature) run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for i := uint64(0); ; i++ {
		f.round(ctx, i)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round is one probe round and the bookkeeping that follows it.
func (f *probeFeature) round(ctx context.Context, i uint64) {
	f.refreshPlacement(f.n.clock(), i%forgetEvery == forgetEvery-1)
	if _, err := f.runner.ProbeOnce(ctx, f.n.clock()); err != nil && ctx.Err() == nil {
		f.log.Warn("probe round", "err", err)
	}
	if ctx.Err() != nil {
		return
	}
	now := f.n.clock()
	f.refreshScores(now)
	f.pruneHeld(now)
	if f.n.cfg.Auto && i%autoEvery == autoEvery-1 {
		f.autoFollow(now)
	}
	f.mu.Lock()
	f.rounds++
	f.mu.Unlock()
}

// refreshPlacement copies liveness regions into the placer and, when
// forget is set, drops what it knows of peers that are neither mirrors in
// the view nor connected (DHT peers come and go).
func (f *probeFeature) refreshPlacement(now time.Time, forget bool) {
	// A public address of ours (listen or observed through identify) is
	// where others see us: it outweighs the local addresses of our
	// connections, which behind NAT are private.
	for _, a := range f.n.host.Addrs() {
		if ip, ok := connIP(a); ok && ip.IsGlobalUnicast() && !ip.IsPrivate() {
			f.placer.Observe(f.n.id, ip)
		}
	}
	ms := f.view.all(now)
	inView := make(map[peer.ID]bool, len(ms))
	for _, m := range ms {
		inView[m.Peer] = true
		if m.Liveness != nil {
			f.placer.SetRegion(m.Peer, m.Liveness.Region)
		}
	}
	if !forget {
		return
	}
	nw := f.n.host.Network()
	f.mu.Lock()
	var gone []peer.ID
	for p := range f.observed {
		if !inView[p] && nw.Connectedness(p) != network.Connected {
			gone = append(gone, p)
			delete(f.observed, p)
		}
	}
	f.mu.Unlock()
	for _, p := range gone {
		f.placer.Forget(p)
	}
}

// refreshScores recomputes P5 for every mirror in the view and the
// verdict gauges.
func (f *probeFeature) refreshScores(now time.Time) {
	self := f.placer.Domain(f.n.id)
	scores := map[peer.ID]float64{}
	counts := map[probe.State]int{}
	for _, m := range f.view.all(now) {
		st := f.ev.Status(m.Peer, now).State
		counts[st]++
		if m.Peer == f.n.id {
			continue
		}
		s := 0.0
		switch st {
		case probe.StateVerified:
			s = scoreVerified
			if f.placer.Domain(m.Peer) != self {
				s += scoreOtherDomain
			}
		case probe.StateDegraded:
			s = scoreDegraded
		case probe.StateFailing:
			s = scoreFailing
		}
		if s != 0 {
			scores[m.Peer] = s
		}
	}
	f.mu.Lock()
	f.scores = scores
	f.mu.Unlock()
	for _, s := range []probe.State{probe.StateVerified, probe.StateDegraded, probe.StateFailing, probe.StateUnverified} {
		f.verdicts.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// pruneHeld forgets held results older than the evidence window.
func (f *probeFeature) pruneHeld(now time.Time) {
	cut := now.Add(-f.cfg.Window)
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, hs := range f.held {
		hs = slices.DeleteFunc(hs, func(h heldProbe) bool { return h.at.Before(cut) })
		if len(hs) == 0 {
			delete(f.held, k)
		} else {
			f.held[k] = hs
		}
	}

}

// autoFollow follows, with spare space, one bundle whose effective
// redundancy is under the target and where this mirror would add a failure
// domain no verified holder is in. A bundle is followed at most once per
// run: unfollowing it by hand is respected.
func (f *probeFeature) autoFollow(now time.Time) {
	n := f.n
	defer func() {
		f.mu.Lock()
		f.autoRuns++
		f.mu.Unlock()
	}()
	if limit := n.cfg.MaxStorage; limit > 0 && float64(n.store.Usage()) >= spareFraction*float64(limit) {
		f.log.Debug("auto: no spare space", "used", n.store.Usage(), "limit", limit)
		return
	}
	followed := map[string]bool{}
	for _, b := range n.store.Bundles() {
		followed[b.Root.String()] = true
	}
	holders := map[string][]peer.ID{}
	for _, m := range f.view.Mirrors(now) {
		for _, b := range m.Bundles {
			holders[b] = append(holders[b], m.ID)
		}
	}
	bundles := make([]string, 0, len(holders))
	for b := range holders {
		bundles = append(bundles, b)
	}
	sort.Strings(bundles)
	self := f.placer.Domain(n.id)
	for _, b := range bundles {
		f.mu.Lock()
		done := f.autoDone[b]
		f.mu.Unlock()
		if followed[b] || done {
			continue
		}
		var verified []peer.ID
		domains := map[string]bool{}
		for _, h := range holders[b] {
			if h != n.id && f.ev.Status(h, now).State == probe.StateVerified {
				verified = append(verified, h)
				domains[f.placer.Domain(h)] = true
			}
		}
		if len(verified) == 0 {
			continue // nothing proven to fetch from
		}
		red := f.placer.EffectiveRedundancy(verified)
		if red >= n.cfg.RedundancyTarget || domains[self] {
			continue
		}
		c, err := cid.Decode(b)
		if err != nil {
			continue
		}
		f.mu.Lock()
		f.autoDone[b] = true
		f.mu.Unlock()
		f.log.Info("auto: following an under-mirrored bundle", "cid", b, "effective_redundancy", red,
			"target", n.cfg.RedundancyTarget, "verified_holders", len(verified), "new_domain", self)
		if err := n.Follow(c); err != nil {
			f.log.Warn("auto: follow", "cid", b, "err", err)
		}
		return // one per check: the next check sees its effect
	}
}

// evidence reports the probe verdict on every mirror in the view.
func (f *probeFeature) evidence() EvidenceReport {
	now := f.n.clock()
	rep := EvidenceReport{
		Self: f.n.id.String(), Profile: f.n.prof.Name, K: f.cfg.K,
		IntervalMS: f.cfg.Interval.Milliseconds(), Mirrors: []MirrorEvidence{},
	}
	for _, m := range f.view.all(now) {
		st := f.ev.Status(m.Peer, now)
		me := MirrorEvidence{
			PeerID: m.Peer.String(), State: string(st.State), Health: string(m.State),
			Domain: f.placer.Domain(m.Peer), DomainName: f.placer.Name(m.Peer), Seats: st.Seats,
			PassRate24h: st.PassRate24h, Samples24h: st.Samples24h,
			PassDomains: st.PassDomains, FailDomains: st.FailDomains, FailRate: st.FailRate,
		}
		if !st.LastPass.IsZero() {
			me.LastPass = st.LastPass.UTC().Format(time.RFC3339Nano)
		}
		rep.Mirrors = append(rep.Mirrors, me)
	}
	for _, g := range f.placer.Colocated() {
		ids := make([]string, len(g))
		for i, p := range g {
			ids[i] = p.String()
		}
		rep.Colocated = append(rep.Colocated, ids)
	}
	return rep
}

// bundle reports c's holders and effective redundancy.
func (f *probeFeature) bundle(c cid.Cid) BundleReport {
	now := f.n.clock()
	key := c.String()
	rep := BundleReport{CID: key, Holders: []BundleHolder{}}
	var verified []peer.ID
	for _, m := range f.view.all(now) {
		if m.Liveness == nil {
			continue
		}
		if _, ok := slices.BinarySearch(m.Liveness.Bundles, key); !ok {
			continue
		}
		state := string(m.State)
		if m.State == health.StateAlive {
			st := f.ev.Status(m.Peer, now).State
			state = string(st)
			if st == probe.StateVerified {
				verified = append(verified, m.Peer)
			}
		}
		rep.Holders = append(rep.Holders, BundleHolder{PeerID: m.Peer.String(), State: state, Domain: f.placer.Domain(m.Peer)})
	}
	rep.EffectiveRedundancy = f.placer.EffectiveRedundancy(verified)
	return rep
}

func (f *probeFeature) serveEvidence(w http.ResponseWriter, r *http.Request) {
	writeProbeJSON(w, http.StatusOK, f.evidence())
}

func (f *probeFeature) serveBundle(w http.ResponseWriter, r *http.Request) {
	s := r.PathValue("cid")
	c, err := cid.Decode(s)
	if err != nil {
		writeProbeJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("%v: %q (want a bundle root CID such as bafy...): %v", ErrNotCID, s, err),
		})
		return
	}
	writeProbeJSON(w, http.StatusOK, f.bundle(c))
}

// writeJSON writes v as indented JSON that is never cached.
func writeProbeJSON(w http.ResponseWriter, code int, v any) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(raw, '\n'))
}

// probeFeatureOf returns the node's probe feature (tests and status).
func (n *Node) probeFeatureOf() *probeFeature {
	for _, f := range n.features {
		if pf, ok := f.(*probeFeature); ok {
			return pf
		}
	}
	return nil
}
