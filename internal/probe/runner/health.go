package runner

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/probe"
)

// HealthView adapts the health view to every view interface of the probe
// components: runner.ViewReader, probe.View and badgehttp's Holders and
// Known. Only alive mirrors count.
type HealthView struct{ V *health.View }

var (
	_ ViewReader = HealthView{}
	_ probe.View = HealthView{}
)

// Mirrors returns the alive mirrors with their gateway and bundles.
func (h HealthView) Mirrors(now time.Time) []Mirror {
	var out []Mirror
	for _, m := range h.V.Mirrors(now) {
		if m.State == health.StateAlive && m.Liveness != nil {
			out = append(out, Mirror{ID: m.Peer, HTTP: m.Liveness.HTTP, Bundles: m.Bundles})
		}
	}
	return out
}

// Alive returns the alive mirrors' IDs.
func (h HealthView) Alive(now time.Time) []peer.ID {
	var out []peer.ID
	for _, m := range h.V.Mirrors(now) {
		if m.State == health.StateAlive {
			out = append(out, m.Peer)
		}
	}
	return out
}

// Holds reports whether target is alive and lists bundle.
func (h HealthView) Holds(target peer.ID, bundle string, now time.Time) bool {
	m, ok := h.V.Mirror(target, now)
	if !ok || m.State != health.StateAlive || m.Liveness == nil {
		return false
	}
	_, found := slices.BinarySearch(m.Bundles, bundle)
	return found
}

// HolderIDs returns the alive mirrors listing bundle.
func (h HealthView) HolderIDs(bundle string, now time.Time) []peer.ID {
	var out []peer.ID
	for _, m := range h.V.Holders(bundle, now) {
		out = append(out, m.Peer)
	}
	return out
}

// Known reports whether the view holds a statement of p.
func (h HealthView) Known(p peer.ID, now time.Time) bool {
	_, ok := h.V.Mirror(p, now)
	return ok
}
