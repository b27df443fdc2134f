package badgehttp

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/probe"
)

type fakeEvidence map[peer.ID]probe.TargetStatus

func (f fakeEvidence) Status(p peer.ID, _ time.Time) probe.TargetStatus {
	if st, ok := f[p]; ok {
		return st
	}
	return probe.TargetStatus{Target: p, State: probe.StateUnverified}
}

type fakeHolders map[string][]peer.ID

func (f fakeHolders) HolderIDs(b string, _ time.Time) []peer.ID { return f[b] }

type countDomains struct{}

// Each peer its own domain, except that peers are merged pairwise for a clear signal.
func (countDomains) EffectiveRedundancy(hs []peer.ID) int { return (len(hs) + 1) / 2 }

func peers(t *testing.T, n int) []peer.ID {
	t.Helper()
	out := make([]peer.ID, n)
	for i := range out {
		_, pub, err := crypto.GenerateEd25519Key(strings.NewReader(strings.Repeat(string(rune('a'+i)), 64)))
		if err != nil {
			t.Fatal(err)
		}
		out[i], _ = peer.IDFromPublicKey(pub)
	}
	return out
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestHandler(t *testing.T) {
	ps := peers(t, 5)
	bundle, _ := cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256}.Sum([]byte("bundle"))
	ev := fakeEvidence{}
	for _, p := range ps[:4] {
		ev[p] = probe.TargetStatus{Target: p, State: probe.StateVerified, PassRate24h: 0.998, Samples24h: 500}
	}
	holders := fakeHolders{bundle.String(): ps}
	src := NewSource(ev, holders, countDomains{}, nil, time.Now)
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()

	resp, body := get(t, srv, "/badge/bundle/"+bundle.String()+"/mirrors.json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=60") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil || m["schemaVersion"] != float64(1) || m["message"] != "4 verified · 2 domains" {
		t.Fatalf("%s %v", body, err)
	}
	resp, body = get(t, srv, "/badge/bundle/"+bundle.String()+"/mirrors.svg")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/svg+xml") {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if err := xml.Unmarshal([]byte(body), new(struct{})); err != nil {
		t.Fatalf("svg: %v", err)
	}
	before := body

	// The evidence changes: the badge follows.
	ev[ps[0]] = probe.TargetStatus{State: probe.StateFailing}
	if _, after := get(t, srv, "/badge/bundle/"+bundle.String()+"/mirrors.svg"); after == before || !strings.Contains(after, "3 verified") {
		t.Errorf("badge did not follow the evidence: %s", after)
	}

	_, body = get(t, srv, "/badge/peer/"+ps[1].String()+"/backup.json")
	if !strings.Contains(body, `"message":"verified · 99.8% 24 h"`) || !strings.Contains(body, `"label":"backup server"`) {
		t.Errorf("backup: %s", body)
	}
	resp, body = get(t, srv, "/badge/peer/"+ps[1].String()+"/backup.svg")
	if resp.StatusCode != 200 || !strings.Contains(body, "backup server") {
		t.Errorf("backup svg: %d %s", resp.StatusCode, body)
	}

	other, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte("nobody has this"))
	if _, body := get(t, srv, "/badge/bundle/"+other.String()+"/mirrors.json"); !strings.Contains(body, `"message":"unknown"`) {
		t.Errorf("unknown bundle: %s", body)
	}
	for path, code := range map[string]int{
		"/badge/bundle/notacid/mirrors.svg":                 400,
		"/badge/peer/notapeer/backup.svg":                   400,
		"/badge/bundle/" + bundle.String() + "/backup.svg":  404,
		"/badge/peer/" + ps[0].String() + "/mirrors.json":   404,
		"/badge/bundle/" + bundle.String() + "/mirrors.png": 404,
	} {
		if resp, _ := get(t, srv, path); resp.StatusCode != code {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	if resp, err := srv.Client().Post(srv.URL+"/badge/peer/"+ps[0].String()+"/backup.svg", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.StatusCode, err)
	}
}

func TestUnknownPeer(t *testing.T) {
	ps := peers(t, 2)
	src := NewSource(fakeEvidence{}, fakeHolders{}, countDomains{}, func(p peer.ID, _ time.Time) bool { return p == ps[0] }, time.Now)
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	if _, body := get(t, srv, "/badge/peer/"+ps[1].String()+"/backup.json"); !strings.Contains(body, `"message":"unknown"`) {
		t.Errorf("unknown peer: %s", body)
	}
	if _, body := get(t, srv, "/badge/peer/"+ps[0].String()+"/backup.json"); !strings.Contains(body, `"message":"unverified"`) {
		t.Errorf("known, unverified peer: %s", body)
	}
}
