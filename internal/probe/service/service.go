// Package service is a mirror's retrieval-probe subsystem, ready to wire:
// it runs the probe rounds (internal/probe/runner), turns verified probe
// results from gossip and sync into evidence (internal/probe) and failure
// domains (internal/domain), answers challenges with receipts, computes the
// gossipsub application score (P5) and follows under-mirrored bundles with
// --auto. It serves the evidence at GET /api/v1/evidence, bundles at GET
// /api/v1/bundle/{cid} and the badges under /badge/.
//
// The node (the composition root) builds a [Service] with [New], hands it
// its view, network, store and publisher through the small interfaces
// declared here, and wires its methods: [Service.Apply] into the gossip
// validator and sync, [Service.ObserveConn] into a network notifee,
// [Service.Routes] and [Service.WrapHTTP] into the HTTP side,
// [Service.AppScore] into gossipsub, [Service.Run] into a goroutine it owns.
//
// Every probe interval the service
//
//   - refreshes failure-domain placement (this node's own addresses; peers'
//     connection addresses arrive through ObserveConn; regions from
//     liveness name domains);
//   - runs one probe round: it challenges the targets it is assigned or
//     holds a committee seat for, over their trustless gateways, signs each
//     result and publishes it;
//   - recomputes P5 of every mirror from the evidence;
//   - every few rounds, with Auto, follows one under-mirrored bundle where
//     it adds a new failure domain.
//
// Intervals: the local profile probes every second (a testnet shows
// "verified" within a few seconds of a bundle being held); lan every 30 s;
// wan every minute (see probe.ProfileConfig). Assignment (K, observers,
// epoch length) must agree across a network, so it follows the profile and
// --probe-k only.
package service

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
	"github.com/libp2p/go-libp2p/core/crypto"
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

// HTTP routes of the service.
const (
	// EvidencePath serves an EvidenceReport.
	EvidencePath = "/api/v1/evidence"
	// BundlePathPrefix + CID serves a BundleReport.
	BundlePathPrefix = "/api/v1/bundle/"
)

// ErrNotCID reports a path segment that should be a CID and is not.
var ErrNotCID = errors.New("service: not a CID")

// ErrConfig reports an invalid Config or missing dependency.
var ErrConfig = errors.New("service: invalid config")

// Tuning of the service's own loop (the probe timings are the profile's).
const (
	// localProbeInterval replaces the local profile's 2 s round: testnets
	// should show "verified" within seconds.
	localProbeInterval = time.Second
	// autoEvery is how many rounds pass between two --auto checks: a
	// bundle just followed needs a few rounds to be held and verified
	// before the figure it changes is known.
	autoEvery = 3
	// autoWait is how many --auto checks a bundle waits for the verdict
	// on a holder that claims this mirror's own failure domain but is not
	// verified yet: if it holds the bundle, following would only
	// duplicate it. A claimant that never gets a verdict (a liar nobody
	// can probe) delays the decision by that many checks, no more.
	autoWait = 5
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

// View is what the service needs of the health view: the runner's,
// evidence's and badges' views, whether a peer is known, and every mirror.
// Implementations must be safe for concurrent use and never block on the
// network.
type View interface {
	runner.ViewReader
	probe.View
	badgehttp.Holders
	Known(p peer.ID, now time.Time) bool
	// All returns every mirror of the view, in any state.
	All(now time.Time) []health.Mirror
}

// Network is what the service needs of the libp2p host.
type Network interface {
	// Addrs are this node's listen and observed addresses.
	Addrs() []ma.Multiaddr
	// Connected reports whether a connection to p is open.
	Connected(p peer.ID) bool
}

// Store is what --auto needs of the block store.
type Store interface {
	// Followed returns the root CIDs (string form) this mirror follows.
	Followed() []string
	// Usage is the bytes stored.
	Usage() int64
	// Follow starts following a bundle.
	Follow(c cid.Cid) error
}

// Publisher publishes a signed probe result on the probe topic.
type Publisher = runner.Publisher

// Config is the service's configuration.
type Config struct {
	// Runner is the probe config (see ProfileRunnerConfig).
	Runner runner.Config
	// Profile names the network profile (for reports).
	Profile string
	// Domain tunes failure-domain placement.
	Domain domain.Config
	// ASN and Labels feed placement; both may be nil.
	ASN    *domain.ASNTable
	Labels map[peer.ID]string
	// Auto follows under-mirrored bundles (--auto), within MaxStorage
	// bytes (0: unlimited), up to RedundancyTarget domains.
	Auto             bool
	MaxStorage       int64
	RedundancyTarget int
}

// ProfileConfig returns the service config of a network profile with
// --probe-k (k > 0) applied: the local profile probes every second, and
// places mirrors from reports of one domain (one host is one domain).
func ProfileConfig(profile string, k int) (Config, error) {
	pc, err := probe.ProfileConfig(profile)
	if err != nil {
		return Config{}, fmt.Errorf("service: %w", err)
	}
	if profile == probe.ProfileLocal {
		pc.Interval, pc.Timeout = localProbeInterval, min(pc.Timeout, localProbeInterval)
	}
	if k > 0 {
		pc.K = k
		pc.Observers = max(pc.Observers, 2*pc.K)
	}
	rc := runner.DefaultConfig()
	rc.Config = pc
	if err := rc.Validate(); err != nil {
		return Config{}, fmt.Errorf("service: %w", err)
	}
	dc := domain.DefaultConfig()
	if profile == probe.ProfileLocal {
		dc.Quorum = 1
	}
	return Config{Runner: rc, Profile: profile, Domain: dc, RedundancyTarget: 3}, nil
}

// Service runs retrieval probes and serves their evidence. Its methods are
// safe for concurrent use.
type Service struct {
	cfg     runner.Config
	opts    Config
	self    peer.ID
	key     crypto.PrivKey
	clock   func() time.Time
	log     *slog.Logger
	view    View
	net     Network
	store   Store
	ev      *probe.Evidence
	placer  *domain.Placer
	runner  *runner.Runner
	src     badgehttp.Source
	client  *http.Client
	closing sync.Once

	results  *prometheus.CounterVec
	reports  *prometheus.CounterVec
	verdicts *prometheus.GaugeVec

	mu       sync.Mutex // guards the fields below
	held     map[probeKey][]heldProbe
	scores   map[peer.ID]float64
	observed map[peer.ID]bool
	autoDone map[string]bool
	// autoWaited counts the checks a bundle waited for the verdict on a
	// holder in this mirror's domain (see autoWait).
	autoWaited map[string]int
	rounds     uint64
	autoRuns   uint64
}

// Option sets an optional dependency of New.
type Option func(*options)

type options struct {
	transport http.RoundTripper
}

// WithTransport sets the transport probes fetch blocks with (default: a
// clone of http.DefaultTransport). Close calls its CloseIdleConnections,
// if it has one. Tests pass an in-memory network.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.transport = rt }
}

// New builds the service. key is this mirror's identity (it signs results
// and receipts); reg receives the service's metrics; log may be nil.
func New(cfg Config, key crypto.PrivKey, view View, nw Network, store Store, pub Publisher, clock func() time.Time,
	reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Service, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if key == nil || view == nil || nw == nil || store == nil || pub == nil || clock == nil || reg == nil {
		return nil, fmt.Errorf("%w: key, view, network, store, publisher, clock and registerer are required", ErrConfig)
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrConfig, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	placer, err := domain.New(cfg.Domain, cfg.ASN, cfg.Labels)
	if err != nil {
		return nil, fmt.Errorf("service: failure domains: %w", err)
	}
	f := &Service{
		cfg: cfg.Runner, opts: cfg, self: self, key: key, clock: clock, log: log, view: view, net: nw, store: store,
		placer: placer, held: map[probeKey][]heldProbe{}, scores: map[peer.ID]float64{}, observed: map[peer.ID]bool{},
		autoDone:   map[string]bool{},
		autoWaited: map[string]int{},
	}
	if f.ev, err = probe.NewEvidence(cfg.Runner.Config, view, placer); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	// The probe client's own transport: Close drops its idle connections.
	if o.transport == nil {
		o.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	f.client = &http.Client{Transport: o.transport}
	f.runner, err = runner.NewRunner(cfg.Runner, self, key, view, &runner.HTTPFetcher{Client: f.client}, pub, clock,
		runner.WithLogger(log), runner.WithDomains(placer))
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	f.src = badgehttp.NewSource(f.ev, view, placer, view.Known, clock)

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
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{f.results, f.reports, f.verdicts} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("service: metrics: %w", err)
		}
		done = append(done, c)
	}
	return f, nil
}

// Routes registers the evidence, bundle and badge handlers.
func (f *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+EvidencePath, f.serveEvidence)
	mux.HandleFunc("GET "+BundlePathPrefix+"{cid}", f.serveBundle)
	mux.Handle("GET /badge/", badgehttp.Handler(f.src))
}

// WrapHTTP makes the gateway answer challenges with this mirror's
// receipts.
func (f *Service) WrapHTTP(h http.Handler) http.Handler {
	rh, err := runner.ReceiptHandler(h, f.key, f.clock)
	if err != nil {
		f.log.Error("probe receipts disabled", "err", err)
		return h
	}
	return rh
}

// Close stops the runner and drops idle probe connections. Run must have
// returned (or never run). It is idempotent.
func (f *Service) Close() error {
	var err error
	f.closing.Do(func() {
		err = f.runner.Close()
		f.client.CloseIdleConnections()
	})
	return err
}

// ConnIP extracts the IP of a connection or observed address; relayed
// addresses say nothing about where the peer is.
func ConnIP(a ma.Multiaddr) (netip.Addr, bool) {
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

// ObserveConn places what a new connection shows: the remote address
// places the peer, the local address places this node. Call it on every
// connection (a network notifee).
func (f *Service) ObserveConn(p peer.ID, remote, local ma.Multiaddr) {
	if ip, ok := ConnIP(remote); ok {
		f.placer.Observe(p, ip)
		f.mu.Lock()
		f.observed[p] = true
		f.mu.Unlock()
	}
	if ip, ok := ConnIP(local); ok && !ip.IsUnspecified() {
		f.placer.Observe(f.self, ip)
	}
}

// Domain is p's failure domain as this node sees it.
func (f *Service) Domain(p peer.ID) string { return f.placer.Domain(p) }

// Config is the probe config in force.
func (f *Service) Config() runner.Config { return f.cfg }

// Status is the evidence verdict on p at now.
func (f *Service) Status(p peer.ID, now time.Time) probe.TargetStatus { return f.ev.Status(p, now) }

// AutoRuns is how many --auto checks ran.
func (f *Service) AutoRuns() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.autoRuns
}

// Apply counts a probe statement from gossip or sync: st and verr are
// attest.Verify's answer. It returns the gossip verdict and a reason (for
// metrics), counts it, and logs a refusal at debug level.
func (f *Service) Apply(st *attest.Statement, verr error, now time.Time) (attest.Verdict, string) {
	return f.apply(st, verr, now)
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
func (f *Service) apply(st *attest.Statement, verr error, now time.Time) (attest.Verdict, string) {
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

func (f *Service) classify(st *attest.Statement, verr error, now time.Time) (attest.Verdict, string) {
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

// Statements returns the latest few accepted results of every observer
// about every target, within the evidence window, for sync. The slices are
// shared.
func (f *Service) Statements() [][]byte {
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

// AppScore is p's gossipsub application score (P5), refreshed once per
// round: never blocks on the evidence or the view.
func (f *Service) AppScore(p peer.ID) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scores[p]
}

// Run probes once per interval until ctx is done. It blocks.
func (f *Service) Run(ctx context.Context) {
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
func (f *Service) round(ctx context.Context, i uint64) {
	f.refreshPlacement(f.clock(), i%forgetEvery == forgetEvery-1)
	if _, err := f.runner.ProbeOnce(ctx, f.clock()); err != nil && ctx.Err() == nil {
		f.log.Warn("probe round", "err", err)
	}
	if ctx.Err() != nil {
		return
	}
	now := f.clock()
	f.refreshScores(now)
	f.pruneHeld(now)
	if f.opts.Auto && i%autoEvery == autoEvery-1 {
		f.autoFollow(now)
	}
	f.mu.Lock()
	f.rounds++
	f.mu.Unlock()
}

// refreshPlacement copies liveness regions into the placer and, when
// forget is set, drops what it knows of peers that are neither mirrors in
// the view nor connected (DHT peers come and go).
func (f *Service) refreshPlacement(now time.Time, forget bool) {
	// A public address of ours (listen or observed through identify) is
	// where others see us: it outweighs the local addresses of our
	// connections, which behind NAT are private.
	for _, a := range f.net.Addrs() {
		if ip, ok := ConnIP(a); ok && ip.IsGlobalUnicast() && !ip.IsPrivate() {
			f.placer.Observe(f.self, ip)
		}
	}
	ms := f.view.All(now)
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
	f.mu.Lock()
	var gone []peer.ID
	for p := range f.observed {
		if !inView[p] && !f.net.Connected(p) {
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
func (f *Service) refreshScores(now time.Time) {
	self := f.placer.Domain(f.self)
	scores := map[peer.ID]float64{}
	counts := map[probe.State]int{}
	for _, m := range f.view.All(now) {
		st := f.ev.Status(m.Peer, now).State
		counts[st]++
		if m.Peer == f.self {
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
func (f *Service) pruneHeld(now time.Time) {
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
func (f *Service) autoFollow(now time.Time) {
	defer func() {
		f.mu.Lock()
		f.autoRuns++
		f.mu.Unlock()
	}()
	if limit := f.opts.MaxStorage; limit > 0 && float64(f.store.Usage()) >= spareFraction*float64(limit) {
		f.log.Debug("auto: no spare space", "used", f.store.Usage(), "limit", limit)
		return
	}
	followed := map[string]bool{}
	for _, b := range f.store.Followed() {
		followed[b] = true
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
	self := f.placer.Domain(f.self)
	for _, b := range bundles {
		f.mu.Lock()
		done := f.autoDone[b]
		f.mu.Unlock()
		if followed[b] || done {
			continue
		}
		var verified []peer.ID
		domains := map[string]bool{}
		pendingHere := false // a holder in this domain awaits its verdict
		for _, h := range holders[b] {
			if h == f.self {
				continue
			}
			switch f.ev.Status(h, now).State {
			case probe.StateVerified:
				verified = append(verified, h)
				domains[f.placer.Domain(h)] = true
			case probe.StateUnverified:
				pendingHere = pendingHere || f.placer.Domain(h) == self
			}
		}
		if len(verified) == 0 {
			continue // nothing proven to fetch from
		}
		red := f.placer.EffectiveRedundancy(verified)
		if red >= f.opts.RedundancyTarget || domains[self] {
			continue
		}
		if pendingHere {
			f.mu.Lock()
			waited := f.autoWaited[b]
			if waited < autoWait {
				f.autoWaited[b] = waited + 1
			}
			f.mu.Unlock()
			if waited < autoWait {
				f.log.Debug("auto: waiting for the verdict on a holder in this domain", "cid", b, "check", waited+1, "of", autoWait)
				continue
			}
		}
		c, err := cid.Decode(b)
		if err != nil {
			continue
		}
		f.mu.Lock()
		f.autoDone[b] = true
		f.mu.Unlock()
		f.log.Info("auto: following an under-mirrored bundle", "cid", b, "effective_redundancy", red,
			"target", f.opts.RedundancyTarget, "verified_holders", len(verified), "new_domain", self)
		if err := f.store.Follow(c); err != nil {
			f.log.Warn("auto: follow", "cid", b, "err", err)
		}
		return // one per check: the next check sees its effect
	}
}

// Evidence reports the probe verdict on every mirror in the view.
func (f *Service) Evidence() EvidenceReport {
	now := f.clock()
	rep := EvidenceReport{
		Self: f.self.String(), Profile: f.opts.Profile, K: f.cfg.K,
		IntervalMS: f.cfg.Interval.Milliseconds(), Mirrors: []MirrorEvidence{},
	}
	for _, m := range f.view.All(now) {
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

// Bundle reports c's holders and effective redundancy.
func (f *Service) Bundle(c cid.Cid) BundleReport {
	key := c.String()
	return f.Bundles([]string{key})[key]
}

// Bundles reports the holders and effective redundancy of each bundle in
// keys (root CIDs as strings) in one pass over the view: a page about
// many bundles costs the view's size once, not once per bundle.
func (f *Service) Bundles(keys []string) map[string]BundleReport {
	now := f.clock()
	out := make(map[string]BundleReport, len(keys))
	verified := map[string][]peer.ID{}
	for _, k := range keys {
		out[k] = BundleReport{CID: k, Holders: []BundleHolder{}}
	}
	for _, m := range f.view.All(now) {
		if m.Liveness == nil {
			continue
		}
		var state string
		for _, b := range m.Bundles {
			rep, ok := out[b]
			if !ok {
				continue
			}
			if state == "" {
				state = string(m.State)
				if m.State == health.StateAlive {
					state = string(f.ev.Status(m.Peer, now).State)
				}
			}
			if state == string(probe.StateVerified) {
				verified[b] = append(verified[b], m.Peer)
			}
			rep.Holders = append(rep.Holders, BundleHolder{PeerID: m.Peer.String(), State: state, Domain: f.placer.Domain(m.Peer)})
			out[b] = rep
		}
	}
	for k, rep := range out {
		rep.EffectiveRedundancy = f.placer.EffectiveRedundancy(verified[k])
		out[k] = rep
	}
	return out
}

func (f *Service) serveEvidence(w http.ResponseWriter, r *http.Request) {
	writeProbeJSON(w, http.StatusOK, f.Evidence())
}

func (f *Service) serveBundle(w http.ResponseWriter, r *http.Request) {
	s := r.PathValue("cid")
	c, err := cid.Decode(s)
	if err != nil {
		writeProbeJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("%v: %q (want a bundle root CID such as bafy...): %v", ErrNotCID, s, err),
		})
		return
	}
	writeProbeJSON(w, http.StatusOK, f.Bundle(c))
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

// Recent returns the latest probe results held, verified again at now
// (age alone may fail now: they were verified on arrival), newest first,
// at most max.
func (f *Service) Recent(max int) []*attest.Statement {
	f.mu.Lock()
	held := make([]heldProbe, 0, len(f.held))
	for _, hs := range f.held {
		held = append(held, hs...)
	}
	f.mu.Unlock()
	slices.SortFunc(held, func(a, b heldProbe) int { return b.at.Compare(a.at) })
	if len(held) > max {
		held = held[:max]
	}
	now := f.clock()
	out := make([]*attest.Statement, 0, len(held))
	for _, h := range held {
		if st, _ := attest.Verify(h.raw, now); st != nil && st.Probe != nil {
			out = append(out, st)
		}
	}
	return out
}

// EffectiveRedundancy is the number of distinct failure domains among
// holders.
func (f *Service) EffectiveRedundancy(holders []peer.ID) int {
	return f.placer.EffectiveRedundancy(holders)
}
