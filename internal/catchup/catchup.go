// Package catchup closes the window in which a mirror that has just joined
// the gossip network misses statements.
//
// A joiner syncs its view from a peer as soon as it connects, but it is
// outside every gossipsub mesh until the next heartbeat (its own or its
// peers') grafts it. A statement published elsewhere in that window is
// forwarded along meshes the joiner is not in yet, and IHAVE does not make
// up for it: IHAVE goes to peers outside the mesh in the one heartbeat
// after the message arrived (mirrornet gossips history for one heartbeat),
// and by then the joiner is in the mesh. A statement with changed content
// (new holdings, leaving, a suspicion) would stay unseen until its
// signer's next refresh, up to an hour at scale.
//
// A Trigger watches one topic's mesh and asks for one more sync, with the
// peer just grafted, when the mesh goes from empty to not empty: whatever
// that peer learned before the graft comes with the sync, whatever it
// learns after comes along the mesh. At most one such sync per MinGap, so a
// mesh that flaps costs a sync now and then, not a flood.
//
// Use it as a gossipsub raw tracer (pubsub.WithRawTracer): Tracer adapts a
// Trigger, whose core is pure (time is passed in) and tested alone.
package catchup

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Trigger tracks one topic's mesh and says when a catch-up sync is due.
// It is safe for concurrent use.
type Trigger struct {
	// MinGap is the least time between two catch-ups. Zero: only the
	// first time the mesh forms.
	MinGap time.Duration

	mu    sync.Mutex
	mesh  map[peer.ID]struct{}
	fired bool
	last  time.Time
}

// Graft records p grafted into the mesh at now and reports whether to
// sync with p now: the mesh was empty and the last catch-up (if any) was
// at least MinGap ago.
func (t *Trigger) Graft(p peer.ID, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mesh == nil {
		t.mesh = map[peer.ID]struct{}{}
	}
	if _, in := t.mesh[p]; in {
		return false
	}
	t.mesh[p] = struct{}{}
	if len(t.mesh) > 1 {
		return false
	}
	if t.fired && (t.MinGap <= 0 || now.Sub(t.last) < t.MinGap) {
		return false
	}
	t.fired, t.last = true, now
	return true
}

// Leave records p out of the mesh (pruned, or disconnected).
func (t *Trigger) Leave(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mesh, p)
}

// Reset empties the mesh (the topic was left).
func (t *Trigger) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.mesh)
}

// MeshSize is how many peers the mesh holds.
func (t *Trigger) MeshSize() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mesh)
}
