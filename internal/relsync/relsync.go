// Package relsync is the pure core of release anti-entropy: how a node
// summarises the release records and build attestations it keeps
// ([Summarise]), which apps it asks a peer for when their summaries differ
// ([Plan]), which records it answers a request with ([Answer]), and the
// memory of pulls that taught nothing ([Futile]).
//
// Gossip carries a release record once; a mirror that missed it (its
// subscription not yet known to the publisher, a message dropped by a
// starved validator, a partition) would otherwise learn it only from a sync
// on a new connection, which may never come. So every mirror periodically
// pulls from one random connected mirror (package relsync/relsyncp2p, wire
// format in protocol's section "Release sync"): a digest of one hash when
// nothing differs, and otherwise only the apps whose records differ.
//
// Nothing here starts a goroutine, touches the network or reads the clock.
package relsync

import (
	"cmp"
	"slices"

	"github.com/mirrornet/mirrornet/protocol"
)

// Record is one signed release record or build attestation envelope as
// kept, with the app version it is about.
type Record struct {
	Version uint64
	Raw     []byte
}

// AppRecords is everything a node keeps of one app.
type AppRecords struct {
	App string
	// Releases are the app's release records in version order (Book.Raw).
	Releases []Record
	// Builds are the app's build attestations, in any order.
	Builds []Record
	// Follows: the node follows the app (its operator's choice); such apps
	// are asked for first.
	Follows bool
	// Gen, if not 0, changes whenever the app's records change: Summarise
	// reuses the previous state's hash of an app whose Gen is the same.
	Gen uint64
}

// Latest is the highest release version kept (0: none).
func (a *AppRecords) Latest() uint64 {
	if len(a.Releases) == 0 {
		return 0
	}
	return a.Releases[len(a.Releases)-1].Version
}

// State is a summary of every app a node keeps, with the records to answer
// requests from. It is immutable once made; the raw slices are shared with
// the store and must not be modified.
type State struct {
	// Summary lists each app in app ID order; Root is its protocol.ReleaseRoot.
	Summary []protocol.ReleaseAppSummary
	Root    string
	apps    map[string]*AppRecords
	hashes  map[string]genHash
}

type genHash struct {
	gen  uint64
	hash string
}

// Summarise makes the State of apps (any order; apps without a release
// record are left out of the summary). prev, if not nil, is the state
// made before: the hash of every app whose Gen it shares is reused, so a
// store that changes one app costs one app's hashing, not the whole book's.
func Summarise(apps []AppRecords, prev *State) *State {
	s := &State{apps: make(map[string]*AppRecords, len(apps)), hashes: make(map[string]genHash, len(apps))}
	for i := range apps {
		a := &apps[i]
		s.apps[a.App] = a
		if len(a.Releases) == 0 {
			continue
		}
		if prev != nil && a.Gen != 0 {
			if h, ok := prev.hashes[a.App]; ok && h.gen == a.Gen {
				s.hashes[a.App] = h
				s.Summary = append(s.Summary, protocol.ReleaseAppSummary{App: a.App, Version: a.Latest(), Hash: h.hash})
				continue
			}
		}
		raws := make([][]byte, 0, len(a.Releases)+len(a.Builds))
		for _, r := range a.Releases {
			raws = append(raws, r.Raw)
		}
		for _, r := range a.Builds {
			raws = append(raws, r.Raw)
		}
		h := protocol.ReleaseAppHash(raws)
		s.hashes[a.App] = genHash{gen: a.Gen, hash: h}
		s.Summary = append(s.Summary, protocol.ReleaseAppSummary{App: a.App, Version: a.Latest(), Hash: h})
	}
	slices.SortFunc(s.Summary, func(x, y protocol.ReleaseAppSummary) int { return cmp.Compare(x.App, y.App) })
	s.Root = protocol.ReleaseRoot(s.Summary)
	return s
}

// Entry returns the summary of one app.
func (s *State) Entry(app string) (protocol.ReleaseAppSummary, bool) {
	i, ok := slices.BinarySearchFunc(s.Summary, app, func(e protocol.ReleaseAppSummary, app string) int { return cmp.Compare(e.App, app) })
	if !ok {
		return protocol.ReleaseAppSummary{}, false
	}
	return s.Summary[i], true
}

// Listed is the summary a responder sends: at most
// protocol.MaxReleaseSummaryApps entries, the first in app ID order.
func (s *State) Listed() protocol.ReleaseSummary {
	return protocol.ReleaseSummary{Apps: s.Summary[:min(len(s.Summary), protocol.MaxReleaseSummaryApps)]}
}

// Plan picks the apps to ask a peer for, given our state and its summary:
// those it holds a newer version of (After: our latest, 0 if we have none),
// and those at the same version whose records differ (build attestations we
// lack). Apps this node follows come first; a pair futile reports (pulled
// before without learning anything) is skipped. At most max apps.
func Plan(local *State, remote []protocol.ReleaseAppSummary, futile func(app, hash string) bool, max int) []protocol.ReleaseWantApp {
	type cand struct {
		want    protocol.ReleaseWantApp
		follows bool
	}
	var cands []cand
	for _, r := range remote {
		l, have := local.Entry(r.App)
		if have && (r.Version < l.Version || r.Version == l.Version && r.Hash == l.Hash) {
			continue
		}
		if futile != nil && futile(r.App, r.Hash) {
			continue
		}
		c := cand{want: protocol.ReleaseWantApp{App: r.App, After: l.Version}}
		if a := local.apps[r.App]; a != nil {
			c.follows = a.Follows
		}
		cands = append(cands, c)
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		switch {
		case x.follows == y.follows:
			return 0
		case x.follows:
			return -1
		}
		return 1
	})
	out := make([]protocol.ReleaseWantApp, 0, min(len(cands), max))
	for _, c := range cands[:min(len(cands), max)] {
		out = append(out, c.want)
	}
	return out
}

// Answer returns the records a responder sends for wants: per wanted app
// it keeps, the release records above After in version order, then its
// build attestations newest version first; at most maxRecords records and
// maxBytes bytes in all (the record that would pass a bound is left out,
// and so is everything after it).
func (s *State) Answer(wants []protocol.ReleaseWantApp, maxRecords, maxBytes int) [][]byte {
	var out [][]byte
	size := 0
	add := func(raw []byte) bool {
		if len(out) >= maxRecords || size+len(raw) > maxBytes {
			return false
		}
		out = append(out, raw)
		size += len(raw)
		return true
	}
	for _, w := range wants {
		a := s.apps[w.App]
		if a == nil {
			continue
		}
		for _, r := range a.Releases {
			if r.Version > w.After && !add(r.Raw) {
				return out
			}
		}
		builds := slices.Clone(a.Builds)
		slices.SortStableFunc(builds, func(x, y Record) int { return cmp.Compare(y.Version, x.Version) })
		for _, r := range builds {
			if !add(r.Raw) {
				return out
			}
		}
	}
	return out
}

// Futile remembers, per app, the hash of a peer's records that a pull
// taught this node nothing from (records its book refuses: a full book of
// apps it does not follow, versions below its latest), so the next pulls
// do not ask for them again until that peer's records change. Memory is
// bounded: at most Max apps (0: protocol.MaxReleaseSummaryApps); when full,
// everything is forgotten (at worst one futile pull per app again). Not
// safe for concurrent use.
type Futile struct {
	Max  int
	seen map[string]string
}

// Has reports whether pulling app at hash taught nothing before.
func (f *Futile) Has(app, hash string) bool { return f.seen != nil && f.seen[app] == hash }

// Add records that pulling app at hash taught nothing.
func (f *Futile) Add(app, hash string) {
	if f.seen == nil {
		f.seen = map[string]string{}
	}
	if _, ok := f.seen[app]; !ok && len(f.seen) >= cmp.Or(f.Max, protocol.MaxReleaseSummaryApps) {
		clear(f.seen)
	}
	f.seen[app] = hash
}

// Len is how many apps are remembered.
func (f *Futile) Len() int { return len(f.seen) }
