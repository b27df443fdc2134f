package apphost

import (
	"container/list"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
)

// Page cache limits. An app host serves the files of one release over and
// over; each answer from the gateway resolves the path through the
// release's DAG and reads its blocks from the store. The bytes of a path
// under a root never change (the root is content-addressed), so the
// answers for small files are kept: MaxCachedFile bytes each, MaxCacheBytes
// in all, least recently used first out.
const (
	MaxCachedFile  = 1 << 20
	MaxCacheBytes  = 32 << 20
	maxCachedPaths = 4096
)

type pageKey struct {
	root   cid.Cid
	path   string
	accept string
}

// page is one cached answer: the headers the gateway set (not those set
// before it ran), and the body.
type page struct {
	key    pageKey
	header http.Header
	body   []byte
	etag   string
}

// pageCache is safe for concurrent use.
type pageCache struct {
	mu    sync.Mutex
	pages map[pageKey]*list.Element
	lru   *list.List // front: most recently used
	bytes int
}

func newPageCache() *pageCache {
	return &pageCache{pages: map[pageKey]*list.Element{}, lru: list.New()}
}

func (c *pageCache) get(k pageKey) *page {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.pages[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*page)
}

func (c *pageCache) put(p *page) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pages[p.key]; ok {
		return
	}
	c.pages[p.key] = c.lru.PushFront(p)
	c.bytes += len(p.body)
	for c.bytes > MaxCacheBytes || c.lru.Len() > maxCachedPaths {
		old := c.lru.Back()
		op := old.Value.(*page)
		c.lru.Remove(old)
		delete(c.pages, op.key)
		c.bytes -= len(op.body)
	}
}

// cacheable says whether r may be answered from, or fill, the cache: a
// plain GET or HEAD of a path, with no query, range or condition other
// than If-None-Match (answered here from the cached ETag).
func cacheable(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.URL.RawQuery != "" {
		return false
	}
	for _, h := range []string{"Range", "If-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	return true
}

// serveCached answers r from p.
func serveCached(w http.ResponseWriter, r *http.Request, p *page) {
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	if p.etag != "" && etagMatch(r.Header.Get("If-None-Match"), p.etag) {
		for _, k := range []string{"Content-Length", "Content-Type"} {
			h.Del(k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(p.body)
	}
}

func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// recorder passes an answer through to the client and keeps a copy of a
// complete 200 of at most MaxCachedFile bytes.
type recorder struct {
	http.ResponseWriter
	before http.Header // header values before the gateway ran
	status int
	header http.Header
	body   []byte
	over   bool
}

func (rc *recorder) WriteHeader(code int) {
	if rc.status == 0 {
		rc.status = code
		if code == http.StatusOK {
			rc.header = http.Header{}
			for k, v := range rc.ResponseWriter.Header() {
				if prev, ok := rc.before[k]; ok && equalValues(prev, v) {
					continue // set before the gateway ran: not the page's
				}
				rc.header[k] = append([]string(nil), v...)
			}
			// Timings describe one request, not the page.
			rc.header.Del("Server-Timing")
		}
	}
	rc.ResponseWriter.WriteHeader(code)
}

func (rc *recorder) Write(b []byte) (int, error) {
	if rc.status == 0 {
		rc.WriteHeader(http.StatusOK)
	}
	if rc.status == http.StatusOK && !rc.over {
		if len(rc.body)+len(b) > MaxCachedFile {
			rc.over, rc.body = true, nil
		} else {
			rc.body = append(rc.body, b...)
		}
	}
	return rc.ResponseWriter.Write(b)
}

// Flush keeps streaming answers streaming.
func (rc *recorder) Flush() {
	if f, ok := rc.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (rc *recorder) Unwrap() http.ResponseWriter { return rc.ResponseWriter }

// page returns the recorded answer if it may be kept.
func (rc *recorder) page(k pageKey) *page {
	if rc.status != http.StatusOK || rc.over || rc.header == nil || rc.header.Get("Set-Cookie") != "" {
		return nil
	}
	if cl := rc.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(rc.body)) {
		return nil // cut short
	}
	return &page{key: k, header: rc.header, body: rc.body, etag: rc.header.Get("Etag")}
}

func equalValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
