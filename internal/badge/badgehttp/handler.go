// Package badgehttp serves the availability badges of package badge over
// HTTP:
//
//	GET /badge/bundle/{cid}/mirrors.svg    GET /badge/bundle/{cid}/mirrors.json
//	GET /badge/peer/{peer-id}/backup.svg   GET /badge/peer/{peer-id}/backup.json
//
// with a short Cache-Control, so README badges follow the evidence within a
// minute. Mount [Handler] on the node's public HTTP mux at "/badge/".
package badgehttp

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/internal/badge"
	"github.com/mirrornet/mirrornet/internal/probe"
)

// Source answers what the badges show. Methods must not block on the
// network; they are called once per request.
type Source interface {
	// BundleMirrors returns how many mirrors are verified to serve bundle
	// and in how many distinct failure domains; known is false when no
	// mirror has ever claimed it.
	BundleMirrors(bundle cid.Cid) (verified, domains int, known bool)
	// PeerStatus returns the probe verdict on p; known is false when p is
	// not a mirror this node has heard of.
	PeerStatus(p peer.ID) (st probe.TargetStatus, known bool)
}

// CacheMaxAge is the Cache-Control max-age of badge responses: about two
// probe rounds on a LAN.
const CacheMaxAge = 60 * time.Second

// Handler returns the badge handler.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /badge/bundle/{cid}/{file}", func(w http.ResponseWriter, r *http.Request) {
		c, err := cid.Decode(r.PathValue("cid"))
		if err != nil {
			http.Error(w, "badge: not a CID: "+r.PathValue("cid"), http.StatusBadRequest)
			return
		}
		b := badge.Unknown("mirrors")
		if v, d, ok := src.BundleMirrors(c); ok {
			b = badge.Mirrors(v, d)
		}
		write(w, r, "mirrors", b)
	})
	mux.HandleFunc("GET /badge/peer/{peer}/{file}", func(w http.ResponseWriter, r *http.Request) {
		p, err := peer.Decode(r.PathValue("peer"))
		if err != nil {
			http.Error(w, "badge: not a peer ID: "+r.PathValue("peer"), http.StatusBadRequest)
			return
		}
		b := badge.Unknown("backup server")
		if st, ok := src.PeerStatus(p); ok {
			b = badge.Backup(st)
		}
		write(w, r, "backup", b)
	})
	return mux
}

func write(w http.ResponseWriter, r *http.Request, name string, b badge.Badge) {
	var body []byte
	switch r.PathValue("file") {
	case name + ".svg":
		w.Header().Set("Content-Type", "image/svg+xml; charset=utf-8")
		body = b.SVG()
	case name + ".json":
		w.Header().Set("Content-Type", "application/json")
		body = b.JSON()
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(CacheMaxAge/time.Second)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// StatusReader is the probe evidence (probe.Evidence satisfies it).
type StatusReader interface {
	Status(target peer.ID, now time.Time) probe.TargetStatus
}

// Holders lists the alive mirrors whose latest liveness statement lists
// bundle (the health view; runner.HealthView satisfies it); the caller does
// not keep the slice.
type Holders interface {
	HolderIDs(bundle string, now time.Time) []peer.ID
}

// Redundancy counts distinct failure domains (domain.Placer satisfies it).
type Redundancy interface {
	EffectiveRedundancy(holders []peer.ID) int
}

// Known reports whether p is a mirror the node has heard of (the health
// view; runner.HealthView.Known fits).
type Known func(p peer.ID, now time.Time) bool

// NewSource combines the evidence, the health view and the failure domains
// into a Source: a bundle's verified mirrors are its claimed holders whose
// verdict is verified, counted in domains by red. clock is usually
// time.Now.
func NewSource(ev StatusReader, holders Holders, red Redundancy, known Known, clock func() time.Time) Source {
	return &source{ev: ev, holders: holders, red: red, known: known, clock: clock}
}

type source struct {
	ev      StatusReader
	holders Holders
	red     Redundancy
	known   Known
	clock   func() time.Time
}

func (s *source) BundleMirrors(bundle cid.Cid) (int, int, bool) {
	now := s.clock()
	hs := s.holders.HolderIDs(bundle.String(), now)
	var verified []peer.ID
	for _, h := range hs {
		if s.ev.Status(h, now).State == probe.StateVerified {
			verified = append(verified, h)
		}
	}
	return len(verified), s.red.EffectiveRedundancy(verified), len(hs) > 0
}

func (s *source) PeerStatus(p peer.ID) (probe.TargetStatus, bool) {
	now := s.clock()
	st := s.ev.Status(p, now)
	return st, s.known == nil || s.known(p, now) || st.Samples24h > 0
}
