package statuspage_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/mirrornet/mirrornet/internal/snapcache"
	"github.com/mirrornet/mirrornet/internal/statuspage"
)

type item struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
	N    int      `json:"n,omitempty"`
}

type doc struct {
	Self  map[string]any `json:"self"`
	Items []item         `json:"items"`
	Tail  []int          `json:"tail"`
}

func write(d doc) func(io.Writer) error {
	return func(w io.Writer) error {
		return statuspage.WriteObject(w, []statuspage.Field{{Name: "self", Value: d.Self}}, "items", func(yield func(any) bool) error {
			for _, it := range d.Items {
				if !yield(it) {
					break
				}
			}
			return nil
		}, []statuspage.Field{{Name: "tail", Value: d.Tail}})
	}
}

// WriteObject writes, element by element, exactly what encoding the whole
// document with two-space indentation gives.
func TestWriteObjectMatchesEncoder(t *testing.T) {
	for name, d := range map[string]doc{
		"empty list": {Self: map[string]any{"a": 1}, Items: []item{}, Tail: []int{}},
		"items": {Self: map[string]any{"html": "<b>&</b>", "nested": map[string]any{"x": []int{1, 2}}},
			Items: []item{{Name: "one", Tags: []string{}}, {Name: "two <&>", Tags: []string{"a", "b"}, N: 3}}, Tail: []int{7}},
	} {
		t.Run(name, func(t *testing.T) {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", "  ")
			if err := enc.Encode(d); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := write(d)(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("streamed:\n%s\nencoded:\n%s", got.Bytes(), want.Bytes())
			}
		})
	}
	boom := errors.New("boom")
	err := statuspage.WriteObject(io.Discard, nil, "items", func(func(any) bool) error { return boom }, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("items' error: %v", err)
	}
}

// A client that accepts gzip gets the document compressed; others get it
// as it is, with its length.
func TestServeGzipAndPlain(t *testing.T) {
	d := doc{Self: map[string]any{"a": "b"}, Items: []item{{Name: "x", Tags: []string{"y"}}}, Tail: []int{}}
	p, err := statuspage.New(snapcache.DefaultConfig(), write(d))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	plain := httptest.NewRecorder()
	p.ServeHTTP(plain, httptest.NewRequest(http.MethodGet, "/", nil))
	var want bytes.Buffer
	write(d)(&want)
	if plain.Code != http.StatusOK || plain.Header().Get("Content-Encoding") != "" || !bytes.Equal(plain.Body.Bytes(), want.Bytes()) {
		t.Fatalf("plain: %d %v\n%s", plain.Code, plain.Header(), plain.Body)
	}
	if cl := plain.Header().Get("Content-Length"); cl != strconv.Itoa(plain.Body.Len()) {
		t.Fatalf("Content-Length %s, body %d bytes", cl, plain.Body.Len())
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept-Encoding", "br;q=1.0, gzip;q=0.8")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("headers %v: want gzip", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("gzip body differs:\n%s", got)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "gzip;q=0": false, "gzip; q=0.0": false, "*": true,
		"*, gzip;q=0": false, "identity": false, "deflate, x-gzip": true, "br, *;q=0.1": true,
	} {
		if got := statuspage.AcceptsGzip(header); got != want {
			t.Errorf("AcceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
