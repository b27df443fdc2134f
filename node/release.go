package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/badge"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/internal/relsync/relsyncp2p"
	"github.com/mirrornet/mirrornet/protocol"
)

// The releases feature makes signed release records and build
// attestations live in the network:
//
//   - gossip: TopicRelease carries signed releases, applied to a
//     release.Book under TUF's rules (Verdict maps refusals to Reject or
//     Ignore); TopicBuild carries build attestations, kept per app version
//     for the integrity verdict;
//   - sync and the HTTP statements stream hand every kept record and
//     attestation to peers and light clients, which verify them themselves;
//   - followed apps: for each, the mirror follows the CID of the latest
//     release and unfollows the previous one only once the new one is held;
//   - routes: GET /api/v1/app/{app-id}[?version=N] (AppStatus JSON),
//     GET /badge/app/{app-id}/integrity.svg|.json; admin routes
//     follow-app, unfollow-app, release, build and app.
//
// Memory: anyone can make a key and so an app, and a Book is unbounded, so
// records of apps this mirror does not follow are admitted only while fewer
// than MaxUnfollowedApps such apps are known, at most MaxVersionsUnfollowed
// records each and MaxUnfollowedBytes in all; followed apps (the operator's
// choice) are not limited. Build attestations are kept only for releases in the
// book, and only from the builders each release declares (at most
// protocol.MaxMaintainers): anyone else's are ignored as "unlisted".
//
// Persistence (data directory): releases.book (release.SaveFile, atomic) and
// apps.json (followed apps and the CIDs this feature follows for them,
// written atomically). Build attestations are not persisted: peers hand
// them back through sync.
const (
	// MaxUnfollowedApps bounds the apps kept in the release book that this
	// mirror does not follow: enough to relay every app of a real network,
	// small enough that a flood of fresh app IDs costs little memory.
	MaxUnfollowedApps = 1024
	// MaxVersionsUnfollowed bounds the records kept per unfollowed app.
	MaxVersionsUnfollowed = 64
	// MaxUnfollowedBytes bounds the bytes of all records of unfollowed
	// apps: records are up to 64 KiB each, so the two bounds above alone
	// would allow gigabytes; real records are about 1 KiB.
	MaxUnfollowedBytes = 32 << 20

	releaseBookFile = "releases.book"
	appsFile        = "apps.json"
	maxAdminBody    = 2 * protocol.MaxStatementSize
)

// Errors of the releases feature.
var (
	// ErrBookFull: a record of an app this mirror does not follow arrived
	// while the book holds its limit of such apps or versions (Ignore).
	ErrBookFull = errors.New("node: release book full for apps this mirror does not follow")
	// ErrUnknownApp: no release of the app is known here.
	ErrUnknownApp = errors.New("node: unknown app: no release record of it is known here")
	// ErrUnknownRelease: a build attestation names a release not known here
	// (Ignore).
	ErrUnknownRelease = errors.New("node: build attestation names a release not known here")
	// ErrNotHeld: a release was submitted for a bundle the node does not
	// hold.
	ErrNotHeld = errors.New("node: release bundle is not held by this node (import it first)")
)

func init() { registerFeature(newReleaseFeature) }

type buildKey struct {
	app     string
	version uint64
}

type buildRawKey struct {
	app     string
	version uint64
	builder string
}

// releaseFeature owns the release book, the build attestations and the
// followed apps. mu guards every field below it; never call the node's
// Follow/Unfollow or publish with mu held.
type releaseFeature struct {
	baseFeature
	n    *Node
	wake chan struct{}
	// maxApps and maxVersions are MaxUnfollowedApps and
	// MaxVersionsUnfollowed (tests lower them).
	maxApps, maxVersions, maxBytes int
	// gen changes whenever a record or attestation is kept or the followed
	// apps change (release anti-entropy rebuilds its summary only then).
	gen atomic.Uint64
	// appGen counts changes to each app's records (guarded by mu): release
	// sync hashes again only the apps that changed.
	appGen map[string]uint64
	// sync pulls records gossip missed from connected mirrors (relsync.go).
	sync *relsyncp2p.Service
	// beforeUnfollow, if set (tests), is called right before a previous
	// release's CID is unfollowed, with that CID and the new one.
	beforeUnfollow atomic.Pointer[func(old, cur cid.Cid)]

	mu       sync.Mutex
	book     *release.Book
	builds   *release.Builds
	buildRaw map[buildRawKey][]byte
	// unlisted counts attestations refused as unlisted, per release.
	unlisted map[buildKey]int
	// apps are the followed apps → CIDs this feature follows for them.
	apps map[string][]string
	// unfollowedBytes is the size of every record of apps not followed.
	unfollowedBytes int
	// dirty: the book changed since it was last saved. The run loop saves
	// it (a burst of records costs one write); adminRelease saves at once.
	dirty bool
}

func newReleaseFeature(n *Node) (feature, error) {
	f := &releaseFeature{
		n: n, wake: make(chan struct{}, 1), maxApps: MaxUnfollowedApps, maxVersions: MaxVersionsUnfollowed, maxBytes: MaxUnfollowedBytes,
		builds: release.NewBuilds(), buildRaw: map[buildRawKey][]byte{}, appGen: map[string]uint64{}, unlisted: map[buildKey]int{}, apps: map[string][]string{},
	}
	book, skipped, err := release.LoadFile(filepath.Join(n.cfg.DataDir, releaseBookFile), n.clock())
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	for _, e := range skipped {
		n.log.Warn("saved release record no longer applies", "err", e)
	}
	f.book = book
	if err := f.loadApps(); err != nil {
		return nil, err
	}
	changed := false
	for _, s := range n.cfg.Follow {
		if protocol.IsAppID(s) {
			if _, ok := f.apps[s]; !ok {
				f.apps[s] = []string{}
				changed = true
			}
		}
	}
	if changed {
		if err := f.saveAppsLocked(); err != nil {
			return nil, err
		}
	}
	f.recountLocked()
	for _, app := range f.book.Apps() {
		f.appGen[app] = f.gen.Add(1)
	}
	if err := f.startRelSync(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *releaseFeature) name() string { return "releases" }

type appsState struct {
	Apps map[string][]string `json:"apps"`
}

func (f *releaseFeature) loadApps() error {
	raw, err := os.ReadFile(filepath.Join(f.n.cfg.DataDir, appsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: read %s: %w", appsFile, err)
	}
	var st appsState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("node: %s is corrupt: %w", appsFile, err)
	}
	for app, cids := range st.Apps {
		if protocol.IsAppID(app) {
			f.apps[app] = cids
		}
	}
	return nil
}

func (f *releaseFeature) saveAppsLocked() error {
	raw, err := jsonMarshalIndent(appsState{Apps: f.apps})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(f.n.cfg.DataDir, appsFile), raw, 0o600); err != nil {
		return fmt.Errorf("node: write %s: %w", appsFile, err)
	}
	return nil
}

// saveBook writes the book if it changed since the last save.
func (f *releaseFeature) saveBook() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		return nil
	}
	if err := f.book.SaveFile(filepath.Join(f.n.cfg.DataDir, releaseBookFile)); err != nil {
		return err
	}
	f.dirty = false
	return nil
}

func (f *releaseFeature) close() error { return f.saveBook() }

func (f *releaseFeature) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *releaseFeature) topics() []topicSpec {
	return []topicSpec{
		{topic: protocol.TopicRelease, validate: f.validateRelease},
		{topic: protocol.TopicBuild, validate: f.validateBuild},
	}
}

func toResult(v attest.Verdict) pubsub.ValidationResult {
	switch v {
	case attest.Accept:
		return pubsub.ValidationAccept
	case attest.Ignore:
		return pubsub.ValidationIgnore
	default:
		return pubsub.ValidationReject
	}
}

// releaseVerdict is release.Verdict plus this feature's own Ignore cases.
func releaseVerdict(err error) attest.Verdict {
	if errors.Is(err, ErrBookFull) || errors.Is(err, ErrUnknownRelease) || errors.Is(err, release.ErrUnlistedBuilder) {
		return attest.Ignore
	}
	return release.Verdict(err)
}

func (f *releaseFeature) validateRelease(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	_, err := f.addRelease(msg.Data, false)
	v := releaseVerdict(err)
	f.count(string(attest.KindRelease), v, err)
	if v != attest.Accept {
		f.n.log.Debug("release record not accepted", "from", from, "verdict", v, "reason", release.Reason(err), "err", err)
	}
	return toResult(v)
}

// count adds a gossiped record or attestation to the node's
// mirrornet_statements_total{kind, verdict, reason}.
func (f *releaseFeature) count(kind string, v attest.Verdict, err error) {
	reason := release.Reason(err)
	switch {
	case errors.Is(err, ErrBookFull):
		reason = "book_full"
	case errors.Is(err, ErrUnknownRelease):
		reason = "unknown_release"
	case errors.Is(err, release.ErrUnlistedBuilder):
		reason = "unlisted_builder"
	}
	if f.n.metrics != nil {
		f.n.metrics.statements.WithLabelValues(kind, v.String(), reason).Inc()
	}
}

// addRelease verifies raw and applies it to the book (or, with dryRun, to
// a copy of the app's chain). The error is what Verdict maps; a record that
// is applied but expired comes back with the expiry error.
func (f *releaseFeature) addRelease(raw []byte, dryRun bool) (*attest.Release, error) {
	now := f.n.clock()
	rel, verr := attest.VerifyRelease(raw, now)
	if rel == nil || (verr != nil && !errors.Is(verr, attest.ErrExpired)) {
		return nil, verr
	}
	app := rel.Record.App
	f.mu.Lock()
	defer f.mu.Unlock()
	if dryRun {
		tmp := readChain(f.book.Raw(app), now)
		if err := tmp.Apply(rel, now); err != nil {
			return rel, err
		}
		return rel, verr
	}
	if _, followed := f.apps[app]; !followed {
		known := f.book.Raw(app)
		if len(known) == 0 && len(f.book.Apps())-f.followedInBookLocked() >= f.maxApps {
			return rel, fmt.Errorf("%w: %d apps", ErrBookFull, f.maxApps)
		}
		if len(known) >= f.maxVersions {
			return rel, fmt.Errorf("%w: %d records of %s", ErrBookFull, f.maxVersions, app)
		}
		if f.unfollowedBytes+len(raw) > f.maxBytes {
			return rel, fmt.Errorf("%w: %d bytes", ErrBookFull, f.maxBytes)
		}
	}
	if err := f.book.Apply(rel, now); err != nil {
		return rel, err
	}
	if _, followed := f.apps[app]; !followed {
		f.unfollowedBytes += len(raw)
	}
	f.dirty = true
	f.appGen[app] = f.gen.Add(1)
	f.poke()
	return rel, verr
}

// recountLocked recomputes unfollowedBytes (after the followed set changes).
func (f *releaseFeature) recountLocked() {
	f.unfollowedBytes = 0
	for _, app := range f.book.Apps() {
		if _, ok := f.apps[app]; !ok {
			for _, raw := range f.book.Raw(app) {
				f.unfollowedBytes += len(raw)
			}
		}
	}
}

func (f *releaseFeature) followedInBookLocked() int {
	k := 0
	for app := range f.apps {
		if len(f.book.Raw(app)) > 0 {
			k++
		}
	}
	return k
}

// readChain builds a fresh book from an app's records (for dry runs).
func readChain(raws [][]byte, now time.Time) *release.Book {
	b := release.NewBook()
	var rels []*attest.Release
	for _, raw := range raws {
		if rel, _ := attest.VerifyRelease(raw, now); rel != nil {
			rels = append(rels, rel)
		}
	}
	b.ApplyAll(rels, now)
	return b
}

func (f *releaseFeature) validateBuild(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	err := f.addBuild(msg.Data, false)
	v := releaseVerdict(err)
	f.count(string(attest.KindBuild), v, err)
	if v != attest.Accept {
		f.n.log.Debug("build attestation not accepted", "from", from, "verdict", v, "err", err)
	}
	return toResult(v)
}

// addBuild verifies a build attestation and keeps it if it names a known
// release and is new for its builder.
func (f *releaseFeature) addBuild(raw []byte, dryRun bool) error {
	st, err := attest.Verify(raw, f.n.clock())
	if err != nil {
		return err
	}
	return f.keepBuild(st, raw, dryRun)
}

// keepBuild keeps a verified statement if it is a build attestation of a
// known release, new for its builder.
func (f *releaseFeature) keepBuild(st *attest.Statement, raw []byte, dryRun bool) error {
	if st.Kind != attest.KindBuild || st.Build == nil {
		return fmt.Errorf("%w: %s statement on the build topic", attest.ErrKind, st.Kind)
	}
	b := st.Build
	if b.App == "" {
		return fmt.Errorf("%w: it names no app version", ErrUnknownRelease)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rel, ok := f.book.Get(b.App, b.Version)
	if !ok {
		return fmt.Errorf("%w: %s@%d", ErrUnknownRelease, b.App, b.Version)
	}
	k := buildRawKey{b.App, b.Version, b.Builder}
	if dryRun {
		if !release.Listed(rel, b.Builder) {
			return fmt.Errorf("%w: %s for %s@%d", release.ErrUnlistedBuilder, b.Builder, b.App, b.Version)
		}
		return nil
	}
	if err := f.builds.Add(st, rel); err != nil {
		if errors.Is(err, release.ErrUnlistedBuilder) {
			// Bounded: one counter per release in the book.
			f.unlisted[buildKey{b.App, b.Version}]++
		}
		return err
	}
	f.buildRaw[k] = raw
	f.appGen[b.App] = f.gen.Add(1)
	return nil
}

// statements hands peers every kept release record (in version order per
// app, so a receiver can anchor each chain) and build attestation.
func (f *releaseFeature) statements() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for _, app := range f.book.Apps() {
		out = append(out, f.book.Raw(app)...)
	}
	keys := make([]buildRawKey, 0, len(f.buildRaw))
	for k := range f.buildRaw {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b buildRawKey) int {
		if a.app != b.app {
			return cmpString(a.app, b.app)
		}
		if a.version != b.version {
			return int(min(max(int64(a.version)-int64(b.version), -1), 1))
		}
		return cmpString(a.builder, b.builder)
	})
	for _, k := range keys {
		out = append(out, f.buildRaw[k])
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// applySynced takes release records and build attestations out of a sync
// response. Sync hands a chain in version order, so each record applies in
// turn; refusals are only logged.
func (f *releaseFeature) applySynced(raw []byte) bool {
	if protocol.IsSignedRelease(raw) {
		if _, err := f.addRelease(raw, false); err != nil && !errors.Is(err, release.ErrDuplicate) {
			f.n.log.Debug("synced release record not applied", "reason", release.Reason(err), "err", err)
		}
		return true
	}
	if !bytes.Contains(raw, []byte(protocol.PayloadBuild)) {
		return false // cheap filter: not a build envelope
	}
	st, err := attest.Verify(raw, f.n.clock())
	if err != nil || st.Kind != attest.KindBuild {
		return false
	}
	_ = f.keepBuild(st, raw, false)
	return true
}

// run follows the latest release of every followed app, and unfollows a
// previous release's bundle once the new one is held. It wakes on every
// accepted record and follow-app, and every heartbeat to see fetches
// complete.
func (f *releaseFeature) run(ctx context.Context) {
	f.sync.Start(ctx)
	defer f.sync.Close()
	t := time.NewTicker(f.n.prof.Heartbeat)
	defer t.Stop()
	for {
		if err := f.saveBook(); err != nil {
			f.n.log.Error("save release book", "err", err)
		}
		f.reconcile()
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-t.C:
		}
	}
}

type appPlan struct {
	app    string
	target cid.Cid
	owned  []string
}

func (f *releaseFeature) reconcile() {
	f.mu.Lock()
	var plans []appPlan
	targets := map[string]bool{}
	for app, owned := range f.apps {
		rec, ok := f.book.Get(app, 0)
		if !ok {
			continue
		}
		c, err := cid.Decode(rec.CID)
		if err != nil {
			continue
		}
		targets[c.String()] = true
		plans = append(plans, appPlan{app: app, target: c, owned: slices.Clone(owned)})
	}
	f.mu.Unlock()
	for _, p := range plans {
		if f.n.ctx.Err() != nil {
			return
		}
		if !f.followed(p.target) {
			// Record ownership before following: after a crash between the
			// two, the next round follows it again; never the other way.
			if !f.own(p.app, p.target.String()) {
				continue
			}
			if err := f.n.Follow(p.target); err != nil {
				f.n.log.Warn("follow release", "app", p.app, "cid", p.target, "err", err)
				continue
			}
			f.n.log.Info("following new release", "app", p.app, "cid", p.target)
		}
		// Until the new release is held, keep every held previous one; a
		// previous one still being fetched (superseded before it arrived)
		// is dropped at once.
		targetHeld := f.n.store.Held(p.target)
		for _, s := range p.owned {
			if targets[s] {
				continue
			}
			old, err := cid.Decode(s)
			if err == nil && !targetHeld && f.n.store.Held(old) {
				continue
			}
			if err == nil {
				if hook := f.beforeUnfollow.Load(); hook != nil {
					(*hook)(old, p.target)
				}
				if err := f.n.Unfollow(old); err != nil {
					f.n.log.Warn("unfollow previous release", "app", p.app, "cid", old, "err", err)
					continue
				}
				f.n.log.Info("dropped previous release", "app", p.app, "cid", old, "now", p.target)
			}
			f.disown(p.app, s)
		}
	}
}

// followed reports whether the store follows c (held or fetching).
func (f *releaseFeature) followed(c cid.Cid) bool {
	for _, b := range f.n.store.Bundles() {
		if b.Root.Equals(c) {
			return true
		}
	}
	return false
}

// own records that the feature follows c for app; false if app is no
// longer followed or the state could not be saved.
func (f *releaseFeature) own(app, c string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	owned, ok := f.apps[app]
	if !ok {
		return false
	}
	if slices.Contains(owned, c) {
		return true
	}
	f.apps[app] = append(owned, c)
	if err := f.saveAppsLocked(); err != nil {
		f.n.log.Error("save followed apps", "err", err)
		f.apps[app] = owned
		return false
	}
	return true
}

func (f *releaseFeature) disown(app, c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	owned, ok := f.apps[app]
	if !ok {
		return
	}
	f.apps[app] = slices.DeleteFunc(slices.Clone(owned), func(s string) bool { return s == c })
	if err := f.saveAppsLocked(); err != nil {
		f.n.log.Error("save followed apps", "err", err)
	}
}

// followApp starts following app's releases.
func (f *releaseFeature) followApp(app string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.apps[app]; ok {
		return nil
	}
	f.apps[app] = []string{}
	if err := f.saveAppsLocked(); err != nil {
		delete(f.apps, app)
		return err
	}
	f.recountLocked()
	f.gen.Add(1)
	f.poke()
	return nil
}

// unfollowApp stops following app and unfollows the bundles followed for
// it that no other followed app's latest release needs.
func (f *releaseFeature) unfollowApp(app string) error {
	f.mu.Lock()
	owned, ok := f.apps[app]
	if !ok {
		f.mu.Unlock()
		return nil
	}
	delete(f.apps, app)
	if err := f.saveAppsLocked(); err != nil {
		f.apps[app] = owned
		f.mu.Unlock()
		return err
	}
	f.recountLocked()
	f.gen.Add(1)
	needed := map[string]bool{}
	for other, cids := range f.apps {
		if rec, ok := f.book.Get(other, 0); ok {
			needed[rec.CID] = true
		}
		for _, c := range cids {
			needed[c] = true
		}
	}
	f.mu.Unlock()
	for _, s := range owned {
		if needed[s] {
			continue
		}
		if c, err := cid.Decode(s); err == nil {
			if err := f.n.Unfollow(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *releaseFeature) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/v1/follow-app", f.adminFollowApp(true))
	mux.HandleFunc("POST /admin/v1/unfollow-app", f.adminFollowApp(false))
	mux.HandleFunc("POST /admin/v1/release", f.adminRelease)
	mux.HandleFunc("POST /admin/v1/build", f.adminBuild)
	mux.HandleFunc("POST /admin/v1/app", f.adminApp)
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody)).Decode(v); err != nil {
		adminError(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return false
	}
	return true
}

func (f *releaseFeature) adminFollowApp(follow bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			App string `json:"app"`
		}
		if !decodeAdmin(w, r, &req) {
			return
		}
		if !protocol.IsAppID(req.App) {
			adminError(w, http.StatusBadRequest, fmt.Errorf("%q is not an app ID", req.App))
			return
		}
		var err error
		if follow {
			err = f.followApp(req.App)
		} else {
			err = f.unfollowApp(req.App)
		}
		if err != nil {
			adminError(w, http.StatusInternalServerError, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// ReleaseRequest is the body of POST /admin/v1/release: a signed release
// (protocol.SignedRelease bytes) to check, or to apply and gossip.
type ReleaseRequest struct {
	Release []byte `json:"release"`
	// Check only tells whether the record would be accepted: nothing is
	// applied, followed or published.
	Check bool `json:"check,omitempty"`
}

// ReleaseResult is the answer of POST /admin/v1/release, and what
// `mirrornet release --json` prints.
type ReleaseResult struct {
	App     string `json:"app"`
	Version uint64 `json:"version"`
	CID     string `json:"cid"`
}

// adminRelease checks a signed release, and unless Check: requires its
// bundle to be held, publishes it (our own validator applies it), follows
// the app and counts the bundle as followed for it (so it is dropped once a
// later release is held). A refused record is a 409 with the rule broken.
func (f *releaseFeature) adminRelease(w http.ResponseWriter, r *http.Request) {
	var req ReleaseRequest
	if !decodeAdmin(w, r, &req) {
		return
	}
	rel, err := f.addRelease(req.Release, true)
	if rel == nil {
		adminError(w, http.StatusBadRequest, fmt.Errorf("release record refused: %w", err))
		return
	}
	if err != nil {
		adminError(w, http.StatusConflict, fmt.Errorf("release %s@%d refused: %w", rel.Record.App, rel.Record.Version, err))
		return
	}
	rec := rel.Record
	res := ReleaseResult{App: rec.App, Version: rec.Version, CID: rec.CID}
	if !req.Check {
		c, err := cid.Decode(rec.CID)
		if err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("release cid %q: %w", rec.CID, err))
			return
		}
		if !f.n.store.Held(c) {
			adminError(w, http.StatusConflict, fmt.Errorf("%w: %s", ErrNotHeld, c))
			return
		}
		// Follow the app first, so that the book's bound on apps this
		// mirror does not follow cannot refuse its own release.
		f.mu.Lock()
		_, wasFollowed := f.apps[rec.App]
		f.mu.Unlock()
		if err := f.followApp(rec.App); err != nil {
			adminError(w, http.StatusInternalServerError, err)
			return
		}
		// Publish runs our own validator, which applies the record.
		perr := f.n.publish(protocol.TopicRelease, req.Release)
		f.mu.Lock()
		got, ok := f.book.Get(rec.App, rec.Version)
		applied := ok && got.CID == rec.CID && got.Time == rec.Time
		f.mu.Unlock()
		if !applied {
			if !wasFollowed {
				_ = f.unfollowApp(rec.App)
			}
			if perr == nil {
				perr = errors.New("not applied")
			}
			adminError(w, http.StatusConflict, fmt.Errorf("release %s@%d refused: %w", rec.App, rec.Version, perr))
			return
		}
		if err := f.saveBook(); err != nil {
			adminError(w, http.StatusInternalServerError, err)
			return
		}
		f.own(rec.App, c.String())
		f.poke()
		f.n.log.Info("release published", "app", rec.App, "name", rec.Name, "version", rec.Version, "cid", rec.CID)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// adminBuild checks a build attestation and gossips it.
func (f *releaseFeature) adminBuild(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Attestation []byte `json:"attestation"`
	}
	if !decodeAdmin(w, r, &req) {
		return
	}
	if err := f.addBuild(req.Attestation, true); err != nil {
		adminError(w, http.StatusConflict, fmt.Errorf("build attestation refused: %w", err))
		return
	}
	if err := f.n.publish(protocol.TopicBuild, req.Attestation); err != nil {
		adminError(w, http.StatusConflict, fmt.Errorf("build attestation not published: %w", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// adminApp answers {"app": ID, "version": N} with the app's AppStatus.
func (f *releaseFeature) adminApp(w http.ResponseWriter, r *http.Request) {
	var req struct {
		App     string `json:"app"`
		Version uint64 `json:"version"`
	}
	if !decodeAdmin(w, r, &req) {
		return
	}
	st, err := f.status(req.App, req.Version)
	if err != nil {
		adminError(w, statusCode(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

func statusCode(err error) int {
	if errors.Is(err, ErrUnknownApp) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

// AppStatus is the JSON of GET /api/v1/app/{app-id} and `mirrornet status
// --app APP-ID --json`: the app's latest (or requested) release, whether it
// is current or stale, what builders say, and which mirrors hold it.
type AppStatus struct {
	App     string `json:"app"`
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	CID     string `json:"cid"`
	// Status is "current" or "stale" (the latest record has expired and
	// nothing newer is known) for the latest release; "superseded" for an
	// older version asked for by number.
	Status  string `json:"status"`
	Time    string `json:"time"`
	Expires string `json:"expires"`
	Repo    string `json:"repo,omitempty"`
	Commit  string `json:"commit,omitempty"`
	Build   string `json:"build,omitempty"`
	// Maintainers is the app's maintainer set as of this release.
	Maintainers protocol.MaintainerSet `json:"maintainers"`
	// Integrity is "verified", "unverified" or "diverges"; Builders are the
	// independent builders that agree; Divergent who built another CID.
	Integrity string              `json:"integrity"`
	Builders  []string            `json:"builders"`
	Divergent map[string][]string `json:"divergent,omitempty"`
	// DeclaredBuilders is the builder set the release names (absent: none);
	// only its keys' attestations count.
	DeclaredBuilders *protocol.MaintainerSet `json:"declared_builders,omitempty"`
	// Unlisted counts attestations of this version by keys the release
	// does not declare: shown, ignored, not kept.
	Unlisted int `json:"unlisted"`
	// Summary is the one-line form (release.Summary).
	Summary string `json:"summary"`
	// Holders are the peer IDs of alive mirrors that announce the CID.
	Holders []string `json:"holders"`
	// Followed: this mirror follows the app; Held: it holds this CID.
	Followed bool `json:"followed"`
	Held     bool `json:"held"`
	// Versions lists every version of the app known here.
	Versions []uint64 `json:"versions"`
}

// status builds the AppStatus of app (version 0: the latest).
func (f *releaseFeature) status(app string, version uint64) (AppStatus, error) {
	st, err := f.statusWithout(app, version)
	if err != nil {
		return st, err
	}
	if c, err := cid.Decode(st.CID); err == nil {
		st.Held = f.n.store.Held(c)
		for _, m := range f.n.view.Holders(c.String(), f.n.clock()) {
			st.Holders = append(st.Holders, m.Peer.String())
		}
		slices.Sort(st.Holders)
	}
	return st, nil
}

// statusWithout is status without Held and Holders (which list the whole
// view): a page about many apps counts holders in one pass of its own.
func (f *releaseFeature) statusWithout(app string, version uint64) (AppStatus, error) {
	if !protocol.IsAppID(app) {
		return AppStatus{}, fmt.Errorf("%w: %q is not an app ID", release.ErrBadRef, app)
	}
	now := f.n.clock()
	f.mu.Lock()
	rec, ok := f.book.Get(app, version)
	latest, st := f.book.Current(app, now)
	builds := f.builds.For(app, rec.Version)
	unlisted := f.unlisted[buildKey{app, rec.Version}]
	_, followed := f.apps[app]
	var versions []uint64
	for _, raw := range f.book.Raw(app) {
		if r, _ := attest.VerifyRelease(raw, now); r != nil {
			versions = append(versions, r.Record.Version)
		}
	}
	f.mu.Unlock()
	if !ok {
		if version != 0 && st != release.StatusUnknown {
			return AppStatus{}, fmt.Errorf("%w: %s has no version %d (latest %d)", ErrUnknownApp, app, version, latest.Version)
		}
		return AppStatus{}, fmt.Errorf("%w: %s", ErrUnknownApp, app)
	}
	integ := release.CheckIntegrity(rec, builds)
	status := st.String()
	if rec.Version != latest.Version {
		status = "superseded"
	}
	out := AppStatus{
		App: rec.App, Name: rec.Name, Version: rec.Version, CID: rec.CID, Status: status,
		Time:    time.UnixMilli(rec.Time).UTC().Format(time.RFC3339),
		Expires: time.UnixMilli(rec.Expires).UTC().Format(time.RFC3339),
		Repo:    rec.Repo, Commit: rec.Commit, Build: rec.Build, Maintainers: rec.Maintainers,
		Integrity: string(integ.State), Builders: integ.Builders, Divergent: integ.Divergent,
		DeclaredBuilders: rec.Builders, Unlisted: unlisted,
		Followed: followed, Holders: []string{}, Versions: versions,
	}
	if out.Builders == nil {
		out.Builders = []string{}
	}
	sumStatus := st
	if status == "superseded" {
		sumStatus = release.StatusStale
	}
	out.Summary = release.Summary(rec, sumStatus, integ)
	return out, nil
}

func (f *releaseFeature) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/app/{app}", f.serveApp)
	mux.HandleFunc("GET /badge/app/{app}/{file}", f.serveBadge)
}

func (f *releaseFeature) serveApp(w http.ResponseWriter, r *http.Request) {
	var version uint64
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			httpJSONError(w, http.StatusBadRequest, fmt.Errorf("version %q is not a positive integer", v))
			return
		}
		version = n
	}
	st, err := f.status(r.PathValue("app"), version)
	if err != nil {
		httpJSONError(w, statusCode(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

func httpJSONError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Cache-Control", "no-store")
	adminError(w, code, err)
}

// badgeMaxAge is the Cache-Control max-age of integrity badges: a new
// release or attestation shows within a minute.
const badgeMaxAge = 60

func (f *releaseFeature) serveBadge(w http.ResponseWriter, r *http.Request) {
	b := badge.Unknown("integrity")
	if st, err := f.status(r.PathValue("app"), 0); err == nil {
		b = badge.Integrity(st.Integrity, len(st.Builders))
	} else if !errors.Is(err, ErrUnknownApp) {
		http.Error(w, "badge: "+err.Error(), http.StatusBadRequest)
		return
	}
	var body []byte
	switch r.PathValue("file") {
	case "integrity.svg":
		w.Header().Set("Content-Type", "image/svg+xml; charset=utf-8")
		body = b.SVG()
	case "integrity.json":
		w.Header().Set("Content-Type", "application/json")
		body = b.JSON()
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(badgeMaxAge))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}
