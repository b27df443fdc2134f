package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/mirrornet/mirrornet/internal/snapcache"
)

// The status page (protocol.HTTPStatusPath) is served from an immutable
// snapshot of its JSON, rebuilt in the background (internal/snapcache):
// a request never waits on the node's lock, on a probe round or on a view
// of ten thousand strangers. Rebuilds are coalesced (one in flight), follow
// the view's version, rest four times their own duration between each
// other, and are never older than a few seconds while anyone reads. With a
// small view a request waits (at most 100 ms) for a snapshot started after
// it arrived, so the answer is as fresh as computing it then.

func init() { registerFeature(newStatusFeature) }

// statusFeature keeps the status snapshot.
type statusFeature struct {
	baseFeature
	n     *Node
	cache *snapcache.Cache[[]byte]
}

var _ feature = (*statusFeature)(nil)

func newStatusFeature(n *Node) (feature, error) {
	cfg := snapcache.DefaultConfig()
	cfg.Version = func() uint64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.view.Version()
	}
	c, err := snapcache.New(cfg, func(context.Context) ([]byte, error) {
		var b bytes.Buffer
		if err := n.writeStatus(&b); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	})
	if err != nil {
		return nil, err
	}
	return &statusFeature{n: n, cache: c}, nil
}

func (f *statusFeature) name() string            { return "status" }
func (f *statusFeature) run(ctx context.Context) { f.cache.Run(ctx) }

// statusFeatureOf returns the node's status feature.
func (n *Node) statusFeatureOf() *statusFeature {
	for _, f := range n.features {
		if sf, ok := f.(*statusFeature); ok {
			return sf
		}
	}
	return nil
}

// serveStatus answers with the latest status snapshot (see above).
func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	sf := n.statusFeatureOf()
	if sf == nil {
		http.Error(w, "status: not available", http.StatusServiceUnavailable)
		return
	}
	snap, err := sf.cache.Get(r.Context())
	if err != nil {
		http.Error(w, "status: not available yet: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(snap.Value)))
	_, _ = w.Write(snap.Value)
}

// writeStatus writes the same JSON as encoding Status() with two-space
// indentation, one mirror at a time: the response for a view of ten
// thousand mirrors is built without a second copy of every mirror.
func (n *Node) writeStatus(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	first := true
	var err error
	n.statusWith(func(s SelfStatus) {
		var b []byte
		if b, err = json.MarshalIndent(s, "  ", "  "); err != nil {
			return
		}
		bw.WriteString("{\n  \"self\": ")
		bw.Write(b)
		bw.WriteString(",\n  \"mirrors\": [")
	}, func(m MirrorStatus) bool {
		if err != nil {
			return false
		}
		var b []byte
		if b, err = json.MarshalIndent(m, "    ", "  "); err != nil {
			return false
		}
		if first {
			bw.WriteString("\n    ")
			first = false
		} else {
			bw.WriteString(",\n    ")
		}
		_, err = bw.Write(b)
		return err == nil
	})
	if err != nil {
		return err
	}
	if !first {
		bw.WriteString("\n  ")
	}
	b, err := json.MarshalIndent(n.bitswapReport(), "  ", "  ")
	if err != nil {
		return err
	}
	bw.WriteString("],\n  \"bitswap\": ")
	bw.Write(b)
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// selfStatus describes this node (no mirror of the view is read).
func (n *Node) selfStatus() SelfStatus {
	me := SelfStatus{
		PeerID: n.id.String(), Addrs: n.Addrs(), HTTP: n.HTTPURL(), Version: Version,
		Profile: n.prof.Name, Peers: len(n.host.Network().Peers()), Bundles: []string{},
	}
	for _, b := range n.store.Bundles() {
		if b.State == "held" {
			me.Bundles = append(me.Bundles, b.Root.String())
		}
	}
	me.Refused = n.refusedBundles()
	return me
}
