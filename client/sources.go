package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/protocol"
)

// Bootstrap addresses come from the caller. `mirrornet get` with no
// --bootstrap fills them from mirrors announcing themselves on the LAN
// (discovery.BrowseMirrors, mDNS); they are no more trusted than any
// bootstrap: statements are verified and bytes checked. The mirrornet DHT
// needs an entry point, and any mirror given as one already names every
// mirror it knows in its signed statements.

// gathered reports that one source's statement stream has ended.
type gathered struct {
	src  string
	got  int
	kept int
	err  error
	// retry: a holdings statement that could not be read (not one that
	// did not verify) may be asked for again.
	retry bool
}

// maxHoldingsTries bounds the reads of one mirror's holdings statement
// (per digest) that fail to get an answer (a timeout, or a 503 from a
// mirror that has not signed its first list yet); the later ones wait a
// growing fraction of the probe timeout first.
const maxHoldingsTries = 3

// discover finds mirrors for f.root: it probes every HTTP bootstrap, reads
// signed statements from every bootstrap and from mirrors they name,
// verifying each as it streams in (within a byte budget per source and in
// total), keeps the highest Seq per signer across all of them, and probes
// mirrors the view says are up, fresh and holding the root. Each probed
// mirror that holds the root is handed to the fetch loop as soon as it
// answers.
//
// Cost bound: at most max(MaxSources, bootstraps) distinct mirrors are
// contacted at all (asked for statements or probed), chosen by evidence
// (vouched for by the most sources, then freshest) and distinct domains
// first, so a lying bootstrap minting thousands of mirrors cannot make the
// client send a request to each, nor hold their statements.
func (f *fetcher) discover(ctx context.Context, boots []bootstrap) {
	defer f.send(ctx, func() { f.discovering = false })
	root := f.root.String()
	view := f.view
	var wg sync.WaitGroup
	defer wg.Wait()
	contacted := map[string]bool{}
	limit := max(f.o.MaxSources, len(boots))
	contact := func(u string) bool {
		if contacted[u] {
			return true
		}
		if len(contacted) >= limit {
			return false
		}
		contacted[u] = true
		return true
	}
	probed := map[string]bool{}
	probe := func(u string) {
		if probed[u] || !contact(u) {
			return
		}
		probed[u] = true
		wg.Go(func() { f.probe(ctx, u) })
	}
	var p2p *p2pSource
	defer func() {
		if p2p != nil {
			p2p.close()
		}
	}()
	results := make(chan gathered)
	asked := map[string]bool{}
	tries := map[string]int{} // holdings reads started, per mirror and digest
	outstanding := 0
	ask := func(key string, fn func(context.Context, func([]byte)) error) {
		if asked[key] {
			return
		}
		asked[key] = true
		outstanding++
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, f.o.ProbeTimeout)
			g := gathered{src: key}
			g.err = fn(cctx, func(raw []byte) {
				g.got++
				if view.add(key, raw, f.o.Now()) {
					g.kept++
				}
			})
			cancel()
			select {
			case results <- g:
			case <-ctx.Done():
			}
		})
	}
	isBoot := map[string]bool{}
	for _, b := range boots {
		if b.http != "" {
			isBoot[b.http] = true
		}
	}
	viewed := map[string]bool{} // mirrors taken from the view
	for _, b := range boots {
		if b.http != "" {
			contacted[b.http] = true
			probe(b.http)
			ask(b.http, func(c context.Context, each func([]byte)) error {
				return httpStatements(c, f.o.HTTPClient, b.http, f.o.MaxSourceBytes, each)
			})
			continue
		}
		if p2p == nil {
			var err error
			if p2p, err = newP2PSource(); err != nil {
				f.send(ctx, func() { f.notes = append(f.notes, "libp2p: "+err.Error()) })
				continue
			}
		}
		ai := *b.p2p
		contacted[b.raw] = true
		ask(b.raw, func(c context.Context, each func([]byte)) error {
			return p2p.statements(c, ai, f.o.MaxSourceBytes, each)
		})
	}
	// Mirrors are judged on the union of every bootstrap's statements,
	// not on the first to answer; but a dead bootstrap holds that up for
	// at most a fifth of the probe timeout after the first answer (a newer
	// statement arriving later still retires a mirror).
	bootsPending := outstanding
	var grace <-chan time.Time
	for outstanding > 0 {
		var g gathered
		select {
		case g = <-results:
		case <-grace:
			grace, bootsPending = nil, 0
		case <-ctx.Done():
			return
		}
		if g.src != "" {
			outstanding--
			if bootsPending > 0 {
				bootsPending--
			}
			if grace == nil && bootsPending > 0 {
				t := time.NewTimer(f.o.ProbeTimeout / 5)
				defer t.Stop()
				grace = t.C
			}
			view.mu.Lock()
			rejected, over := view.rejected[g.src], view.overBudget
			view.mu.Unlock()
			f.o.Logger.Debug("statements", "source", g.src, "got", g.got, "kept", g.kept, "rejected", rejected, "over_budget_total", over, "err", g.err)
		}
		if g.retry {
			delete(asked, g.src)
		}
		if g.err != nil {
			note := g.src + ": " + g.err.Error()
			f.send(ctx, func() { f.notes = append(f.notes, note) })
		}
		if bootsPending > 0 {
			continue
		}
		now := f.o.Now()
		// Mirrors that name their holdings by digest: read and verify
		// their holdings statements first (once per digest).
		for _, need := range view.needHoldings(root, now, f.o.MaxAge) {
			key := "holdings " + need.url + " " + need.ref.Digest
			if asked[key] || tries[key] >= maxHoldingsTries || (len(contacted) >= limit && !contacted[need.url]) {
				continue
			}
			contact(need.url)
			asked[key] = true
			tries[key]++
			try := tries[key]
			outstanding++
			wg.Go(func() {
				if try > 1 {
					t := time.NewTimer(f.o.ProbeTimeout / 5 * time.Duration(try-1))
					select {
					case <-t.C:
					case <-ctx.Done():
						t.Stop()
						return
					}
				}
				cctx, cancel := context.WithTimeout(ctx, f.o.ProbeTimeout)
				held, err := fetchHoldings(cctx, f.o.HTTPClient, need.url, need.ref, root, f.o.Now())
				cancel()
				// Only an answer is recorded: a read that failed says
				// nothing about what the mirror holds.
				if err == nil {
					view.setHolds(need.ref, root, held)
				}
				select {
				case results <- gathered{src: key, err: err, retry: err != nil && !errors.Is(err, errHoldingsInvalid)}:
				case <-ctx.Done():
				}
			})
		}
		usable := view.usable(root, now, f.o.MaxAge)
		isUsable := make(map[string]bool, len(usable))
		for _, c := range usable {
			isUsable[c.url] = true
		}
		for u := range viewed {
			if !isUsable[u] {
				// A newer statement (from any source) says it left,
				// went stale or dropped the bundle.
				delete(viewed, u)
				reason := view.statusOf(u, root, now, f.o.MaxAge)
				f.send(ctx, func() { f.rejectMirror(u, hard("statement: %s", reason)) })
			}
		}
		for _, c := range spread(usable) {
			u := c.url
			if len(contacted) >= limit && !contacted[u] {
				// Out of contacts for new mirrors; those contacted
				// already (a holder whose holdings were just read)
				// are still probed.
				continue
			}
			if !isBoot[u] && !probed[u] {
				viewed[u] = true
			}
			probe(u)
			ask(u, func(c context.Context, each func([]byte)) error {
				return httpStatements(c, f.o.HTTPClient, u, f.o.MaxSourceBytes, each)
			})
		}
	}
}

// probe asks u whether it holds the root (HEAD, only-if-cached) and adds it
// to the fetch loop if so.
func (f *fetcher) probe(ctx context.Context, u string) {
	pctx, cancel := context.WithTimeout(ctx, f.o.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodHead, u+"/ipfs/"+f.root.String()+"?format=raw", nil)
	if err != nil {
		f.send(ctx, func() { f.rejectMirror(u, hard("probe: %v", err)) })
		return
	}
	req.Header.Set("Cache-Control", "only-if-cached")
	req.Header.Set("Accept", "application/vnd.ipld.raw")
	start := time.Now()
	resp, err := f.o.HTTPClient.Do(req)
	rtt := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if pctx.Err() != nil {
			f.send(ctx, func() { f.rejectMirror(u, soft("probe: no answer in %s", f.o.ProbeTimeout)) })
			return
		}
		f.send(ctx, func() { f.rejectMirror(u, soft("probe: %s", shortErr(err))) })
		return
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		f.send(ctx, func() { f.addMirror(u, rtt) })
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		f.send(ctx, func() { f.rejectMirror(u, soft("probe: HTTP %d", resp.StatusCode)) })
	default:
		f.send(ctx, func() {
			f.rejectMirror(u, hard("does not hold %s (HTTP %d)", f.root, resp.StatusCode))
		})
	}
}

// errStatements: a source's statement stream was unusable.
var errStatements = errors.New("client: bad statement stream")

// readStatements reads frames until an empty one and hands each to each as
// it arrives (the caller verifies it at once and keeps what it needs: a
// source's stream is never buffered whole). It stops with errStatements
// after MaxSyncStatements frames or more than maxBytes bytes (0: no byte
// limit); frames read before are kept.
func readStatements(r io.Reader, maxBytes int64, each func([]byte)) error {
	var read int64
	br := bufio.NewReader(r)
	for i := 0; i < protocol.MaxSyncStatements; i++ {
		b, err := protocol.ReadFrame(br, protocol.MaxStatementSize)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: ended without the empty frame", errStatements)
			}
			return fmt.Errorf("%w: %v", errStatements, err)
		}
		if len(b) == 0 {
			return nil
		}
		read += int64(len(b))
		if maxBytes > 0 && read > maxBytes {
			return fmt.Errorf("%w: more than %d bytes of statements (the per-source budget)", errStatements, maxBytes)
		}
		each(b)
	}
	return fmt.Errorf("%w: more than %d statements", errStatements, protocol.MaxSyncStatements)
}

// collect keeps every frame (for callers that want them all); bounded by
// readStatements' limits.
func collect(out *[][]byte) func([]byte) { return func(b []byte) { *out = append(*out, b) } }

// httpStatements streams a mirror's statements over HTTP into each.
func httpStatements(ctx context.Context, hc *http.Client, base string, maxBytes int64, each func([]byte)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+protocol.HTTPStatementsPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", protocol.StatementsContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s", errStatements, shortErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP %d", errStatements, resp.StatusCode)
	}
	return readStatements(resp.Body, maxBytes, each)
}

// p2pSource reads statements over libp2p with an ephemeral identity; it
// listens on nothing and joins no gossip mesh.
type p2pSource struct{ h host.Host }

func newP2PSource() (*p2pSource, error) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.NoListenAddrs)
	if err != nil {
		return nil, fmt.Errorf("libp2p host: %w", err)
	}
	return &p2pSource{h: h}, nil
}

func (p *p2pSource) close() { p.h.Close() }

func (p *p2pSource) statements(ctx context.Context, ai peer.AddrInfo, maxBytes int64, each func([]byte)) error {
	if err := p.h.Connect(ctx, ai); err != nil {
		return fmt.Errorf("%w: connect: %v", errStatements, err)
	}
	s, err := p.h.NewStream(ctx, ai.ID, protocol.SyncProtocolID)
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", errStatements, protocol.SyncProtocolID, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	req, err := protocol.Encode(&protocol.SyncRequest{Kinds: []string{"liveness"}})
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(s, req); err != nil {
		s.Reset()
		return fmt.Errorf("%w: write request: %v", errStatements, err)
	}
	s.CloseWrite()
	return readStatements(s, maxBytes, each)
}
