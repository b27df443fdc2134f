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

	"github.com/ipfs/go-cid"
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
	waitFor(t, 2*time.Minute, "the new mirror in the status page", func() (bool, string) {
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
}

// Everything that lists the whole view reads it without the node's lock
// (the view is safe for concurrent use and lists itself from a shared
// snapshot): with ten thousand strangers in view, none of them may hold
// up the gossip validator, which takes that lock for every statement.
// (The status page and the dashboard take it briefly for this node's own
// fetches, not for the view; the status page is served from a snapshot
// even then, see TestStatusAnswersWhileNodeLockHeld.)
func TestViewReadersDoNotTakeNodeLock(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	root := n.id.String() // any string: nobody holds it
	c0, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z")
	readers := map[string]func(){
		"statements": func() { n.statements() },
		"probe view": func() {
			v := lockedView{n}
			now := n.clock()
			v.Mirrors(now)
			v.All(now)
			v.Alive(now)
			v.HolderIDs(root, now)
		},
		"redirect":     func() { redirectSource{n}.Candidates(c0) },
		"worker seeds": func() { n.workerSeeds(c0) },
		"metrics":      func() { _, _ = n.registry.Gather() },
		"dead mirrors": func() { n.deadMirrors() },
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, read := range readers {
		done := make(chan struct{})
		go func() { read(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute): // a failure guard, not a latency bound
			t.Fatalf("%s waited for the node's lock", name)
		}
	}
}
