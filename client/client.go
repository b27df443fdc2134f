// Package client is mirrornet's light client: given the CID of an app bundle
// it finds healthy mirrors, downloads the bundle's blocks from several of
// them at once, verifies every block against its CID, and writes the app to
// a directory, a CARv1 file or an http.Handler.
//
// # Trust
//
// Nothing a mirror says is trusted. Which mirrors to ask comes from signed
// liveness statements (package attest) gathered from every bootstrap mirror
// and from the mirrors those statements name, keeping the highest sequence
// number per signer, plus the bootstrap mirrors themselves, probed with
// HEAD /ipfs/{cid} and Cache-Control: only-if-cached. A lying bootstrap can
// only hide mirrors another source also knows, or waste some of our time:
// unsigned or forged statements are dropped and every byte is verified.
//
// # Fetching
//
// The DAG is walked from the root in discovery (DAG) order. Wanted blocks sit
// in one queue; each is fetched from the best-ranked mirror with a free slot
// (ranked by EWMAs of time to first byte, throughput and failures, with
// untried mirrors tried first). A dag-pb node whose subtree is small (its
// parent link's Tsize at most Options.SubtreeBytes: a small file or
// directory, a HAMT shard) comes with that subtree in one CARv1
// (format=car, dag-scope=all), verified block by block in depth-first
// order; other dag-pb nodes come as one-block CARs (dag-scope=block). Every
// CAR is checked for version, single root, order, missing and extraneous
// blocks and a byte budget. Raw leaves come as format=raw and resume with an
// HTTP Range request when a mirror dies midway. A request that runs late
// (a multiple of its mirror's observed latency) or holds up the tail of the
// download is hedged on another mirror; the first verified answer wins and
// the loser is cancelled. A mirror that stalls, errors or sends bytes that do
// not match is dropped with its reason and its blocks go back to the queue;
// verified blocks are never fetched again.
//
// # Fail closed
//
// If no mirror delivers a verified copy, [Get] returns an error naming every
// mirror tried and what went wrong, and nothing is written. [Get] holds
// the fetched bundle in memory; [Download], [GetDir] and [GetCAR] keep it
// in a spool file on disk (memory in proportion to the number of blocks,
// not their bytes) that an interrupted download resumes from.
//
// Typical use:
//
//	res, err := client.Get(ctx, root, client.Options{Bootstrap: []string{"http://127.0.0.1:8080"}})
//	if err != nil { ... }
//	err = res.WriteDir("app")
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Errors returned by this package.
var (
	// ErrNoMirror: no mirror delivered a verified copy; the error text names
	// each mirror tried and why it was dropped.
	ErrNoMirror = errors.New("client: no mirror delivered")
	// ErrBootstrap: a bootstrap address is neither an http(s) URL nor a
	// libp2p multiaddr with /p2p/.
	ErrBootstrap = errors.New("client: malformed bootstrap address")
	// ErrNoBootstrap: Options.Bootstrap is empty.
	ErrNoBootstrap = errors.New("client: no bootstrap mirror given")
	// ErrUnsupported: the DAG uses a codec or UnixFS feature the client
	// cannot walk or write.
	ErrUnsupported = errors.New("client: unsupported DAG")
	// ErrExists: the output path already exists.
	ErrExists = errors.New("client: output path exists")
	// ErrOptions: an option is out of range.
	ErrOptions = errors.New("client: invalid options")
)

// Protocol limits the client enforces on every response.
const (
	// MaxBlockSize bounds one block (the trustless gateway's limit; bundle
	// blocks are at most 1 MiB plus framing).
	MaxBlockSize = 2 << 20
	// maxCARHeader bounds a CAR header (one root).
	maxCARHeader = 1 << 10
)

// Options configure [Get]. The zero value of every field but Bootstrap is
// replaced by its documented default.
type Options struct {
	// Bootstrap lists mirrors to start from: HTTP base URLs
	// ("http://127.0.0.1:8080") or libp2p multiaddrs ending in /p2p/ID
	// (statements then come over protocol.SyncProtocolID from an ephemeral
	// libp2p host; the client joins no gossip mesh).
	Bootstrap []string
	// HTTPClient makes every HTTP request. Default: a client on a clone of
	// http.DefaultTransport, no overall timeout (StallTimeout bounds
	// each response instead).
	HTTPClient *http.Client
	// Logger gets debug events (drops, hedges). Default: discard.
	Logger *slog.Logger
	// Progress, if set, is called every ProgressInterval and once at the
	// end, from the fetch loop: it must not block.
	Progress func(Progress)
	// ProgressInterval. Default 250 ms: smooth for a terminal, cheap.
	ProgressInterval time.Duration
	// MaxAge is the freshness bound for liveness statements. Default 30 s:
	// mirrors sign one every few seconds, so two missed beats are fine.
	MaxAge time.Duration
	// Parallel bounds concurrent block requests overall. Default 12.
	Parallel int
	// PerMirror bounds concurrent requests to one mirror. Default 3: enough
	// to fill a link with 1 MiB blocks, few enough that a mirror dying
	// midway strands little.
	PerMirror int
	// HedgeDelay is how long a request to a mirror with no latency sample
	// runs before it is hedged elsewhere; once a mirror has samples the
	// delay is HedgeFactor times its expected time for the block, never
	// below HedgeDelay/10. Default 1 s.
	HedgeDelay time.Duration
	// HedgeFactor: see HedgeDelay. Default 3 (hedges only the slow tail).
	HedgeFactor float64
	// StallTimeout: a response that delivers less than MinRate bytes per
	// second over a window this long (including waiting for the first
	// byte) is abandoned and its mirror dropped. Default 10 s.
	StallTimeout time.Duration
	// MinRate in bytes per second; see StallTimeout. Default 4 KiB/s, well
	// under any usable link, far over a trickle.
	MinRate int64
	// ProbeTimeout bounds each HEAD probe and each statement download.
	// Default 5 s.
	ProbeTimeout time.Duration
	// SubtreeBytes: a dag-pb node whose parent link says its whole
	// subtree is at most this many bytes (a small file or directory, a
	// HAMT shard) is fetched with its subtree in one CAR (dag-scope=all),
	// verified block by block in traversal order, instead of a request
	// per block. Default 1 MiB (the size of one leaf: larger subtrees
	// are better spread over mirrors block by block); negative: never.
	SubtreeBytes int64
	// MaxSources bounds how many mirrors are contacted at all (asked for
	// statements or probed): bootstraps first, then mirrors their
	// statements name, best evidence and distinct domains first. Default
	// 8 (more bootstraps than that are all contacted).
	MaxSources int
	// MaxSourceBytes bounds the statement bytes read from one source
	// (default 8 MiB: ten thousand honest statements); MaxStatementBytes
	// the statements kept from all of them, counted twice their size
	// (default 16 MiB). Statements are verified as they stream in.
	MaxSourceBytes    int64
	MaxStatementBytes int64
	// Seed seeds the exploration choices; 0 picks a random seed.
	Seed uint64
	// NoSync: GetDir and GetCAR rename the output into place without
	// first making it durable (no fsync or syncfs, no early writeback), as
	// curl or tar leave their output. Faster for a bundle of thousands of
	// small files, but a crash of the machine soon after can leave files
	// empty or cut short under their final names. The default waits
	// until the output is on disk, so after a crash it is complete or
	// absent.
	NoSync bool
	// Now is the clock statements are judged by. Default time.Now.
	Now func() time.Time

	ownClient bool // HTTPClient was made by withDefaults: close its connections at the end
	// onVerified, if set, is told every block of the DAG once it is
	// verified and in the sink (fetched, resumed or inline), with its
	// bytes, from the fetch loop: it must not block for long.
	onVerified func(c cid.Cid, data []byte)
}

// Progress is a snapshot of a running download.
type Progress struct {
	Bytes     int64         // verified bytes so far
	Blocks    int           // verified blocks so far
	Rate      float64       // bytes per second since start
	Mirrors   int           // mirrors with a request in flight
	Failovers int           // mirrors dropped so far
	Elapsed   time.Duration // since Get started
	// Total is the bundle's declared size in block bytes (the root block
	// and its links' Tsize), 0 until the root block has arrived. A DAG
	// that shares blocks declares them more than once, so Bytes may end
	// below Total.
	Total int64
}

// Drop records a mirror the client stopped using and why.
type Drop struct {
	Mirror string `json:"mirror"`
	Reason string `json:"reason"`
}

// DefaultOptions returns the value [Get] gives every zero field (Bootstrap,
// HTTPClient, Logger, Progress and Seed stay zero: Get makes a client and a
// discarding logger of its own).
func DefaultOptions() Options {
	return Options{
		ProgressInterval:  250 * time.Millisecond,
		MaxAge:            30 * time.Second,
		Parallel:          12,
		PerMirror:         3,
		HedgeDelay:        time.Second,
		HedgeFactor:       3,
		StallTimeout:      10 * time.Second,
		MinRate:           4 << 10,
		ProbeTimeout:      5 * time.Second,
		MaxSources:        8,
		MaxSourceBytes:    8 << 20,
		MaxStatementBytes: 16 << 20,
		SubtreeBytes:      1 << 20,
		Now:               time.Now,
	}
}

// Validate reports the first field out of range, by name. Zero fields are
// valid (they take their default).
func (o Options) Validate() error {
	switch {
	case o.Parallel < 0:
		return fmt.Errorf("%w: Parallel %d is negative", ErrOptions, o.Parallel)
	case o.PerMirror < 0:
		return fmt.Errorf("%w: PerMirror %d is negative", ErrOptions, o.PerMirror)
	case o.HedgeFactor != 0 && o.HedgeFactor < 1:
		return fmt.Errorf("%w: HedgeFactor %g is below 1", ErrOptions, o.HedgeFactor)
	case o.MinRate < 0:
		return fmt.Errorf("%w: MinRate %d is negative", ErrOptions, o.MinRate)
	case o.MaxSources < 0:
		return fmt.Errorf("%w: MaxSources %d is negative", ErrOptions, o.MaxSources)
	case o.MaxSourceBytes < 0 || o.MaxStatementBytes < 0:
		return fmt.Errorf("%w: MaxSourceBytes and MaxStatementBytes must not be negative", ErrOptions)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxAge", o.MaxAge}, {"HedgeDelay", o.HedgeDelay}, {"StallTimeout", o.StallTimeout}, {"ProbeTimeout", o.ProbeTimeout}, {"ProgressInterval", o.ProgressInterval}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %s is negative", ErrOptions, d.name, d.v)
		}
	}
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Bootstrap) == 0 {
		return o, ErrNoBootstrap
	}
	if err := o.Validate(); err != nil {
		return o, err
	}
	if o.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		// Blocks are up to 1 MiB: read the connection in large pieces
		// (the default 4 KiB costs a system call and a copy per 4 KiB).
		tr.ReadBufferSize = 64 << 10
		o.HTTPClient = &http.Client{Transport: tr}
		o.ownClient = true
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "client")
	d := DefaultOptions()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&o.ProgressInterval, d.ProgressInterval)
	setDur(&o.MaxAge, d.MaxAge)
	setDur(&o.HedgeDelay, d.HedgeDelay)
	setDur(&o.StallTimeout, d.StallTimeout)
	setDur(&o.ProbeTimeout, d.ProbeTimeout)
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&o.Parallel, d.Parallel)
	setInt(&o.PerMirror, d.PerMirror)
	setInt(&o.MaxSources, d.MaxSources)
	if o.HedgeFactor == 0 {
		o.HedgeFactor = d.HedgeFactor
	}
	if o.MinRate == 0 {
		o.MinRate = d.MinRate
	}
	if o.SubtreeBytes == 0 {
		o.SubtreeBytes = d.SubtreeBytes
	}
	if o.MaxSourceBytes == 0 {
		o.MaxSourceBytes = d.MaxSourceBytes
	}
	if o.MaxStatementBytes == 0 {
		o.MaxStatementBytes = d.MaxStatementBytes
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	return o, nil
}

// bootstrap is one parsed bootstrap address.
type bootstrap struct {
	raw  string
	http string         // normalised base URL, or ""
	p2p  *peer.AddrInfo // or nil
}

// ParseBootstrap checks one bootstrap address: an http(s) base URL or a
// libp2p multiaddr ending in /p2p/ID. Errors wrap ErrBootstrap.
func ParseBootstrap(s string) error {
	_, err := parseBootstrap(s)
	return err
}

func parseBootstrap(s string) (bootstrap, error) {
	if strings.HasPrefix(s, "/") {
		addr, err := ma.NewMultiaddr(s)
		if err != nil {
			return bootstrap{}, fmt.Errorf("%w %q: %v", ErrBootstrap, s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			return bootstrap{}, fmt.Errorf("%w %q: %v (a multiaddr must end in /p2p/ID)", ErrBootstrap, s, err)
		}
		if len(ai.Addrs) == 0 {
			return bootstrap{}, fmt.Errorf("%w %q: no transport address before /p2p/", ErrBootstrap, s)
		}
		return bootstrap{raw: s, p2p: ai}, nil
	}
	u, err := normalizeHTTP(s)
	if err != nil {
		return bootstrap{}, err
	}
	return bootstrap{raw: s, http: u}, nil
}

// parseHTTPBase checks that s is an absolute http(s) URL with a host and no
// query or fragment.
func parseHTTPBase(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrBootstrap, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w %q: want http(s)://host[:port] or /ip4/.../p2p/ID", ErrBootstrap, s)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// Get downloads the bundle root from the mirrors reachable from
// opts.Bootstrap, verifying every block, and returns it in memory. It
// returns an error wrapping ErrNoMirror if no mirror delivers a verified
// copy, naming each mirror and why it was dropped. Every goroutine Get
// starts has stopped when it returns.
func Get(ctx context.Context, root cid.Cid, opts Options) (*Result, error) {
	return get(ctx, root, opts, nil)
}

// get is Get putting verified blocks into sink (nil: memory).
func get(ctx context.Context, root cid.Cid, opts Options, sink blockSink) (*Result, error) {
	if !root.Defined() {
		return nil, fmt.Errorf("%w: undefined root CID", ErrOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var boots []bootstrap
	for _, s := range opts.Bootstrap {
		b, err := parseBootstrap(s)
		if err != nil {
			return nil, err
		}
		boots = append(boots, b)
	}
	f := newFetcher(root, opts, sink)
	if opts.ownClient {
		defer opts.HTTPClient.CloseIdleConnections()
	}
	return f.run(ctx, boots)
}
