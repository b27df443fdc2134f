package runner

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// gateway serves d's blocks like a trustless gateway, with the target's
// receipts (key(t, 1)); mutate may alter answers.
func gateway(t *testing.T, d *dag, mutate func(w http.ResponseWriter, r *http.Request, c cid.Cid) bool) *httptest.Server {
	t.Helper()
	tk, _ := key(t, 1)
	srv := httptest.NewServer(receipts(t, tk, func() time.Time { return fixedNow }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") != "raw" || r.Header.Get("Accept") != "application/vnd.ipld.raw" {
			http.Error(w, "want raw", http.StatusBadRequest)
			return
		}
		c, err := cid.Decode(strings.TrimPrefix(r.URL.Path, "/ipfs/"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if mutate != nil && mutate(w, r, c) {
			return
		}
		data, ok := d.blocks[c]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.ipld.raw")
		w.Write(data)
	})))
	t.Cleanup(srv.Close)
	return srv
}

// fixedNow is the clock of the HTTP tests: a time whose challenge (key 0
// probing key 1) is a descent, not a canary.
var fixedNow = func() time.Time {
	_, self := keyNoT(0)
	_, target := keyNoT(1)
	at := time.UnixMilli(1_800_000_000_000)
	cfg := DefaultConfig()
	cfg.K, cfg.Observers, cfg.Confirmations = 1, 3, 1
	for {
		if _, _, n := probe.Nonce(at, cfg.EpochLength, target, self); !protocol.IsCanary(n) {
			return at
		}
		at = at.Add(cfg.EpochLength / protocol.ProbeRoundsPerEpoch)
	}
}()

func receipts(t *testing.T, k crypto.PrivKey, clock func() time.Time, h http.Handler) http.Handler {
	t.Helper()
	rh, err := ReceiptHandler(h, k, clock)
	if err != nil {
		t.Fatal(err)
	}
	return rh
}

type staticView []Mirror

func (v staticView) Mirrors(time.Time) []Mirror { return v }

type recorder struct {
	mu  sync.Mutex
	raw [][]byte
}

func (r *recorder) Publish(_ context.Context, raw []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw = append(r.raw, raw)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.raw)
}

func key(t *testing.T, b byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	return keyNoT(b)
}

func keyNoT(b byte) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(strings.NewReader(strings.Repeat(string(rune('a'+b)), 64)))
	if err != nil {
		panic(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// probeOver runs one round by self against a single target served at url.
func probeOver(t *testing.T, url string, d *dag, timeout time.Duration) protocol.ProbeResult {
	t.Helper()
	sk, self := key(t, 0)
	_, target := key(t, 1)
	cfg := DefaultConfig()
	cfg.K, cfg.Observers, cfg.Confirmations = 1, 3, 1 // two mirrors: self is always assigned
	cfg.Timeout = timeout
	rec := &recorder{}
	now := fixedNow
	r, err := NewRunner(cfg, self, sk, staticView{{ID: self}, {ID: target, HTTP: url, Bundles: []string{d.root.String()}}},
		&HTTPFetcher{}, rec, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.ProbeOnce(context.Background(), now)
	if err != nil || len(res) != 1 || rec.count() != 1 {
		t.Fatalf("round: %v %v (%d published)", res, err, rec.count())
	}
	st, err := attest.Verify(rec.raw[0], now)
	if err != nil || !reflect.DeepEqual(*st.Probe, res[0]) {
		t.Fatalf("published statement: %v", err)
	}
	return res[0]
}

func TestHTTPChallengeOutcomes(t *testing.T) {
	d := buildDAG(t, 1, 4)
	cases := []struct {
		name   string
		mutate func(w http.ResponseWriter, r *http.Request, c cid.Cid) bool
		want   string
	}{
		{"honest", nil, protocol.OutcomePass},
		{"garbage", func(w http.ResponseWriter, _ *http.Request, _ cid.Cid) bool { w.Write([]byte("lies")); return true }, protocol.OutcomeFail},
		{"no leaves", func(w http.ResponseWriter, r *http.Request, c cid.Cid) bool {
			if c.Type() == cid.Raw {
				http.NotFound(w, r)
				return true
			}
			return false
		}, protocol.OutcomeFail},
		{"oversize", func(w http.ResponseWriter, _ *http.Request, _ cid.Cid) bool {
			w.Write(make([]byte, MaxBlockSize+1))
			return true
		}, protocol.OutcomeFail},
		{"stalls", func(_ http.ResponseWriter, r *http.Request, _ cid.Cid) bool { <-r.Context().Done(); return true }, protocol.OutcomeTimeout},
		// Serving the right bytes without the target's receipt (a proxy
		// in front of someone else's mirror, or a stale version) does
		// not pass: the result could not prove it.
		{"no receipt", func(w http.ResponseWriter, r *http.Request, c cid.Cid) bool {
			raw := w.(interface{ Unwrap() http.ResponseWriter }).Unwrap()
			raw.Write(d.blocks[c])
			return true
		}, protocol.OutcomeFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := gateway(t, d, tc.mutate)
			timeout := 10 * time.Second // generous: only the stalling gateway may time out
			if tc.want == protocol.OutcomeTimeout {
				timeout = 200 * time.Millisecond
			}
			res := probeOver(t, srv.URL, d, timeout)
			if res.Outcome != tc.want {
				t.Errorf("outcome %s, want %s (%+v)", res.Outcome, tc.want, res)
			}
			if res.Bundle != d.root.String() || !strings.HasPrefix(res.Challenge, "descent:") {
				t.Errorf("result %+v", res)
			}
			if res.Addr != "127.0.0.1" {
				t.Errorf("observed address %q, want the gateway's 127.0.0.1", res.Addr)
			}
			if (res.Outcome == protocol.OutcomePass) != (len(res.Receipts) > 0) {
				t.Errorf("outcome %s with %d receipts", res.Outcome, len(res.Receipts))
			}
		})
	}
}

func TestHTTPFetcherStatus(t *testing.T) {
	d := buildDAG(t, 2, 2)
	srv := gateway(t, d, nil)
	if _, err := (&HTTPFetcher{}).FetchBlock(context.Background(), srv.URL+"/", d.leaves[0], Challenge{}); err != nil {
		t.Fatalf("trailing slash base: %v", err)
	}
	other := buildDAG(t, 3, 2)
	if _, err := (&HTTPFetcher{}).FetchBlock(context.Background(), srv.URL, other.root, Challenge{}); !errors.Is(err, ErrStatus) {
		t.Errorf("missing block: %v", err)
	}
}

func TestRunStopsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := buildDAG(t, 4, 2)
		sk, self := key(t, 0)
		tk, target := key(t, 1)
		cfg := DefaultConfig()
		cfg.K, cfg.Observers, cfg.Confirmations = 1, 3, 1
		rec := &recorder{}
		r, err := NewRunner(cfg, self, sk, staticView{{ID: target, HTTP: "mem://", Bundles: []string{d.root.String()}}},
			memFetcher{d, tk}, rec, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background()) }()
		synctest.Wait()
		if rec.count() != 1 {
			t.Fatalf("%d results after the first round", rec.count())
		}
		time.Sleep(cfg.Interval * 3) // virtual time: three more rounds
		synctest.Wait()
		if rec.count() != 4 {
			t.Fatalf("%d results after four rounds", rec.count())
		}
		r.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		r.Close() // idempotent
		if err := r.Run(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close: %v", err)
		}
	})
}

// memFetcher serves d's blocks with the receipts of target key k.
type memFetcher struct {
	d *dag
	k crypto.PrivKey
}

func (m memFetcher) FetchBlock(_ context.Context, _ string, c cid.Cid, ch Challenge) (Block, error) {
	if b, ok := m.d.blocks[c]; ok {
		r, err := attest.SignProbeReceipt(m.k, ch.Observer.String(), ch.Nonce, c.String(), time.Now())
		return Block{Data: b, Receipt: r}, err
	}
	return Block{}, ErrStatus
}

func TestPublisherFunc(t *testing.T) {
	var got []byte
	var p Publisher = PublisherFunc(func(_ context.Context, raw []byte) error { got = raw; return nil })
	if err := p.Publish(context.Background(), []byte("x")); err != nil || string(got) != "x" {
		t.Fatal("PublisherFunc does not forward")
	}
}

func TestNewRunnerValidates(t *testing.T) {
	sk, self := key(t, 0)
	_, other := key(t, 1)
	cfg := DefaultConfig()
	if _, err := NewRunner(cfg, other, sk, staticView{}, memFetcher{}, &recorder{}, time.Now); !errors.Is(err, ErrConfig) {
		t.Errorf("foreign key: %v", err)
	}
	cfg.Descents = 0
	if _, err := NewRunner(cfg, self, sk, staticView{}, memFetcher{}, &recorder{}, time.Now); !errors.Is(err, ErrConfig) {
		t.Errorf("zero descents: %v", err)
	}
}
