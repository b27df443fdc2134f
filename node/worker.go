package node

import (
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/apphost"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/swbundle"
)

// workerSeeds names the mirrors the browser's verifying worker starts
// from for root: this mirror, then the alive mirrors whose latest
// statement lists root. The worker verifies their statements itself.
func (n *Node) workerSeeds(root cid.Cid) []string {
	var seeds []string
	if self := n.HTTPURL(); self != "" {
		seeds = append(seeds, self)
	}
	want := cid.NewCidV1(root.Type(), root.Hash()).String()
	now := n.clock()
	ms := n.view.Mirrors(now)
	for _, m := range ms {
		l := m.Liveness
		if m.State != health.StateAlive || l == nil || l.HTTP == "" || slices.Contains(seeds, l.HTTP) {
			continue
		}
		if _, ok := slices.BinarySearch(m.Bundles, want); ok {
			seeds = append(seeds, l.HTTP)
		}
	}
	return seeds
}

// workerOrigin tells the service worker's handler which hosts are app
// origins, as the host router classifies them: {cid}.ipfs subdomains of
// the mirror's hosts, and --app hosts with their current held release.
func (n *Node) workerOrigin(host string) (swbundle.Origin, bool) {
	if n.router == nil {
		return swbundle.Origin{}, false
	}
	kind, app := n.router.Classify(host)
	switch kind {
	case apphost.Subdomain:
		root, _, ok := swbundle.SubdomainRoot(host)
		return swbundle.Origin{Root: root}, ok
	case apphost.AppHost:
		root, ok := appReleases{n}.Current(app)
		if !ok {
			return swbundle.Origin{}, false
		}
		return swbundle.Origin{Root: root, App: app, Version: n.releaseVersion(app, root)}, true
	}
	return swbundle.Origin{}, false
}

// releaseRecords returns app's signed release records, oldest first, for
// the worker to verify (the slices are shared: do not modify).
func (n *Node) releaseRecords(app string) [][]byte {
	for _, f := range n.features {
		if rf, ok := f.(*releaseFeature); ok {
			rf.mu.Lock()
			defer rf.mu.Unlock()
			return rf.book.Raw(app)
		}
	}
	return nil
}

// releaseVersion is the version of app's latest release record when it
// names root, else 0 (an older release still being served).
func (n *Node) releaseVersion(app string, root cid.Cid) uint64 {
	for _, f := range n.features {
		if rf, ok := f.(*releaseFeature); ok {
			rf.mu.Lock()
			rec, ok := rf.book.Get(app, 0)
			rf.mu.Unlock()
			if ok && rec.CID == root.String() {
				return rec.Version
			}
		}
	}
	return 0
}
