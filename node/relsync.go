package node

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/relsync"
	"github.com/mirrornet/mirrornet/internal/relsync/relsyncp2p"
	"github.com/mirrornet/mirrornet/protocol"
)

// This file wires release anti-entropy (internal/relsync and its protocol,
// internal/relsync/relsyncp2p) to the releases feature: what the book
// keeps, how a pulled record is applied, whom to pull from, and metrics.
// Gossip carries a release record or build attestation once; a mirror that
// missed it learns it at its next pull from a connected mirror.

// startRelSync builds the release sync service of f; run starts it.
func (f *releaseFeature) startRelSync() error {
	n := f.n
	pulls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_release_sync_pulls_total",
		Help: "Release anti-entropy pulls by outcome: same (digests equal), learned, nothing_new, failed.",
	}, []string{"outcome"})
	learnt := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mirrornet_release_sync_records_total",
		Help: "Release records and build attestations learnt through release anti-entropy (gossip had missed them).",
	})
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mirrornet_release_sync_bad_input_total",
		Help: "Release sync input refused, by reason: flood (a peer over the rate limit), busy, malformed, stranger (not a mirror held alive or suspect).",
	}, []string{"reason"})
	svc, err := relsyncp2p.New(relsyncp2p.Config{
		Host: n.host, Store: relSyncStore{f},
		// The shortest refresh interval of liveness statements: on lan a
		// missed record arrives within about 30 s, and in-sync mirrors
		// exchange about a hundred bytes per interval.
		Interval: n.prof.RefreshMin,
		Peers:    n.connectedMirrors,
		// A mirror pulls once per interval from one of its connected
		// mirrors (each pull 0.75 to 1.25 intervals after the last): two
		// per interval, burst three, is above what an honest one sends us.
		Rate: 2 / n.prof.RefreshMin.Seconds(), Burst: 3,
		Serve: n.knownMirror,
		Log:   n.log,
		OnPull: func(outcome string, kept int) {
			pulls.WithLabelValues(outcome).Inc()
			learnt.Add(float64(kept))
		},
		OnBadInput: func(reason string) { bad.WithLabelValues(reason).Inc() },
		Blocked:    n.blackhole,
		Now:        n.clock,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	syncBytes := func(dir string, g func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "mirrornet_release_sync_" + dir + "_bytes_total", Help: "Release sync protocol payload bytes " + dir + " (frames; stream set-up not included).",
		}, func() float64 { return float64(g()) })
	}
	n.registry.MustRegister(pulls, learnt, bad, syncBytes("sent", svc.BytesSent), syncBytes("received", svc.BytesReceived))
	for _, o := range []string{relsyncp2p.OutcomeSame, relsyncp2p.OutcomeLearned, relsyncp2p.OutcomeNothingNew, relsyncp2p.OutcomeFailed} {
		pulls.WithLabelValues(o)
	}
	for _, r := range []string{relsyncp2p.ReasonFlood, relsyncp2p.ReasonBusy, relsyncp2p.ReasonMalformed, relsyncp2p.ReasonStranger} {
		bad.WithLabelValues(r)
	}
	f.sync = svc
	return nil
}

// connectedMirrors are the alive mirrors this node holds a connection to.
func (n *Node) connectedMirrors() []peer.ID {
	var out []peer.ID
	for _, p := range n.mirrorsIn(health.StateAlive) {
		if n.host.Network().Connectedness(p) == network.Connected {
			out = append(out, p)
		}
	}
	return out
}

// knownMirror reports whether the view holds p as an alive or suspect
// mirror.
func (n *Node) knownMirror(p peer.ID) bool {
	m, ok := n.view.Mirror(p, n.clock())
	return ok && (m.State == health.StateAlive || m.State == health.StateSuspect)
}

// relSyncStore is relsyncp2p.Store over the releases feature.
type relSyncStore struct{ f *releaseFeature }

func (s relSyncStore) Generation() uint64 { return s.f.gen.Load() }

func (s relSyncStore) Snapshot() []relsync.AppRecords {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	byApp := map[string]*relsync.AppRecords{}
	var out []relsync.AppRecords
	for _, app := range f.book.Apps() {
		a := relsync.AppRecords{App: app, Gen: f.appGen[app]}
		_, a.Follows = f.apps[app]
		versions, raws := f.book.RawVersions(app)
		for i, raw := range raws {
			a.Releases = append(a.Releases, relsync.Record{Version: versions[i], Raw: raw})
		}
		out = append(out, a)
	}
	// Followed apps not seen yet: asked for first once a peer lists them.
	for app := range f.apps {
		if len(f.book.Raw(app)) == 0 {
			out = append(out, relsync.AppRecords{App: app, Follows: true})
		}
	}
	for i := range out {
		byApp[out[i].App] = &out[i]
	}
	for k, raw := range f.buildRaw {
		if a := byApp[k.app]; a != nil {
			a.Builds = append(a.Builds, relsync.Record{Version: k.version, Raw: raw})
		}
	}
	return out
}

func (s relSyncStore) Apply(raw []byte) bool {
	f := s.f
	if protocol.IsSignedRelease(raw) {
		_, err := f.addRelease(raw, false)
		kept := err == nil || errors.Is(err, attest.ErrExpired)
		v := releaseVerdict(err)
		if !kept {
			f.n.log.Debug("pulled release record not applied", "verdict", v, "err", err)
		}
		return kept
	}
	return f.addBuild(raw, false) == nil
}
