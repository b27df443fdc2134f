package node

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// The streamed status is byte for byte what encoding Status() gives.
func TestWriteStatusMatchesEncode(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	for range 2 {
		want := &bytes.Buffer{}
		enc := json.NewEncoder(want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(n.Status()); err != nil {
			t.Fatal(err)
		}
		got := &bytes.Buffer{}
		if err := n.writeStatus(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("streamed status differs:\n%s\nwant:\n%s", got, want)
		}
		// Second round with two more mirrors in the view.
		for range 2 {
			sk, _, _ := crypto.GenerateEd25519Key(nil)
			id, _ := peer.IDFromPrivateKey(sk)
			now := n.clock()
			raw, err := attest.SignLiveness(sk, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(), Addrs: []string{}, Bundles: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			st, err := attest.Verify(raw, now.Add(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if err := n.accept(st); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// getStatus calls the status handler as the HTTP side would.
func getStatus(n *Node) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	n.serveStatus(rec, httptest.NewRequest(http.MethodGet, protocol.HTTPStatusPath, nil))
	return rec
}

// The status page answers while a long loop holds the node's lock (a
// probe round or a payout snapshot over ten thousand mirrors used to make
// every status request wait for it), with the JSON Status() encodes.
func TestStatusAnswersWhileNodeLockHeld(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	if rec := getStatus(n); rec.Code != http.StatusOK {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	n.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			n.mu.Unlock()
		}
	}
	defer unlock()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- getStatus(n) }()
	var rec *httptest.ResponseRecorder
	select {
	case rec = <-done:
	case <-time.After(time.Minute): // a failure guard, not a latency bound
		unlock()
		<-done
		t.Fatal("the status page waited for the node's lock")
	}
	unlock()
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status while locked: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := &bytes.Buffer{}
	enc := json.NewEncoder(want)
	enc.SetIndent("", "  ")
	if err := enc.Encode(n.Status()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), want.Bytes()) {
		t.Fatalf("served status differs from Status():\n%s\nwant:\n%s", rec.Body, want)
	}
}

// A small view is served as it is when the request arrives: a mirror
// accepted just before a status request is in its answer.
func TestStatusShowsAcceptedMirror(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	getStatus(n)
	sk, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(sk)
	now := n.clock()
	raw, err := attest.SignLiveness(sk, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli(), Addrs: []string{}, Bundles: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, now.Add(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.accept(st); err != nil {
		t.Fatal(err)
	}
	// Polled: a loaded machine may take longer than the wait for a fresh
	// snapshot, and then the previous one is served.
	waitFor(t, 30*time.Second, "the new mirror in the status page", func() (bool, string) {
		body := getStatus(n).Body.String()
		return strings.Contains(body, id.String()), body
	})
}

// A client that accepts gzip gets the same JSON compressed; others get it
// as it is.
func TestStatusGzip(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	plain := getStatus(n)
	req := httptest.NewRequest(http.MethodGet, protocol.HTTPStatusPath, nil)
	req.Header.Set("Accept-Encoding", "br;q=1.0, gzip;q=0.8")
	rec := httptest.NewRecorder()
	n.serveStatus(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("headers %v: want gzip", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Header().Get("Content-Encoding") != "" || !bytes.Equal(got, plain.Body.Bytes()) {
		t.Fatalf("gzip body differs from the plain one:\n%s\nplain:\n%s", got, plain.Body)
	}
	if cl := plain.Header().Get("Content-Length"); cl != strconv.Itoa(plain.Body.Len()) {
		t.Fatalf("Content-Length %s, body %d bytes", cl, plain.Body.Len())
	}
	for header, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "gzip;q=0": false, "gzip; q=0.0": false, "*": true,
		"*, gzip;q=0": false, "identity": false, "deflate, x-gzip": true, "br, *;q=0.1": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
