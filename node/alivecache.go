package node

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/probe/runner"
)

// aliveCache is the alive set of the view for one (version, now): a status
// page asks for it once per mirror, and listing ten thousand mirrors ten
// thousand times is what made it stop answering under a flood.
type aliveCache struct {
	version uint64
	now     time.Time
	ids     []peer.ID
	ok      bool
}

// aliveLocked returns the view's alive mirrors at now, the same slice
// while neither the view nor now changes. n.mu must be held; callers do
// not modify or keep the slice.
func (n *Node) aliveLocked(now time.Time) []peer.ID {
	ver := n.view.Version()
	c := &n.alive
	if c.ok && c.version == ver && c.now.Equal(now) {
		return c.ids
	}
	ids := runner.HealthView{V: n.view}.Alive(now)
	*c = aliveCache{version: ver, now: now, ids: ids, ok: true}
	return ids
}
