package node

// Retrieval probes: availability proven by retrieval, wired into the
// running mirror as a feature. The subsystem lives in
// internal/probe/service; this file only connects it to the node: the
// probe topic's validator and sync, a network notifee for connection
// addresses, the HTTP routes and the receipt middleware, gossipsub's P5,
// and the background loop.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/badge/badgehttp"
	"github.com/mirrornet/mirrornet/internal/domain"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/runner"
	"github.com/mirrornet/mirrornet/internal/probe/service"
	"github.com/mirrornet/mirrornet/protocol"
)

// HTTP routes and reports of the probe feature (see internal/probe/service).
const (
	EvidencePath     = service.EvidencePath
	BundlePathPrefix = service.BundlePathPrefix
)

type (
	EvidenceReport = service.EvidenceReport
	MirrorEvidence = service.MirrorEvidence
	BundleReport   = service.BundleReport
	BundleHolder   = service.BundleHolder
)

// ErrNotCID reports a path segment that should be a CID and is not.
var ErrNotCID = service.ErrNotCID

func init() { registerFeature(newProbeFeature) }

// probeFeature wires the probe service into the node.
type probeFeature struct {
	baseFeature
	n      *Node
	svc    *service.Service
	notify *network.NotifyBundle
}

var _ feature = (*probeFeature)(nil)

func newProbeFeature(n *Node) (feature, error) {
	cfg, err := service.ProfileConfig(n.prof.Name, n.cfg.ProbeK)
	if err != nil {
		return nil, fmt.Errorf("node: probes: %w", err)
	}
	if n.cfg.ASNDB != "" {
		if cfg.ASN, err = domain.LoadASNFile(n.cfg.ASNDB); err != nil {
			return nil, fmt.Errorf("node: --asn-db: %w", err)
		}
	}
	if n.cfg.Labels != "" {
		if cfg.Labels, err = domain.LoadLabelFile(n.cfg.Labels); err != nil {
			return nil, fmt.Errorf("node: --labels: %w", err)
		}
	}
	cfg.Auto, cfg.MaxStorage, cfg.RedundancyTarget = n.cfg.Auto, n.cfg.MaxStorage, n.cfg.RedundancyTarget
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
	var sopts []service.Option
	if n.httpTransport != nil {
		sopts = append(sopts, service.WithTransport(n.httpTransport))
	}
	svc, err := service.New(cfg, n.key, lockedView{n}, probeNet{n}, probeStore{n}, pub, n.clock, n.registry,
		n.log.With("feature", "probe"), sopts...)
	if err != nil {
		return nil, fmt.Errorf("node: probes: %w", err)
	}
	f := &probeFeature{n: n, svc: svc}
	// P5: read by gossipsub's score loop.
	n.appScore = svc.AppScore
	// Failure domains from what we observe of connections.
	f.notify = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		svc.ObserveConn(c.RemotePeer(), c.RemoteMultiaddr(), c.LocalMultiaddr())
	}}
	n.host.Network().Notify(f.notify)
	for _, c := range n.host.Network().Conns() {
		svc.ObserveConn(c.RemotePeer(), c.RemoteMultiaddr(), c.LocalMultiaddr())
	}
	return f, nil
}

func (f *probeFeature) name() string { return "probe" }

func (f *probeFeature) topics() []topicSpec {
	return []topicSpec{{topic: protocol.TopicProbe, validate: f.validate}}
}

func (f *probeFeature) routes(mux *http.ServeMux)            { f.svc.Routes(mux) }
func (f *probeFeature) wrapHTTP(h http.Handler) http.Handler { return f.svc.WrapHTTP(h) }
func (f *probeFeature) statements() [][]byte                 { return f.svc.Statements() }
func (f *probeFeature) run(ctx context.Context)              { f.svc.Run(ctx) }
func (f *probeFeature) appScore(p peer.ID) float64           { return f.svc.AppScore(p) }
func (f *probeFeature) evidence() EvidenceReport             { return f.svc.Evidence() }
func (f *probeFeature) bundle(c cid.Cid) BundleReport        { return f.svc.Bundle(c) }
func (f *probeFeature) status(p peer.ID, now time.Time) probe.State {
	return f.svc.Status(p, now).State
}

func (f *probeFeature) close() error {
	f.n.host.Network().StopNotify(f.notify)
	return f.svc.Close()
}

// validate is the TopicProbe validator.
func (f *probeFeature) validate(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	now := f.n.clock()
	st, err := attest.Verify(msg.Data, now)
	switch f.apply(st, err, now) {
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

func (f *probeFeature) apply(st *attest.Statement, verr error, now time.Time) attest.Verdict {
	if st != nil && st.Kind == attest.KindProbe || verr != nil {
		f.n.metrics.statement(st, verr)
	}
	v, _ := f.svc.Apply(st, verr, now)
	return v
}

// lockedView adapts the node's health view to the probe service's View.
// The view is safe for concurrent use and lists itself from a shared
// snapshot (health/snapshot.go), so none of these takes the node's lock:
// a probe round over ten thousand mirrors never holds up the gossip
// validator or an HTTP handler.
type lockedView struct{ n *Node }

var _ service.View = lockedView{}

func (v lockedView) Mirrors(now time.Time) []runner.Mirror {
	return runner.HealthView{V: v.n.view}.Mirrors(now)
}

// Alive is the view's alive set, the same slice while neither the view
// nor now changes (callers do not modify it).
func (v lockedView) Alive(now time.Time) []peer.ID { return v.n.view.Alive(now) }

func (v lockedView) Holds(target peer.ID, bundle string, now time.Time) bool {
	return runner.HealthView{V: v.n.view}.Holds(target, bundle, now)
}

func (v lockedView) HolderIDs(bundle string, now time.Time) []peer.ID {
	return runner.HealthView{V: v.n.view}.HolderIDs(bundle, now)
}

func (v lockedView) Known(p peer.ID, now time.Time) bool {
	return runner.HealthView{V: v.n.view}.Known(p, now)
}

func (v lockedView) All(now time.Time) []health.Mirror { return v.n.view.Mirrors(now) }

var _ badgehttp.Holders = lockedView{}

// probeNet adapts the libp2p host.
type probeNet struct{ n *Node }

func (p probeNet) Addrs() []ma.Multiaddr { return p.n.host.Addrs() }
func (p probeNet) Connected(id peer.ID) bool {
	return p.n.host.Network().Connectedness(id) == network.Connected
}

// probeStore adapts the store and Follow for --auto.
type probeStore struct{ n *Node }

func (s probeStore) Usage() int64           { return s.n.store.Usage() }
func (s probeStore) Follow(c cid.Cid) error { return s.n.Follow(c) }
func (s probeStore) Followed() []string {
	bs := s.n.store.Bundles()
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.Root.String()
	}
	return out
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
