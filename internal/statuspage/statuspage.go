// Package statuspage serves a large JSON document (a mirror's status page:
// itself and every mirror of a view that may hold ten thousand strangers)
// from an immutable, gzip-compressed snapshot rebuilt in the background
// (package snapcache): a request never waits on the locks or the work the
// document takes to write.
//
// The snapshot is kept compressed (the JSON never sits whole in memory: a
// view filled to its statement byte budget is tens of MiB of JSON, and it
// compresses about tenfold). Clients that accept gzip get it as it is;
// others get it decompressed as it is written. [WriteObject] writes such a
// document one list element at a time, byte for byte what encoding/json's
// MarshalIndent makes of the whole, so the writer holds one element, never
// the document.
//
//	p, _ := statuspage.New(snapcache.DefaultConfig(), writeStatus)
//	go p.Run(ctx)
//	mux.Handle("GET /api/v1/status", p)
package statuspage

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

// Page is a JSON document served from a compressed snapshot. Build one
// with New; Run keeps it fresh.
type Page struct {
	cache *snapcache.Cache[snap]
	write func(io.Writer) error
	// zw compresses every build (only the cache's Run goroutine builds).
	zw *gzip.Writer
}

// snap is one document, gzip-compressed, and its length.
type snap struct {
	gz   []byte
	size int
}

// New returns a page whose document write writes (called on Run's
// goroutine, one build at a time; cfg says when, see snapcache).
func New(cfg snapcache.Config, write func(io.Writer) error) (*Page, error) {
	p := &Page{write: write}
	p.zw, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level
	c, err := snapcache.New(cfg, p.build)
	if err != nil {
		return nil, err
	}
	p.cache = c
	return p, nil
}

// Run rebuilds the snapshot until ctx ends (snapcache.Cache.Run).
func (p *Page) Run(ctx context.Context) { p.cache.Run(ctx) }

// build writes the document through the compressor.
func (p *Page) build(context.Context) (snap, error) {
	var b bytes.Buffer
	if prev := p.cache.Latest(); prev != nil {
		b.Grow(len(prev.Value.gz) + len(prev.Value.gz)/8)
	}
	p.zw.Reset(&b)
	cw := &countingWriter{w: p.zw}
	if err := p.write(cw); err != nil {
		return snap{}, err
	}
	if err := p.zw.Close(); err != nil {
		return snap{}, err
	}
	return snap{gz: b.Bytes(), size: cw.n}, nil
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += n
	return n, err
}

// ServeHTTP answers with the latest snapshot: gzip-compressed to a client
// that accepts it, decompressed as it is written to others; 503 before the
// first snapshot could be built.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, err := p.cache.Get(r.Context())
	if err != nil {
		http.Error(w, "status: not available yet: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Accept-Encoding")
	if AcceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(s.Value.gz)))
		_, _ = w.Write(s.Value.gz)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(s.Value.gz))
	if err != nil {
		http.Error(w, "status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h.Set("Content-Length", strconv.Itoa(s.Value.size))
	_, _ = io.Copy(w, zr)
}

// AcceptsGzip reports whether an Accept-Encoding header admits gzip: named
// (or x-gzip) with a q above 0, or "*" above 0 when gzip is not named.
func AcceptsGzip(header string) bool {
	gzipQ, starQ := -1.0, -1.0
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
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

// Field is one member of the object WriteObject writes.
type Field struct {
	Name  string
	Value any
}

// WriteObject writes the JSON object {head..., list: [items...], tail...}
// exactly as json.NewEncoder with SetIndent("", "  ") encodes a struct
// with those fields in that order (HTML escaped, a final newline), taking
// the list's elements one at a time from items: items calls yield for
// each and stops when yield returns false; its error, or the first
// encoding error, is returned.
func WriteObject(w io.Writer, head []Field, list string, items func(yield func(any) bool) error, tail []Field) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString("{")
	sep := "\n  "
	field := func(f Field) error {
		b, err := json.MarshalIndent(f.Value, "  ", "  ")
		if err != nil {
			return err
		}
		name, _ := json.Marshal(f.Name)
		bw.WriteString(sep)
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(b)
		sep = ",\n  "
		return nil
	}
	for _, f := range head {
		if err := field(f); err != nil {
			return err
		}
	}
	name, _ := json.Marshal(list)
	bw.WriteString(sep)
	bw.Write(name)
	bw.WriteString(": [")
	sep = ",\n  "
	// One encoder for every element: its indentation buffer is reused,
	// and encoding/json pools the rest.
	var scratch bytes.Buffer
	enc := json.NewEncoder(&scratch)
	enc.SetEscapeHTML(true)
	enc.SetIndent("    ", "  ")
	first := true
	var encErr error
	err := items(func(v any) bool {
		scratch.Reset()
		if encErr = enc.Encode(v); encErr != nil {
			return false
		}
		if first {
			bw.WriteString("\n    ")
			first = false
		} else {
			bw.WriteString(",\n    ")
		}
		// Encode ends with a newline MarshalIndent does not write.
		_, encErr = bw.Write(bytes.TrimSuffix(scratch.Bytes(), []byte("\n")))
		return encErr == nil
	})
	if err == nil {
		err = encErr
	}
	if err != nil {
		return err
	}
	if !first {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]")
	for _, f := range tail {
		if err := field(f); err != nil {
			return err
		}
	}
	bw.WriteString("\n}\n")
	return bw.Flush()
}
