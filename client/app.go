package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// Errors of ResolveApp.
var (
	// ErrUnknownApp: no mirror handed a verifiable release of the app.
	ErrUnknownApp = errors.New("client: no mirror has a valid release of the app")
	// ErrStale: the latest release found has expired and nothing newer is
	// known (TUF's freeze protection): it is never reported as current.
	ErrStale = errors.New("client: the app's latest release has expired (stale)")
	// ErrNoVersion: the requested version of the app is not known.
	ErrNoVersion = errors.New("client: no such version of the app")
)

// ResolveApp finds the release an app reference names ("APP-ID" for the
// current release, "APP-ID@N" for version N) and returns its bundle CID and
// record.
//
// It reads the signed statement streams of every bootstrap mirror and of
// the mirrors their liveness statements name (up to opts.MaxSources), takes
// the release records (protocol.IsSignedRelease), verifies each itself
// (attest.VerifyRelease) and applies them to a fresh release.Book, which
// enforces the app's chain from the genesis set its ID commits to: a mirror
// can hide records another mirror hands over, but cannot forge, roll back
// or freeze a release unnoticed. The newest valid release wins however
// many mirrors serve older ones. A latest release that has expired is
// refused with ErrStale; a version asked for by number is returned even if
// later ones exist or it has expired (a deliberate pin).
func ResolveApp(ctx context.Context, ref string, opts Options) (cid.Cid, *protocol.Release, error) {
	r, err := release.ParseAppRef(ref)
	if err != nil {
		return cid.Undef, nil, err
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return cid.Undef, nil, err
	}
	if opts.ownClient {
		defer opts.HTTPClient.CloseIdleConnections()
	}
	var boots []bootstrap
	for _, s := range opts.Bootstrap {
		b, err := parseBootstrap(s)
		if err != nil {
			return cid.Undef, nil, err
		}
		boots = append(boots, b)
	}
	raws, notes := gatherStatements(ctx, boots, opts)
	if ctx.Err() != nil {
		return cid.Undef, nil, ctx.Err()
	}
	now := opts.Now()
	book := release.NewBook()
	var rels []*attest.Release
	seen := map[string]bool{}
	for _, raw := range raws {
		if !protocol.IsSignedRelease(raw) || seen[string(raw)] {
			continue
		}
		seen[string(raw)] = true
		rel, err := attest.VerifyRelease(raw, now)
		if rel == nil || (err != nil && !errors.Is(err, attest.ErrExpired)) {
			opts.Logger.Debug("release record dropped", "err", err)
			continue
		}
		if rel.Record.App == r.App {
			rels = append(rels, rel)
		}
	}
	for _, err := range book.ApplyAll(rels, now) {
		opts.Logger.Debug("release record refused", "err", err)
	}
	rec, st := book.Current(r.App, now)
	if st == release.StatusUnknown {
		if len(notes) > 0 {
			return cid.Undef, nil, fmt.Errorf("%w: %s (asked %d mirrors; %s)", ErrUnknownApp, r.App, len(boots), notes[0])
		}
		return cid.Undef, nil, fmt.Errorf("%w: %s", ErrUnknownApp, r.App)
	}
	if r.Version != 0 {
		got, ok := book.Get(r.App, r.Version)
		if !ok {
			return cid.Undef, nil, fmt.Errorf("%w: %s has no version %d (latest is %d)", ErrNoVersion, r.App, r.Version, rec.Version)
		}
		rec = got
	} else if st == release.StatusStale {
		return cid.Undef, nil, fmt.Errorf("%w: %s v%d expired at %s and no newer release is known; ask its maintainers, or pin it with %s@%d",
			ErrStale, rec.Name, rec.Version, time.UnixMilli(rec.Expires).UTC().Format(time.RFC3339), r.App, rec.Version)
	}
	c, err := cid.Decode(rec.CID)
	if err != nil {
		return cid.Undef, nil, fmt.Errorf("client: release %s@%d names a malformed CID %q: %w", r.App, rec.Version, rec.CID, err)
	}
	return c, &rec, nil
}

// gatherStatements reads the statement streams of every bootstrap, then of
// the up mirrors their (verified) liveness statements name, up to
// MaxSources sources in all (best evidence and distinct domains first). It
// returns the release records read and the liveness statements kept (each
// verified as it streamed in, within the per-source and total byte
// budgets), and a note per source that failed.
func gatherStatements(ctx context.Context, boots []bootstrap, o Options) ([][]byte, []string) {
	var (
		mu       sync.Mutex
		releases [][]byte
		relBytes int64
		notes    []string
		wg       sync.WaitGroup
	)
	view := newHealthView(o.MaxStatementBytes)
	var p2p *p2pSource
	defer func() {
		if p2p != nil {
			p2p.close()
		}
	}()
	read := func(src string, fn func(context.Context, func([]byte)) error) {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
			defer cancel()
			err := fn(cctx, func(raw []byte) {
				if !protocol.IsSignedRelease(raw) {
					view.add(src, raw, o.Now())
					return
				}
				// Release records are verified by the caller's book;
				// here they only count against the same budget.
				mu.Lock()
				defer mu.Unlock()
				if relBytes+int64(len(raw)) <= o.MaxStatementBytes {
					relBytes += int64(len(raw))
					releases = append(releases, raw)
				}
			})
			if err != nil {
				mu.Lock()
				notes = append(notes, src+": "+err.Error())
				mu.Unlock()
			}
		})
	}
	asked := map[string]bool{}
	for _, b := range boots {
		if b.http != "" {
			asked[b.http] = true
			read(b.http, func(c context.Context, each func([]byte)) error {
				return httpStatements(c, o.HTTPClient, b.http, o.MaxSourceBytes, each)
			})
			continue
		}
		if p2p == nil {
			var err error
			if p2p, err = newP2PSource(); err != nil {
				notes = append(notes, "libp2p: "+err.Error())
				continue
			}
		}
		asked[b.raw] = true
		ai := *b.p2p
		read(b.raw, func(c context.Context, each func([]byte)) error {
			return p2p.statements(c, ai, o.MaxSourceBytes, each)
		})
	}
	wg.Wait()
	// Second round: other up, fresh mirrors the bootstraps' statements
	// name, best evidence and distinct domains first.
	var more []string
	for _, c := range spread(view.upMirrors(o.Now(), o.MaxAge)) {
		if !asked[c.url] {
			more = append(more, c.url)
			asked[c.url] = true
		}
	}
	if room := o.MaxSources - len(boots); len(more) > room {
		more = more[:max(room, 0)]
	}
	for _, u := range more {
		read(u, func(c context.Context, each func([]byte)) error {
			return httpStatements(c, o.HTTPClient, u, o.MaxSourceBytes, each)
		})
	}
	wg.Wait()
	out := releases
	view.mu.Lock()
	for _, st := range view.latest {
		out = append(out, st.Raw)
	}
	view.mu.Unlock()
	return out, notes
}
