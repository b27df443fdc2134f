package node

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/announce"
)

// A mirror whose HTTP side listens on a wildcard address, with no public
// URL, never announces the wildcard: it announces nothing until a peer has
// observed it, then the observed address with its HTTP port.
func TestWildcardHTTPIsNeverAnnounced(t *testing.T) {
	cfgB := testConfig(t)
	cfgB.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	var mu sync.Mutex
	var seen []string // HTTP URLs in A's liveness statements, as B received them
	got := make(chan string, 64)
	b, err := New(cfgB, func(o *options) {
		o.onAccept = func(st *attest.Statement) {
			if st.Liveness == nil || st.Liveness.Peer == "" {
				return
			}
			mu.Lock()
			seen = append(seen, st.Liveness.HTTP)
			mu.Unlock()
			select {
			case got <- st.Liveness.HTTP:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	cfgA := testConfig(t)
	cfgA.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfgA.HTTPAddr = "0.0.0.0:0"
	cfgA.Bootstrap = []string{b.Addrs()[0]}
	a, err := New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, port, _ := net.SplitHostPort(a.httpLn.Addr().String())
	want := "http://127.0.0.1:" + port

	deadline := time.After(2 * time.Minute) // failure guard only
	for {
		var u string
		select {
		case u = <-got:
		case <-deadline:
			t.Fatalf("A never announced its observed address %s", want)
		}
		if strings.Contains(u, "0.0.0.0") || strings.Contains(u, "[::]") {
			t.Fatalf("A announced the wildcard %q", u)
		}
		if u == want {
			break
		}
	}
	if a.HTTPURL() != want {
		t.Fatalf("HTTPURL %q, want %q", a.HTTPURL(), want)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range seen {
		if u != "" && u != want && u != b.HTTPURL() {
			t.Errorf("unexpected announced URL %q", u)
		}
	}
}

// With nothing that could observe it, a wildcard listener with no public
// URL refuses to start, naming the flag.
func TestWildcardWithoutPeersRefusesToStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPAddr = "0.0.0.0:0"
	_, err := New(cfg)
	if !errors.Is(err, ErrConfig) || !errors.Is(err, announce.ErrWildcard) || !strings.Contains(err.Error(), "--public-url") {
		t.Fatalf("err %v, want a config error naming --public-url", err)
	}
	cfg.PublicURL = "https://mirror.example.org"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with a public URL: %v", err)
	}
	cfg.PublicURL = "https://mirror.example.org/app"
	if err := cfg.Validate(); !errors.Is(err, announce.ErrPublicURL) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("malformed public URL: %v", err)
	}
}

// A public URL is announced as given, whatever the listen address.
func TestPublicURLIsAnnounced(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.PublicURL = "https://Mirror.Example.org/"
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.HTTPURL() != "https://mirror.example.org" {
		t.Fatalf("HTTPURL %q", n.HTTPURL())
	}
}
