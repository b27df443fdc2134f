package node

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/mirrornet/mirrornet/internal/health"
)

// disagreements describes, for a heal that has not converged, which live
// viewers miss which live members, in what state, and whether they are
// connected: the scale benchmark logs it every 5 s until the views agree,
// which shows whether the tail is whole mirrors nobody revived or single
// viewers that missed one refutation.
func (s *mnSystem) disagreements() string {
	type miss struct {
		state     string
		connected bool
		lastSeen  time.Duration
	}
	bySubject := map[int][]miss{}
	viewers := 0
	states := map[string]int{}
	for i, nd := range s.nodes {
		if s.dead[i] {
			continue
		}
		now := nd.clock()
		bad := false
		for j, o := range s.nodes {
			if j == i || s.dead[j] {
				continue
			}
			nd.mu.Lock()
			m, ok := nd.view.Mirror(o.ID(), now)
			nd.mu.Unlock()
			st := "absent"
			var ls time.Duration
			if ok {
				if m.State == health.StateAlive || m.State == health.StateSuspect {
					continue
				}
				st = string(m.State)
				ls = now.Sub(m.LastSeen)
			}
			bad = true
			states[st]++
			conn := s.hosts[i].Network().Connectedness(o.ID()) == network.Connected
			bySubject[j] = append(bySubject[j], miss{st, conn, ls})
		}
		if bad {
			viewers++
		}
	}
	subs := make([]int, 0, len(bySubject))
	for j := range bySubject {
		subs = append(subs, j)
	}
	sort.Slice(subs, func(a, b int) bool { return len(bySubject[subs[a]]) > len(bySubject[subs[b]]) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d viewers miss %d subjects; states %v; worst:", viewers, len(subs), states)
	for _, j := range subs[:min(8, len(subs))] {
		conn := 0
		for _, m := range bySubject[j] {
			if m.connected {
				conn++
			}
		}
		fmt.Fprintf(&sb, " [#%d missed by %d (connected %d) e.g. %s last seen %s ago]", j, len(bySubject[j]), conn, bySubject[j][0].state, bySubject[j][0].lastSeen.Round(time.Second))
	}
	return sb.String()
}
