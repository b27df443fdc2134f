// Package node is mirrornet's composition root: it builds the libp2p host,
// gossipsub with its validators, the health view, the block store,
// replication, discovery and the HTTP and admin servers, and owns every
// goroutine they need. cmd/mirrornet turns flags into a Config and calls
// New; nothing else imports this package.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/discovery"
	"github.com/mirrornet/mirrornet/internal/announce"
	"github.com/mirrornet/mirrornet/internal/apphost"
	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/datadir"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/internal/holdings"
	"github.com/mirrornet/mirrornet/internal/p2plimits"
	"github.com/mirrornet/mirrornet/internal/replicate"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/yamux"
	"github.com/mirrornet/mirrornet/protocol"
)

// Option supplies a dependency.
type Option func(*options)

type options struct {
	log      *slog.Logger
	clock    func() time.Time
	host     host.Host
	key      crypto.PrivKey
	registry *prometheus.Registry
	// onAccept, if set, sees every statement the node accepts (tests and
	// benchmarks measure propagation with it). Called with the node's lock
	// held: it must not block.
	onAccept func(*attest.Statement)
	// blackhole, if set, makes the node drop gossip forwarded by peers
	// for which it returns true, like a blackhole route (tests partition
	// mocknet networks with it: mocknet can leave a stream alive on a
	// connection it has already closed).
	blackhole func(from peer.ID) bool
	// listenAdmin, if set, replaces net.Listen("unix", path) for the admin
	// socket (tests in a synctest bubble pass an in-memory listener: a
	// goroutine blocked in a real Accept keeps virtual time from moving).
	listenAdmin func(path string) (net.Listener, error)
	// listenHTTP, if set, replaces net.Listen for the public HTTP side, and
	// httpTransport, if set, carries the node's own HTTP requests to other
	// mirrors (retrieval probes). Tests in a synctest bubble pass an
	// in-memory network: a goroutine blocked in real network I/O keeps
	// virtual time from moving.
	listenHTTP    func(network, addr string) (net.Listener, error)
	httpTransport http.RoundTripper
	// onVerdict, if set, sees every gossiped statement with the error it
	// was refused for (nil: accepted).
	onVerdict func(*attest.Statement, error)
	// inlineHoldings, if set, replaces defaultInlineHoldings (tests).
	inlineHoldings *int
	// keepFeature, if set, is asked for every feature by name after it is
	// built; a feature it refuses is closed and left out (simulations of
	// a thousand mirrors in one process run the liveness core without the
	// status page, retrieval probes, payouts and releases).
	keepFeature func(name string) bool
	// tuneGossip, if set, changes gossipsub's parameters before start
	// (benchmarks compare mesh degrees).
	tuneGossip func(*pubsub.GossipSubParams)
}

// WithStatementHook calls f for every statement that arrives by gossip,
// after the verdict, with the statement (nil if it did not verify, or was
// refused before its signature was checked) and the reason it was not
// accepted (nil if it was). Attack tests count verdicts
// with it. f runs on gossipsub's validation goroutines: it must not block.
func WithStatementHook(f func(st *attest.Statement, err error)) Option {
	return func(o *options) { o.onVerdict = f }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the wall clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithHost runs the node on an existing host (tests use mocknet hosts). The
// node does not close a host it was given. The host's key must be given with
// WithKey.
func WithHost(h host.Host, key crypto.PrivKey) Option {
	return func(o *options) { o.host, o.key = h, key }
}

// WithRegistry registers metrics on r instead of a fresh registry.
func WithRegistry(r *prometheus.Registry) Option { return func(o *options) { o.registry = r } }

// Node is a running mirror.
type Node struct {
	cfg   Config
	prof  health.Profile
	log   *slog.Logger
	clock func() time.Time

	key       crypto.PrivKey
	id        peer.ID
	host      host.Host
	ownsHost  bool
	ps        *pubsub.PubSub
	topics    map[string]*pubsub.Topic
	subs      []*pubsub.Subscription
	disc      *discovery.Discovery
	store     *store.Store
	repl      *replicate.Replicator
	follow    *replicate.Follower // fetches of followed bundles, retried
	metrics   *metrics
	registry  *prometheus.Registry
	onAccept  func(*attest.Statement)
	onVerdict func(*attest.Statement, error)
	blackhole func(from peer.ID) bool
	features  []feature
	// inlineHoldings: see defaultInlineHoldings.
	inlineHoldings int
	// tuneGossip: see options.
	tuneGossip func(*pubsub.GossipSubParams)

	// listenAdmin, listenHTTP, httpTransport: see options.
	listenAdmin   func(path string) (net.Listener, error)
	listenHTTP    func(network, addr string) (net.Listener, error)
	httpTransport http.RoundTripper

	// kick asks the heartbeat loop to publish a fresh liveness statement
	// soon (a bundle became held or was dropped).
	kick chan struct{}
	// gossipBytes counts gossipsub traffic.
	gossipBytes gossipMeter
	// live is the failure detector's wiring (liveness.go).
	live livenessWiring
	// held is the holdings pull protocol's wiring (holdings.go).
	held holdingsWiring
	// appScore, if set by a feature's constructor, is gossipsub's
	// application-specific score (P5) for a peer.
	appScore func(peer.ID) float64

	httpSrv *http.Server
	httpLn  net.Listener
	https   *httpsSide // nil: no HTTPS listener
	// onTLSEvent, if set (tests), sees every certificate event.
	onTLSEvent atomic.Pointer[func(event string)]
	announcer  *announce.Announcer // the HTTP URL to announce; nil: no HTTP side
	router     *apphost.Router     // routes HTTP requests by host name
	adminSrv   *http.Server
	adminLn    net.Listener
	syncQueue  chan peer.ID

	// view is safe for concurrent use: read it without mu (readers that
	// list it share a snapshot and never hold up the validator). accept
	// holds mu around the sequence guard and view.Add together.
	view *health.View

	mu    sync.Mutex // guards the fields below
	guard *attest.SeqGuard
	seq   uint64
	// repair wakes the maintenance loop to re-fetch bundles that lost a
	// block found corrupt (store.Options.OnCorrupt).
	repair chan struct{}
	synced map[peer.ID]time.Time
	// lastSync is when a sync with some peer last completed.
	lastSync time.Time
	// bestDelay is the smallest delivery delay (receive time minus signed
	// time) of another mirror's liveness statement this heartbeat.
	bestDelay time.Duration
	importing int
	// lastPublished is when this node last published its liveness.
	lastPublished time.Time
	// lastBody is the content of that statement (bodyKey), refreshAt when
	// the next refresh is due.
	lastBody  string
	refreshAt time.Time
	// refresh paces the liveness statements (TTLs, refresh times).
	refresh health.RefreshSchedule
	// published counts this node's liveness statements (benchmarks).
	published atomic.Int64
	// rng spreads refresh times.
	rng *rand.Rand

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	left      bool
	// lock holds the data directory for this node's lifetime.
	lock *datadir.Lock
}

// New builds and starts a node. On error everything started is stopped
// again. The node runs until Close or Leave.
func New(cfg Config, opts ...Option) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{clock: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	// An --app host follows its app.
	for _, b := range mustAppBindings(&cfg) {
		cfg.Follow = append(cfg.Follow, b.App)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = &Node{
		cfg: cfg, prof: cfg.profile(), log: o.log.With("component", "node"), clock: o.clock,
		topics: map[string]*pubsub.Topic{}, registry: o.registry, onAccept: o.onAccept, onVerdict: o.onVerdict, blackhole: o.blackhole, listenAdmin: o.listenAdmin,
		listenHTTP: o.listenHTTP, httpTransport: o.httpTransport,
		kick:  make(chan struct{}, 1),
		guard: attest.NewSeqGuard(), repair: make(chan struct{}, 1), synced: map[peer.ID]time.Time{},
		syncQueue: make(chan peer.ID, 256), bestDelay: maxDelay, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		ctx: ctx, cancel: cancel, lock: lock, inlineHoldings: defaultInlineHoldings, tuneGossip: o.tuneGossip,
	}
	if o.inlineHoldings != nil {
		n.inlineHoldings = *o.inlineHoldings
	}
	n.view = health.New(n.prof.Health)
	// Each signer may have one statement of each kind accepted per half
	// heartbeat: an honest mirror publishes one per heartbeat.
	n.guard.SetMinInterval(n.prof.Heartbeat / 2)
	started := n
	defer func() {
		if err != nil {
			started.Close()
		}
	}()

	if o.host != nil {
		n.host, n.key = o.host, o.key
		if n.key == nil {
			return nil, errors.New("node: WithHost needs the host's private key")
		}
	} else {
		key, created, err := loadOrCreateIdentity(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		if err := checkIdentity(cfg.DataDir, key); err != nil {
			return nil, err
		}
		if created {
			n.log.Info("created a new identity", "file", filepath.Join(cfg.DataDir, identityFile))
		}
		n.key = key
		lim := p2plimits.DefaultConfig()
		lim.ConnsLow, lim.ConnsHigh = cmp.Or(cfg.ConnsLow, lim.ConnsLow), cmp.Or(cfg.ConnsHigh, lim.ConnsHigh)
		lopts, err := p2plimits.Options(lim)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		h, err := libp2p.New(append(lopts, libp2p.Identity(key), libp2p.ListenAddrStrings(cfg.Listen...),
			yamux.Option(yamux.DefaultTransport))...)
		if err != nil {
			return nil, fmt.Errorf("node: start libp2p host on %v: %w", cfg.Listen, err)
		}
		n.host, n.ownsHost = h, true
	}
	n.id = n.host.ID()
	n.held.own = holdings.NewOwn(n.key, n.id.String())
	n.view.SetLimits(health.Limits{
		MaxMirrors: cmp.Or(cfg.MaxMirrors, health.DefaultMaxMirrors),
		MaxBytes:   cmp.Or(cfg.MaxStatementBytes, health.DefaultMaxBytes),
		// Mirrors we hold a connection to are not strangers: the
		// connection manager bounds how many there are.
		Protected: func(p peer.ID) bool { return n.host.Network().Connectedness(p) == network.Connected },
	})
	n.seq = uint64(n.clock().UnixMilli())
	n.metrics = newMetrics(n)

	st, err := store.Open(filepath.Join(cfg.DataDir, blocksDir), store.Options{MaxBytes: cfg.MaxStorage, OnCorrupt: n.corruptBlock})
	if err != nil {
		return nil, fmt.Errorf("node: open block store: %w", err)
	}
	n.store = st

	for _, ctor := range featureCtors {
		f, err := ctor(n)
		if err != nil {
			return nil, err
		}
		if o.keepFeature != nil && !o.keepFeature(f.name()) {
			if err := f.close(); err != nil {
				return nil, fmt.Errorf("node: %s: %w", f.name(), err)
			}
			continue
		}
		n.features = append(n.features, f)
	}
	if err := n.startGossip(); err != nil {
		return nil, err
	}
	n.host.SetStreamHandler(protocol.SyncProtocolID, n.handleSync)
	if err := n.startLiveness(); err != nil {
		return nil, err
	}
	if err := n.startHoldings(); err != nil {
		return nil, err
	}
	n.host.Network().Notify(connNotifee{n})

	boot, urls, _ := discovery.ParseBootstrap(cfg.Bootstrap)
	n.disc, err = discovery.New(n.host, discovery.Config{Bootstrap: boot, BootstrapURLs: urls, MDNS: cfg.MDNS, DHT: cfg.DHT, Retry: 5 * n.prof.Heartbeat}, o.log)
	if err != nil {
		return nil, err
	}

	n.repl, err = replicate.New(n.host, n.store, holderFinder{n}, replicate.DefaultConfig(), replicate.WithLogger(o.log))
	if err != nil {
		return nil, fmt.Errorf("node: start replication: %w", err)
	}
	n.follow, err = replicate.NewFollower(n.repl, n.store,
		replicate.FollowConfig{Retry: 2 * n.prof.Heartbeat, MaxRetry: max(30*time.Second, 2*n.prof.Heartbeat), MaxStorage: cfg.MaxStorage},
		replicate.FollowHooks{
			Held:    n.announceHeld,
			Refused: func(_ cid.Cid, reason string) { n.metrics.refused.WithLabelValues(reason).Inc() },
		}, o.log)
	if err != nil {
		return nil, fmt.Errorf("node: start replication: %w", err)
	}

	if cfg.HTTPAddr != "" {
		if err := n.startHTTP(); err != nil {
			return nil, err
		}
	}
	if err := n.startAdmin(); err != nil {
		return nil, err
	}
	if err := n.writeInfo(); err != nil {
		return nil, err
	}
	for _, f := range cfg.Follow {
		if protocol.IsAppID(f) {
			continue // the releases feature follows apps
		}
		c, _ := cid.Decode(f)
		if err := n.Follow(c); err != nil {
			return nil, err
		}
	}
	// Resume fetches of bundles followed before a restart.
	for _, b := range n.store.Bundles() {
		if b.State != "held" {
			n.startFetch(b.Root)
		}
	}

	n.wg.Add(4 + len(n.features))
	n.publishLiveness(protocol.StateUp)
	go n.heartbeatLoop()
	go func() {
		defer n.wg.Done()
		n.live.det.Run(n.ctx)
	}()
	go n.syncLoop()
	go n.maintenanceLoop()
	for _, f := range n.features {
		go func() {
			defer n.wg.Done()
			f.run(n.ctx)
		}()
	}
	n.log.Info("mirror started", "peer", n.id, "addrs", n.Addrs(), "http", n.HTTPURL(), "profile", n.prof.Name)
	return n, nil
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.id }

// Host is the libp2p host.
func (n *Node) Host() host.Host { return n.host }

// HTTPURL is the announced base URL of the public HTTP side, or "" (no HTTP
// side, or a wildcard listen address no peer has observed yet).
func (n *Node) HTTPURL() string {
	if n.announcer == nil {
		return ""
	}
	return n.announcer.URL()
}

// Addrs are the node's full multiaddrs, /p2p/ID included.
func (n *Node) Addrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.id.String())
	}
	return out
}

// Store is the node's block store.
func (n *Node) Store() *store.Store { return n.store }

func (n *Node) writeInfo() error {
	info := Info{PeerID: n.id.String(), Addrs: n.Addrs(), HTTP: n.HTTPURL()}
	if info.Addrs == nil {
		info.Addrs = []string{}
	}
	raw, err := jsonMarshalIndent(info)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(n.cfg.DataDir, nodeInfoFile), raw, 0o644); err != nil {
		return fmt.Errorf("node: write %s: %w", nodeInfoFile, err)
	}
	return nil
}

// Leave announces a graceful departure (a signed "leaving" statement), gives
// it a moment to reach peers, and closes the node.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	n.left = true
	wait := n.lastPublished.Add(minPublishGap(n.prof.Heartbeat)).Sub(n.clock())
	n.mu.Unlock()
	// Peers ignore a statement that follows the last one too closely
	// (rate limit): leave no sooner than an announcement could go.
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	n.publishLiveness(protocol.StateLeaving)
	// Publishing only queues the message; give the per-peer writers a
	// bounded moment to flush it before the connections close.
	grace := n.prof.Heartbeat
	if grace > time.Second {
		grace = time.Second
	}
	t := time.NewTimer(grace)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	return n.Close()
}

// Close stops everything in reverse order of construction and waits for
// every goroutine. Safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		if n.adminSrv != nil {
			errs = append(errs, n.adminSrv.Close())
			os.Remove(filepath.Join(n.cfg.DataDir, adminSocket))
		}
		errs = append(errs, n.closeHTTP()...)
		n.wg.Wait()
		for i := len(n.features) - 1; i >= 0; i-- {
			if err := n.features[i].close(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.features[i].name(), err))
			}
		}
		if n.follow != nil {
			errs = append(errs, n.follow.Close())
		}
		if n.repl != nil {
			errs = append(errs, n.repl.Close())
		}
		if n.disc != nil {
			errs = append(errs, n.disc.Close())
		}
		for _, s := range n.subs {
			s.Cancel()
		}
		for _, t := range n.topics {
			t.Close()
		}
		if n.host != nil {
			n.host.RemoveStreamHandler(protocol.SyncProtocolID)
		}
		if n.live.ping != nil {
			n.live.ping.Stop()
		}
		if n.held.svc != nil {
			n.held.svc.Close()
		}
		if n.ownsHost && n.host != nil {
			errs = append(errs, n.host.Close())
		}
		if n.store != nil {
			errs = append(errs, n.store.Close())
		}
		errs = append(errs, n.lock.Release())
		for _, e := range errs {
			if e != nil && !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) {
				n.closeErr = errors.Join(n.closeErr, e)
			}
		}
	})
	return n.closeErr
}
