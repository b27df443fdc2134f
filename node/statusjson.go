package node

import (
	"context"
	"io"
	"net/http"

	"github.com/mirrornet/mirrornet/internal/snapcache"
	"github.com/mirrornet/mirrornet/internal/statuspage"
)

// The status page (protocol.HTTPStatusPath) is served from an immutable,
// gzip-compressed snapshot of its JSON, rebuilt in the background
// (internal/statuspage over internal/snapcache): a request never waits on
// the node's lock, on a probe round or on a view of ten thousand
// strangers. Rebuilds follow the view's version; with a small view a
// request waits (at most 100 ms) for a snapshot started after it arrived,
// so the answer is as fresh as computing it then.

func init() { registerFeature(newStatusFeature) }

// statusFeature keeps the status page.
type statusFeature struct {
	baseFeature
	page *statuspage.Page
}

var _ feature = (*statusFeature)(nil)

func newStatusFeature(n *Node) (feature, error) {
	cfg := snapcache.DefaultConfig()
	cfg.Version = n.view.Version
	p, err := statuspage.New(cfg, n.writeStatus)
	if err != nil {
		return nil, err
	}
	return &statusFeature{page: p}, nil
}

func (f *statusFeature) name() string            { return "status" }
func (f *statusFeature) run(ctx context.Context) { f.page.Run(ctx) }

// serveStatus answers with the latest status snapshot.
func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	for _, f := range n.features {
		if sf, ok := f.(*statusFeature); ok {
			sf.page.ServeHTTP(w, r)
			return
		}
	}
	http.Error(w, "status: not available", http.StatusServiceUnavailable)
}

// writeStatus writes the same JSON as encoding Status() with two-space
// indentation, one mirror at a time: the response for a view of ten
// thousand mirrors is built without a second copy of every mirror.
func (n *Node) writeStatus(w io.Writer) error {
	return statuspage.WriteObject(w, []statuspage.Field{{Name: "self", Value: n.selfStatus()}}, "mirrors",
		func(yield func(any) bool) error {
			n.mirrorsWith(func(m MirrorStatus) bool { return yield(m) })
			return nil
		},
		[]statuspage.Field{{Name: "bitswap", Value: n.bitswapReport()}})
}
