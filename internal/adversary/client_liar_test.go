package adversary_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/client"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// countingTransport records every host the client sends a request to;
// hosts under .invalid (the lying bootstrap's inventions) fail at once
// without touching the network.
type countingTransport struct {
	next  http.RoundTripper
	mu    sync.Mutex
	hosts map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.hosts[r.URL.Host]++
	c.mu.Unlock()
	if strings.HasSuffix(r.URL.Hostname(), ".invalid") {
		return nil, errors.New("no such host (test)")
	}
	return c.next.RoundTrip(r)
}

func (c *countingTransport) distinct() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var hs []string
	for h := range c.hosts {
		hs = append(hs, h)
	}
	return len(hs), hs
}

// liar is a bootstrap that answers a statements request with ten thousand
// valid, fresh liveness statements from throwaway keys, each naming its
// own invented mirror (a distinct URL and domain) that holds root. It
// signs them as it writes them, so it holds none in memory.
func liar(t testing.TB, root string, n int) *httptest.Server {
	pad := make([]string, 0, 40)
	for i := range cap(pad) {
		pad = append(pad, fmt.Sprintf("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa%06d", i))
	}
	bundles := protocol.SortUnique(append(pad, root))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != protocol.HTTPStatementsPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", protocol.StatementsContentType)
		seed := make([]byte, ed25519.SeedSize)
		for i := range n {
			seed[0], seed[1], seed[2] = byte(i), byte(i>>8), 0xa5
			key, _ := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
			id, _ := peer.IDFromPrivateKey(key)
			raw, err := attest.SignLiveness(key, protocol.Liveness{
				Peer: id.String(), State: protocol.StateUp, Seq: 1, Time: time.Now().UnixMilli(),
				Addrs: []string{}, HTTP: fmt.Sprintf("http://m%05d.liar%05d.invalid:8080", i, i), Bundles: bundles, Version: "liar",
			})
			if err != nil {
				t.Error(err)
				return
			}
			if protocol.WriteFrame(w, raw) != nil {
				return // the client stopped reading
			}
		}
		protocol.WriteFrame(w, nil)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A lying bootstrap mints ten thousand mirrors with distinct URLs, next
// to an honest bootstrap that does not hold the bundle but knows (from
// gossip) the honest mirror that does: `get` contacts at most MaxSources
// mirrors, picks the honest holder because two sources vouch for it, its
// heap stays under 64 MiB, and it fetches the bundle from that mirror.
func TestClientLyingBootstrapCannotWeaponiseGet(t *testing.T) {
	const (
		minted = 10_000
		limit  = 64 << 20
	)
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	boot := newVictim(t, mn, nil, "127.0.0.1:0", nil)
	holder := newVictim(t, mn, nil, "127.0.0.1:0", nil)
	if _, err := mn.ConnectPeers(boot.ID(), holder.ID()); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(t.TempDir(), "site")
	os.MkdirAll(site, 0o755)
	os.WriteFile(filepath.Join(site, "index.html"), []byte("<h1>honest</h1>"), 0o644)
	ac, err := node.DialAdmin(holder.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ac.Import(context.Background(), site, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := cid.Decode(res.CID)
	// The honest bootstrap knows the holder holds the bundle.
	waitUntil(t, 30*time.Second, "the bootstrap sees the holder's bundle", func() (bool, string) {
		for _, m := range boot.Status().Mirrors {
			if m.PeerID == holder.ID().String() {
				for _, b := range m.Bundles {
					if b == res.CID {
						return true, ""
					}
				}
			}
		}
		return false, "not yet"
	})
	lie := liar(t, res.CID, minted)

	tr := &countingTransport{next: http.DefaultTransport.(*http.Transport).Clone(), hosts: map[string]int{}}
	opts := client.DefaultOptions()
	opts.Bootstrap = []string{lie.URL, boot.HTTPURL()}
	opts.HTTPClient = &http.Client{Transport: tr}

	base := liveHeap()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := client.Get(ctx, root, opts)
	close(stop)
	sampler.Wait()
	if err != nil {
		t.Fatalf("get with a lying bootstrap: %v", err)
	}
	if got.PerMirror[holder.HTTPURL()] == 0 {
		t.Fatalf("nothing fetched from the honest holder: %v", got.PerMirror)
	}
	n, hosts := tr.distinct()
	if n > opts.MaxSources {
		t.Fatalf("contacted %d hosts, want at most MaxSources = %d: %v", n, opts.MaxSources, hosts)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("contacted %d hosts (MaxSources %d); heap %d MiB before, peak %d MiB (growth %d MiB, garbage included)", n, opts.MaxSources, base>>20, peak.Load()>>20, growth>>20)
	if growth >= limit {
		t.Fatalf("heap grew by %d MiB during get, want < %d MiB", growth>>20, limit>>20)
	}
}
