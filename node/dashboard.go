package node

import (
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/mirrornet/mirrornet/internal/backup"
	"github.com/mirrornet/mirrornet/internal/dashboard"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/probe/service"
)

// Dashboard limits: the page is for people, and a network of strangers can
// make any list long.
const (
	dashboardMaxApps    = 200
	dashboardMaxBundles = 300
	dashboardMaxProbes  = 50
)

func init() {
	registerFeature(func(n *Node) (feature, error) { return &dashboardFeature{n: n}, nil })
}

// dashboardFeature serves the JSON the dashboard page (internal/dashboard)
// renders; the page itself is wired on "/" in startHTTP.
type dashboardFeature struct {
	baseFeature
	n *Node
}

func (f *dashboardFeature) name() string { return "dashboard" }

func (f *dashboardFeature) routes(mux *http.ServeMux) {
	mux.Handle("GET "+dashboard.APIPath, dashboard.API(f.n.dashboardSnapshot))
	mux.Handle(backup.PathPattern, backup.Handler(backupSource{f.n}))
}

// backupSource answers the backup page's questions from the node.
type backupSource struct{ n *Node }

func (b backupSource) LookupApp(app string) (backup.AppInfo, bool) {
	rf := b.n.releaseFeatureOf()
	if rf == nil {
		return backup.AppInfo{}, false
	}
	as, err := rf.status(app, 0)
	if err != nil {
		return backup.AppInfo{}, false
	}
	return backup.AppInfo{App: as.App, Name: as.Name, Version: as.Version, CID: as.CID, Holders: len(as.Holders)}, true
}

// Bootstrap prefers public addresses (a stranger cannot dial a loopback or
// private one), at most two.
func (b backupSource) Bootstrap() []string {
	var public, other []string
	for _, a := range b.n.host.Addrs() {
		s := a.String() + "/p2p/" + b.n.id.String()
		if manet.IsPublicAddr(a) {
			public = append(public, s)
		} else {
			other = append(other, s)
		}
	}
	out := public
	if len(out) == 0 {
		out = other
	}
	return out[:min(len(out), 2)]
}

func (b backupSource) URL() string { return b.n.HTTPURL() }

// dashboardSnapshot gathers what the dashboard shows from the view, the
// probe evidence and the release book.
func (n *Node) dashboardSnapshot() dashboard.Snapshot {
	// The mirrors' lists are the view's own here (read only, not copied).
	var st Status
	n.statusWith(func(s SelfStatus) { st.Self = s }, func(m MirrorStatus) bool { st.Mirrors = append(st.Mirrors, m); return true })
	s := dashboard.Snapshot{
		Self: dashboard.Self{
			PeerID: st.Self.PeerID, Version: st.Self.Version, Profile: st.Self.Profile,
			HTTP: st.Self.HTTP, Peers: st.Self.Peers,
		},
		Generated: n.clock().UTC().Format(time.RFC3339),
	}
	held := map[string]bool{}
	for _, c := range st.Self.Bundles {
		held[c] = true
	}
	bundleApps := map[string][]string{}
	var order []string
	seen := map[string]bool{}
	addBundle := func(c string) {
		if !seen[c] && len(order) < dashboardMaxBundles {
			seen[c] = true
			order = append(order, c)
		}
	}
	for _, m := range st.Mirrors {
		s.Mirrors = append(s.Mirrors, dashboard.Mirror{
			PeerID: m.PeerID, State: m.State, Evidence: m.Evidence, Domain: m.Domain, Region: m.Region,
			HTTP: m.HTTP, Version: m.Version, Bundles: len(m.Bundles), LastSeen: m.LastSeen,
		})
	}
	pf := n.probeFeatureOf()
	if rf := n.releaseFeatureOf(); rf != nil {
		rf.mu.Lock()
		apps := rf.book.Apps()
		followed := map[string]bool{}
		for a := range rf.apps {
			followed[a] = true
		}
		rf.mu.Unlock()
		// Followed apps first, then the others, up to the cap.
		sort.SliceStable(apps, func(i, j int) bool { return followed[apps[i]] && !followed[apps[j]] })
		for _, a := range apps {
			if len(s.Apps) >= dashboardMaxApps {
				break
			}
			// Holders are counted below, in the one pass over the view.
			as, err := rf.statusWithout(a, 0)
			if err != nil {
				continue
			}
			s.Apps = append(s.Apps, dashboard.App{
				App: as.App, Name: as.Name, Version: as.Version, CID: as.CID, Status: as.Status,
				Integrity: as.Integrity, Followed: as.Followed,
			})
			bundleApps[as.CID] = append(bundleApps[as.CID], as.Name)
			addBundle(as.CID)
		}
	}
	for _, c := range st.Self.Bundles {
		addBundle(c)
	}
	for _, m := range st.Mirrors {
		for _, c := range m.Bundles {
			addBundle(c)
		}
	}
	// One pass over the view for every bundle and app shown (not one per
	// bundle: with ten thousand mirrors and three hundred bundles that
	// was three million mirror checks a page).
	keys := slices.Clone(order)
	appKey := make([]string, len(s.Apps)) // each app's CID as mirrors announce it
	aliveHolders := map[string]int{}
	for i, a := range s.Apps {
		if c, err := cid.Decode(a.CID); err == nil {
			appKey[i] = c.String()
			keys = append(keys, appKey[i])
			aliveHolders[appKey[i]] = 0
		}
	}
	var reports map[string]service.BundleReport
	if pf != nil {
		reports = pf.svc.Bundles(keys)
	}
	for _, m := range st.Mirrors {
		if m.State != string(health.StateAlive) {
			continue
		}
		for _, b := range m.Bundles {
			if n, ok := aliveHolders[b]; ok {
				aliveHolders[b] = n + 1
			}
		}
	}
	for i, k := range appKey {
		if k != "" {
			s.Apps[i].Holders = aliveHolders[k]
			s.Apps[i].EffectiveRedundancy = reports[k].EffectiveRedundancy
		}
	}
	for _, key := range order {
		b := dashboard.Bundle{CID: key, HeldHere: held[key], Apps: bundleApps[key]}
		if rep, ok := reports[key]; ok {
			b.EffectiveRedundancy, b.Holders = rep.EffectiveRedundancy, len(rep.Holders)
		}
		s.Bundles = append(s.Bundles, b)
	}
	if pf != nil {
		s.Probes = pf.recent(dashboardMaxProbes)
	}
	return s
}

// recent returns the latest probe results held, newest first, at most max.
func (f *probeFeature) recent(max int) []dashboard.Probe {
	var out []dashboard.Probe
	for _, st := range f.svc.Recent(max) {
		p := st.Probe
		out = append(out, dashboard.Probe{
			Observer: p.Observer, Target: p.Target, Outcome: p.Outcome, Bundle: p.Bundle,
			LatencyMS: p.LatencyMS, Time: time.UnixMilli(p.Time).UTC().Format(time.RFC3339),
		})
	}
	return out
}

// releaseFeatureOf returns the node's release feature, if any.
func (n *Node) releaseFeatureOf() *releaseFeature {
	for _, f := range n.features {
		if rf, ok := f.(*releaseFeature); ok {
			return rf
		}
	}
	return nil
}
