package node

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

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
//
// The snapshot is kept gzip-compressed (the JSON never sits whole in
// memory: a view filled to the statement byte budget is tens of MiB of
// JSON and compresses about tenfold). Clients that accept gzip get it as
// it is; others get it decompressed as it is written.

func init() { registerFeature(newStatusFeature) }

// statusFeature keeps the status snapshot.
type statusFeature struct {
	baseFeature
	n     *Node
	cache *snapcache.Cache[statusSnap]
	// zw compresses every build (only the cache's Run goroutine builds).
	zw *gzip.Writer
}

// statusSnap is one status JSON, gzip-compressed, and its length.
type statusSnap struct {
	gz   []byte
	size int
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

var _ feature = (*statusFeature)(nil)

func newStatusFeature(n *Node) (feature, error) {
	cfg := snapcache.DefaultConfig()
	cfg.Version = n.view.Version
	f := &statusFeature{n: n}
	f.zw, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level
	c, err := snapcache.New(cfg, f.build)
	if err != nil {
		return nil, err
	}
	f.cache = c
	return f, nil
}

// build writes the status JSON through the compressor.
func (f *statusFeature) build(context.Context) (statusSnap, error) {
	var b bytes.Buffer
	if prev := f.cache.Latest(); prev != nil {
		b.Grow(len(prev.Value.gz) + len(prev.Value.gz)/8)
	}
	f.zw.Reset(&b)
	cw := &countingWriter{w: f.zw}
	if err := f.n.writeStatus(cw); err != nil {
		return statusSnap{}, err
	}
	if err := f.zw.Close(); err != nil {
		return statusSnap{}, err
	}
	return statusSnap{gz: b.Bytes(), size: cw.n}, nil
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
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept-Encoding")
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(snap.Value.gz)))
		_, _ = w.Write(snap.Value.gz)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(snap.Value.gz))
	if err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h.Set("Content-Length", strconv.Itoa(snap.Value.size))
	_, _ = io.Copy(w, zr)
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip: named
// (or x-gzip) with a q above 0, or "*" above 0 when gzip is not named.
func acceptsGzip(header string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(coding)) {
		case "gzip", "x-gzip":
			gzipQ = max(gzipQ, q)
		case "*":
			starQ = max(starQ, q)
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// writeStatus writes the same JSON as encoding Status() with two-space
// indentation, one mirror at a time: the response for a view of ten
// thousand mirrors is built without a second copy of every mirror.
func (n *Node) writeStatus(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	first := true
	var err error
	// One encoder for every mirror: its indentation buffer is reused, and
	// encoding/json pools the rest, so a build over a view at the byte
	// budget does not leave twice that view's JSON behind as garbage.
	var scratch bytes.Buffer
	enc := json.NewEncoder(&scratch)
	enc.SetEscapeHTML(true)
	enc.SetIndent("    ", "  ")
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
		scratch.Reset()
		if err = enc.Encode(m); err != nil {
			return false
		}
		if first {
			bw.WriteString("\n    ")
			first = false
		} else {
			bw.WriteString(",\n    ")
		}
		// Encode ends with a newline MarshalIndent does not write.
		_, err = bw.Write(bytes.TrimSuffix(scratch.Bytes(), []byte("\n")))
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
