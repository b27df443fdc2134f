package node

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mirrornet/mirrornet/internal/announce"
	"github.com/mirrornet/mirrornet/internal/apphost"
	"github.com/mirrornet/mirrornet/internal/bitswapserve"
	"github.com/mirrornet/mirrornet/internal/dashboard"
	"github.com/mirrornet/mirrornet/internal/dnsupdate"
	"github.com/mirrornet/mirrornet/internal/gateway"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/httpedge"
	"github.com/mirrornet/mirrornet/internal/probe/service"
	"github.com/mirrornet/mirrornet/internal/redirect"
	"github.com/mirrornet/mirrornet/internal/store/ipfsbs"
	"github.com/mirrornet/mirrornet/internal/swbundle"
	"github.com/mirrornet/mirrornet/internal/tlsacme"
	"github.com/mirrornet/mirrornet/protocol"
)

// acmeDir holds certificates, keys and the ACME account in the data
// directory.
const acmeDir = "acme"

// ErrPortInUse reports a listen address that another process holds.
var ErrPortInUse = errors.New("node: address already in use")

// startHTTP serves the public, read-only HTTP side: the gateway (only for
// bundles this mirror holds), status, statements and metrics, behind the
// hardened edge (timeouts, concurrency caps, trusted proxies).
func (n *Node) startHTTP() error {
	listen := net.Listen
	if n.listenHTTP != nil {
		listen = n.listenHTTP
	}
	ln, err := listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: http %s: pick another --http address", ErrPortInUse, n.cfg.HTTPAddr)
		}
		return fmt.Errorf("node: listen on http %s: %w", n.cfg.HTTPAddr, err)
	}
	n.httpLn = ln
	bound, _ := netip.ParseAddrPort(ln.Addr().String())
	n.announcer, err = announce.New(n.cfg.publicURL(), bound)
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+protocol.HTTPStatusPath, n.serveStatus)
	mux.HandleFunc("GET "+protocol.HTTPStatementsPath, n.serveStatements)
	mux.HandleFunc("GET "+protocol.HTTPHoldingsPath, n.serveHoldings)
	mux.Handle("GET /{$}", dashboard.Index(http.HandlerFunc(n.serveIndex))) // browsers get the dashboard
	for _, f := range n.features {
		f.routes(mux)
	}

	// The gateway reads through the store (offline: a missing block is
	// an error, never a network fetch) and serves only held bundles and
	// the blocks inside them.
	hosts, subHosts := n.ownHosts()
	gw, err := gateway.New(gateway.Config{SubdomainHosts: subHosts}, ipfsbs.New(n.store), n.store.Held,
		gateway.WithHeldBlock(n.store.HeldBlock), gateway.WithLogger(n.log), gateway.WithMetricsRegisterer(n.registry))
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: gateway: %w", err)
	}
	limits := httpedge.DefaultConfig()
	if n.cfg.HTTPLimits != nil {
		limits = *n.cfg.HTTPLimits
	}
	limits.TrustedProxies, _ = httpedge.ParseCIDRs(n.cfg.TrustedProxies) // checked by Validate
	edge, err := httpedge.New(limits, httpedge.WithMetricsRegisterer(n.registry))
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: %w", err)
	}
	// Requests are routed by host name: the mirror's own hosts get the
	// mux and the gateway, app hosts and {cid}.ipfs subdomains their app.
	router, err := apphost.New(apphost.Config{
		Hosts: hosts, Apps: mustAppBindings(&n.cfg), Strict: n.cfg.publicURL() != "" || len(n.cfg.Apps) > 0,
	}, gw, appReleases{n}, mux, n.log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: %w", err)
	}
	for _, f := range n.features {
		if of, ok := f.(originFeature); ok {
			of.originRoutes(router.HandleOrigin)
		}
	}
	n.router = router
	// Any mirror sends a browser to the best mirror of an app or bundle.
	rd := redirect.New(redirectSource{n}, n.clock)
	rd.Routes(mux)
	router.SetBrowserRedirect(rd.Redirect)
	// App origins get the verifying service worker and, on a browser's
	// first visit, its bootstrap page (internal/swbundle).
	sw, err := swbundle.New(swbundle.Config{SubdomainHosts: subHosts},
		swbundle.WithOrigins(n.workerOrigin), swbundle.WithSeeds(n.workerSeeds),
		swbundle.WithReleases(n.releaseRecords), swbundle.WithLogger(n.log))
	if err != nil {
		ln.Close()
		return fmt.Errorf("node: service worker: %w", err)
	}
	// Features may wrap the whole handler (probe receipts on gateway
	// answers), on HTTP and HTTPS alike.
	handler := sw.Handler(router)
	for _, f := range n.features {
		handler = f.wrapHTTP(handler)
	}
	if n.cfg.HTTPSAddr != "" {
		if n.https, err = n.startHTTPS(edge, handler, ln); err != nil {
			ln.Close()
			return err
		}
		// ACME HTTP-01 challenges arrive on the HTTP side.
		handler = n.https.acme.HTTPHandler(handler)
	}
	n.httpSrv = edge.Server(handler)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	if !n.announcer.Fixed() {
		if err := n.observeHTTPAddr(); err != nil {
			return err
		}
	}
	return nil
}

// httpsSide is the HTTPS listener and its certificate manager.
type httpsSide struct {
	ln   net.Listener
	srv  *http.Server
	acme *tlsacme.Manager
}

// startHTTPS listens on HTTPSAddr and serves the router there, with
// certificates from ACME (internal/tlsacme) for the configured names only.
func (n *Node) startHTTPS(edge *httpedge.Edge, router http.Handler, httpLn net.Listener) (*httpsSide, error) {
	var roots *x509.CertPool
	if n.cfg.ACMECARoot != "" {
		pem, err := os.ReadFile(n.cfg.ACMECARoot)
		if err != nil {
			return nil, fmt.Errorf("node: acme-ca-root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("node: acme-ca-root: %s holds no PEM certificate", n.cfg.ACMECARoot)
		}
	}
	ln, err := net.Listen("tcp", n.cfg.HTTPSAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: https %s: pick another --https address", ErrPortInUse, n.cfg.HTTPSAddr)
		}
		return nil, fmt.Errorf("node: listen on https %s: %w", n.cfg.HTTPSAddr, err)
	}
	tcfg := tlsacme.Config{
		Names: n.cfg.tlsNames(mustAppBindings(&n.cfg)), CA: n.cfg.ACMECA, Email: n.cfg.ACMEEmail, CARoots: roots,
		Storage: filepath.Join(n.cfg.DataDir, acmeDir), WildcardCert: n.cfg.TLSCert, WildcardKey: n.cfg.TLSKey,
		HTTPPort: httpLn.Addr().(*net.TCPAddr).Port, TLSPort: ln.Addr().(*net.TCPAddr).Port,
	}
	if names := n.cfg.dnsNames(); len(names) > 0 {
		// The wildcard for {cid}.ipfs.HOST, over DNS-01 (Validate checked
		// the provider's config).
		dc, err := dnsupdate.LoadConfig(n.cfg.ACMEDNSConfig)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: acme-dns-config: %w", err)
		}
		p, err := dnsupdate.New(dc)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: acme-dns: %w", err)
		}
		tcfg.DNSNames, tcfg.DNSProvider, tcfg.DNSResolvers = names, p, p.Resolvers()
	}
	m, err := tlsacme.New(tcfg, tlsacme.WithEvents(n.tlsEvent))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	side := &httpsSide{ln: ln, srv: edge.Server(router), acme: m}
	side.srv.TLSConfig = m.TLSConfig()
	// Handshakes for unconfigured names fail by design: debug, not noise.
	side.srv.ErrorLog = slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	if err := m.Start(n.ctx); err != nil {
		ln.Close()
		m.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := side.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("https server stopped", "err", err)
		}
	}()
	n.log.Info("https listening", "addr", ln.Addr().String(), "names", n.cfg.tlsNames(mustAppBindings(&n.cfg)), "dns01", n.cfg.dnsNames())
	return side, nil
}

// tlsEvent logs certificate events and wakes waiters (tests).
func (n *Node) tlsEvent(event string, data map[string]any) {
	switch event {
	case "cert_obtained":
		n.log.Info("certificate obtained", "name", data["identifier"])
	case "cert_failed":
		n.log.Warn("certificate not obtained", "name", data["identifier"], "err", data["error"])
	}
	if f := n.onTLSEvent.Load(); f != nil {
		(*f)(event)
	}
}

// HTTPSAddr is the HTTPS listener's address, or "".
func (n *Node) HTTPSAddr() string {
	if n.https == nil {
		return ""
	}
	return n.https.ln.Addr().String()
}

// closeHTTP stops the HTTP and HTTPS servers and the certificate manager.
func (n *Node) closeHTTP() []error {
	var errs []error
	if n.httpSrv != nil {
		errs = append(errs, n.httpSrv.Close())
	}
	if n.https != nil {
		errs = append(errs, n.https.srv.Close(), n.https.acme.Close())
	}
	return errs
}

// observeHTTPAddr feeds the announcer the addresses peers observed this
// node at (identify's observed address), for a wildcard listen address
// with no public URL: the announced URL follows what most peers saw.
func (n *Node) observeHTTPAddr() error {
	sub, err := n.host.EventBus().Subscribe([]any{new(event.EvtPeerIdentificationCompleted), new(event.EvtPeerConnectednessChanged)})
	if err != nil {
		return fmt.Errorf("node: subscribe to identify events: %w", err)
	}
	n.log.Info("http listens on a wildcard address and no --public-url is set: announcing the address peers observe")
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case ev := <-sub.Out():
				changed := false
				switch e := ev.(type) {
				case event.EvtPeerIdentificationCompleted:
					if ip, ok := service.ConnIP(e.ObservedAddr); ok {
						changed = n.announcer.Observe(e.Peer.String(), ip)
					}
				case event.EvtPeerConnectednessChanged:
					if e.Connectedness != network.Connected {
						changed = n.announcer.Forget(e.Peer.String())
					}
				}
				if changed {
					n.log.Info("announced http URL changed", "http", n.HTTPURL())
					if err := n.writeInfo(); err != nil {
						n.log.Warn("update node info", "err", err)
					}
				}
			}
		}
	}()
	return nil
}

// MirrorStatus is one mirror in the status JSON.
type MirrorStatus struct {
	PeerID   string   `json:"peer_id"`
	State    string   `json:"state"`
	LastSeen string   `json:"last_seen"`
	Seq      uint64   `json:"seq"`
	Addrs    []string `json:"addrs"`
	HTTP     string   `json:"http"`
	Bundles  []string `json:"bundles"`
	Version  string   `json:"version"`
	Region   string   `json:"region,omitempty"`
	// Evidence is what retrieval probes show: verified, degraded, failing
	// or unverified (a mirror's own claims never make it verified).
	Evidence string `json:"evidence,omitempty"`
	// Domain is the failure domain others place the mirror in.
	Domain string `json:"domain,omitempty"`
}

// Status is the JSON served at protocol.HTTPStatusPath and printed by
// `mirrornet status --json`.
type Status struct {
	Self    SelfStatus     `json:"self"`
	Mirrors []MirrorStatus `json:"mirrors"`
	// Bitswap is the serving side per connected peer (wants open, bytes
	// outstanding, oldest open want); see package bitswapserve.
	Bitswap bitswapserve.Report `json:"bitswap"`
}

// SelfStatus describes the answering node.
type SelfStatus struct {
	PeerID  string   `json:"peer_id"`
	Addrs   []string `json:"addrs"`
	HTTP    string   `json:"http"`
	Version string   `json:"version"`
	Profile string   `json:"profile"`
	Peers   int      `json:"peers_connected"`
	Bundles []string `json:"bundles"`
	// Refused lists the followed bundles this mirror refuses to fetch and
	// why (absent when none).
	Refused []RefusedBundle `json:"refused,omitempty"`
}

// Status reports this node and every mirror it knows, itself included.
func (n *Node) Status() Status {
	st := Status{Mirrors: []MirrorStatus{}, Bitswap: n.bitswapReport()}
	n.statusWith(func(s SelfStatus) { st.Self = s }, func(m MirrorStatus) bool {
		// The caller owns what Status returns: copy what statusWith shares.
		m.Addrs, m.Bundles = slices.Clone(m.Addrs), slices.Clone(m.Bundles)
		st.Mirrors = append(st.Mirrors, m)
		return true
	})
	return st
}

// statusWith hands this node's own status to self, then each mirror it
// knows to each (in peer ID order) instead of collecting them; each
// returns false to stop. A MirrorStatus's Addrs and Bundles are the
// view's own (read them, do not modify or keep them).
func (n *Node) statusWith(self func(SelfStatus), each func(MirrorStatus) bool) {
	self(n.selfStatus())
	n.mirrorsWith(each)
}

// mirrorsWith is statusWith's second half: each mirror of the view, with
// its probe evidence.
func (n *Node) mirrorsWith(each func(MirrorStatus) bool) {
	ms := n.view.Mirrors(n.clock())
	ev := map[string]MirrorEvidence{}
	if pf := n.probeFeatureOf(); pf != nil {
		for _, e := range pf.evidence().Mirrors {
			ev[e.PeerID] = e
		}
	}
	for _, m := range ms {
		s := mirrorStatus(m)
		if e, ok := ev[s.PeerID]; ok {
			s.Evidence, s.Domain = e.State, e.Domain
		}
		if !each(s) {
			break
		}
	}
}

func mirrorStatus(m health.Mirror) MirrorStatus {
	s := MirrorStatus{
		PeerID: m.Peer.String(), State: string(m.State), LastSeen: m.LastSeen.UTC().Format(time.RFC3339Nano),
		Addrs: []string{}, Bundles: []string{},
	}
	if l := m.Liveness; l != nil {
		s.Seq, s.HTTP, s.Version, s.Region = l.Seq, l.HTTP, l.Version, l.Region
		// Shared, not copied: a status snapshot of a view at its byte
		// budget would otherwise copy every bundle list once per build.
		if l.Addrs != nil {
			s.Addrs = l.Addrs
		}
	}
	if m.Bundles != nil {
		s.Bundles = m.Bundles
	}
	return s
}

func (n *Node) serveStatements(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", protocol.StatementsContentType)
	w.Header().Set("Cache-Control", "no-store")
	_ = writeStatements(w, n.statements())
}

func (n *Node) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	self := n.selfStatus()
	var b strings.Builder
	fmt.Fprintf(&b, "mirrornet mirror %s (%s)\n\n", self.PeerID, Version)
	fmt.Fprintf(&b, "bundles held: %d\n", len(self.Bundles))
	for _, c := range self.Bundles {
		fmt.Fprintf(&b, "  %s  %s\n", c, subdomainURL(n.HTTPURL(), c))
	}
	fmt.Fprintf(&b, "\nstatus: %s\nstatements: %s\nmetrics: /metrics\n", protocol.HTTPStatusPath, protocol.HTTPStatementsPath)
	_, _ = w.Write([]byte(b.String()))
}

// subdomainURL is where a browser opens bundle c on its own origin.
func subdomainURL(base, c string) string {
	_, port, err := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	if err != nil {
		return base + "/ipfs/" + c + "/"
	}
	return "http://" + c + ".ipfs.localhost:" + port + "/"
}

func jsonMarshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// selfStatus describes this node (no mirror of the view is read).
func (n *Node) selfStatus() SelfStatus {
	me := SelfStatus{
		PeerID: n.id.String(), Addrs: n.Addrs(), HTTP: n.HTTPURL(), Version: Version,
		Profile: n.prof.Name, Peers: len(n.host.Network().Peers()), Bundles: []string{},
	}
	for _, b := range n.store.Bundles() {
		if b.State == "held" {
			me.Bundles = append(me.Bundles, b.Root.String())
		}
	}
	me.Refused = n.refusedBundles()
	return me
}
