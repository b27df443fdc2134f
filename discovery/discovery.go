// Package discovery finds other mirrors with no central coordinator: the
// bootstrap peers an operator names, mDNS on a LAN, and a Kademlia DHT under
// mirrornet's own protocol prefix for wide-area peer routing.
//
// A Discovery owns its goroutines: New starts them, Close stops them and
// waits. A lone node with no bootstrap peers starts fine and waits to be
// found.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/protocol"
)

// Namespace is the rendezvous string mirrors advertise under in the DHT.
const Namespace = "mirrornet/mirrors/1"

// ErrBadBootstrap reports a bootstrap address that is not a usable multiaddr.
var ErrBadBootstrap = errors.New("discovery: bad bootstrap address")

// Config says which mechanisms run.
type Config struct {
	// Bootstrap peers: full multiaddrs ending in /p2p/PEER-ID.
	Bootstrap []peer.AddrInfo
	// BootstrapURLs are HTTP base URLs of mirrors (http://mirror-0:8080):
	// their peer ID and addresses are read from the mirror's status
	// endpoint, so a compose file or script needs no peer IDs.
	BootstrapURLs []string
	// MDNS announces and listens on the LAN (needs a multicast interface).
	MDNS bool
	// DHT runs a Kademlia DHT with protocol prefix protocol.DHTPrefix.
	DHT bool
	// Retry is how often unreachable bootstrap peers are tried again and
	// the DHT is asked for more mirrors. Default 10 s.
	Retry time.Duration
	// MinPeers: below this many connections, discovery keeps looking.
	// Default 8.
	MinPeers int
}

// ParseBootstrap splits bootstrap addresses into multiaddrs ending in
// /p2p/PEER-ID and HTTP(S) base URLs of mirrors. The error names the
// address that is wrong.
func ParseBootstrap(addrs []string) ([]peer.AddrInfo, []string, error) {
	var out []peer.AddrInfo
	var urls []string
	seen := map[peer.ID]int{}
	for _, s := range addrs {
		if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
			u, err := url.Parse(s)
			if err != nil || u.Host == "" {
				return nil, nil, fmt.Errorf("%w %q: not a usable URL", ErrBadBootstrap, s)
			}
			urls = append(urls, strings.TrimRight(s, "/"))
			continue
		}
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, nil, fmt.Errorf("%w %q: %v", ErrBadBootstrap, s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return nil, nil, fmt.Errorf("%w %q: needs a /p2p/PEER-ID suffix (or give the mirror's HTTP URL): %v", ErrBadBootstrap, s, err)
		}
		if i, ok := seen[ai.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		seen[ai.ID] = len(out)
		out = append(out, *ai)
	}
	return out, urls, nil
}

// resolveURL asks a mirror's HTTP side who it is: its peer ID and
// multiaddrs, from the status endpoint.
func resolveURL(ctx context.Context, base string) (peer.AddrInfo, error) {
	var ai peer.AddrInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+protocol.HTTPStatusPath, nil)
	if err != nil {
		return ai, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ai, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ai, fmt.Errorf("%s answered %s", base, resp.Status)
	}
	var st struct {
		Self struct {
			PeerID string   `json:"peer_id"`
			Addrs  []string `json:"addrs"`
		} `json:"self"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return ai, fmt.Errorf("%s: not a mirrornet status: %v", base, err)
	}
	id, err := peer.Decode(st.Self.PeerID)
	if err != nil {
		return ai, fmt.Errorf("%s: bad peer ID: %v", base, err)
	}
	ai.ID = id
	for _, s := range st.Self.Addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if a, err := peer.AddrInfoFromP2pAddr(m); err == nil && a.ID == id {
			ai.Addrs = append(ai.Addrs, a.Addrs...)
		}
	}
	if len(ai.Addrs) == 0 {
		return ai, fmt.Errorf("%s: announces no addresses", base)
	}
	return ai, nil
}

// Discovery runs the configured mechanisms on a host.
type Discovery struct {
	h      host.Host
	cfg    Config
	log    *slog.Logger
	dht    *dht.IpfsDHT
	mdns   mdns.Service
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	lanMu sync.Mutex
	// lan holds mirrors found by mDNS that no dial has reached yet, with
	// when they were found. libp2p's mDNS reports a mirror once per
	// record lifetime (about an hour), so a first dial that fails (the
	// mirror still starting, a machine too busy to finish a handshake
	// within the dial timeout) would otherwise lose it until then: the
	// loop dials them again every Retry, for lanRetryFor.
	lan map[peer.ID]lanPeer
}

type lanPeer struct {
	ai    peer.AddrInfo
	found time.Time
}

const (
	// lanRetryFor is how long a LAN mirror that could not be reached is
	// dialled again; mDNS reports it afresh after that.
	lanRetryFor = 10 * time.Minute
	// maxLANPending bounds the LAN mirrors waiting for a retry: a LAN full
	// of bogus announcements costs at most this many dials per Retry.
	maxLANPending = 64
)

// New starts discovery on h. The caller closes it before closing h.
func New(h host.Host, cfg Config, log *slog.Logger) (*Discovery, error) {
	if cfg.Retry <= 0 {
		cfg.Retry = 10 * time.Second
	}
	if cfg.MinPeers <= 0 {
		cfg.MinPeers = 8
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Discovery{h: h, cfg: cfg, log: log.With("component", "discovery"), ctx: ctx, cancel: cancel, lan: map[peer.ID]lanPeer{}}
	if cfg.DHT {
		kad, err := dht.New(h,
			dht.ProtocolPrefix(protocol.DHTPrefix),
			dht.Mode(dht.ModeServer),
			dht.BootstrapPeers(cfg.Bootstrap...),
		)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("discovery: start DHT: %w", err)
		}
		d.dht = kad
	}
	if cfg.MDNS {
		d.mdns = mdns.NewMdnsService(h, protocol.MDNSServiceName, notifee{d})
		if err := d.mdns.Start(); err != nil {
			// A host without a multicast interface still works.
			d.log.Warn("mDNS unavailable", "err", err)
			d.mdns = nil
		}
	}
	d.wg.Add(1)
	go d.loop()
	return d, nil
}

// DHT returns the DHT, or nil when it is off. It is also a content router
// (Provide, FindProvidersAsync).
func (d *Discovery) DHT() *dht.IpfsDHT { return d.dht }

// Close stops discovery and waits for its goroutines. Safe to call twice.
func (d *Discovery) Close() error {
	var err error
	d.once.Do(func() {
		d.cancel()
		if d.mdns != nil {
			err = errors.Join(err, d.mdns.Close())
		}
		d.wg.Wait()
		if d.dht != nil {
			err = errors.Join(err, d.dht.Close())
		}
	})
	return err
}

func (d *Discovery) loop() {
	defer d.wg.Done()
	d.connectBootstrap()
	if d.dht != nil {
		if err := d.dht.Bootstrap(d.ctx); err != nil {
			d.log.Warn("DHT bootstrap", "err", err)
		}
	}
	t := time.NewTicker(d.cfg.Retry)
	defer t.Stop()
	for {
		if d.dht != nil {
			d.walkDHT()
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		d.connectBootstrap()
		d.connectLAN()
	}
}

// connectLAN dials again, in parallel, the LAN mirrors found by mDNS that
// are not connected yet, and forgets those connected or found more than
// lanRetryFor ago.
func (d *Discovery) connectLAN() {
	now := time.Now()
	var todo []peer.AddrInfo
	d.lanMu.Lock()
	for id, lp := range d.lan {
		switch {
		case d.h.Network().Connectedness(id) == network.Connected, now.Sub(lp.found) > lanRetryFor:
			delete(d.lan, id)
		default:
			todo = append(todo, lp.ai)
		}
	}
	d.lanMu.Unlock()
	var wg sync.WaitGroup
	for _, ai := range todo {
		wg.Go(func() { d.dialLAN(ai) })
	}
	wg.Wait()
}

// dialLAN dials a mirror found on the LAN; once connected it is no
// longer retried.
func (d *Discovery) dialLAN(ai peer.AddrInfo) {
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	defer cancel()
	err := d.h.Connect(ctx, ai)
	if err != nil {
		if d.ctx.Err() == nil {
			d.log.Info("mDNS peer unreachable; will retry", "peer", ai.ID, "err", err)
		}
		return
	}
	d.lanMu.Lock()
	delete(d.lan, ai.ID)
	d.lanMu.Unlock()
}

// connectBootstrap dials every bootstrap peer not yet connected, in
// parallel, and logs one line per unreachable one.
func (d *Discovery) connectBootstrap() {
	var wg sync.WaitGroup
	for _, u := range d.cfg.BootstrapURLs {
		wg.Add(1)
		go func(u string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
			defer cancel()
			ai, err := resolveURL(ctx, u)
			if err == nil {
				if ai.ID == d.h.ID() || d.h.Network().Connectedness(ai.ID) == network.Connected {
					return
				}
				err = d.h.Connect(ctx, ai)
			}
			if err != nil && d.ctx.Err() == nil {
				d.log.Warn("bootstrap mirror unreachable; will retry", "url", u, "err", err)
			}
		}(u)
	}
	for _, ai := range d.cfg.Bootstrap {
		if ai.ID == d.h.ID() || d.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
			defer cancel()
			if err := d.h.Connect(ctx, ai); err != nil && d.ctx.Err() == nil {
				d.log.Warn("bootstrap peer unreachable; will retry", "peer", ai.String(), "err", err)
			}
		}(ai)
	}
	wg.Wait()
}

// walkDHT advertises this mirror and connects to mirrors found under the
// namespace while the node has few connections.
func (d *Discovery) walkDHT() {
	if len(d.dht.RoutingTable().ListPeers()) == 0 {
		return
	}
	rd := drouting.NewRoutingDiscovery(d.dht)
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	if _, err := rd.Advertise(ctx, Namespace); err != nil && d.ctx.Err() == nil {
		d.log.Debug("DHT advertise", "err", err)
	}
	if len(d.h.Network().Peers()) >= d.cfg.MinPeers {
		return
	}
	ch, err := rd.FindPeers(ctx, Namespace)
	if err != nil {
		return
	}
	for ai := range ch {
		if ai.ID == d.h.ID() || len(ai.Addrs) == 0 || d.h.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_ = d.h.Connect(cctx, ai)
		ccancel()
	}
}

type notifee struct{ d *Discovery }

// HandlePeerFound connects to a mirror announced on the LAN; if that
// fails, the loop tries again (see Discovery.lan).
func (n notifee) HandlePeerFound(ai peer.AddrInfo) {
	d := n.d
	if ai.ID == d.h.ID() || d.ctx.Err() != nil {
		return
	}
	d.lanMu.Lock()
	if _, ok := d.lan[ai.ID]; !ok && len(d.lan) >= maxLANPending {
		// Make room by forgetting the mirror found longest ago.
		var oldest peer.ID
		for id, lp := range d.lan {
			if oldest == "" || lp.found.Before(d.lan[oldest].found) {
				oldest = id
			}
		}
		delete(d.lan, oldest)
	}
	d.lan[ai.ID] = lanPeer{ai: ai, found: time.Now()}
	d.lanMu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.dialLAN(ai)
	}()
}
