package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/client"
	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/progress"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

const releaseSynopsis = `PATH --app NAME|APP-ID --version N --key KEY... [--threshold T] [--maintainer PUBKEY]...
       [--repo URL] [--commit SHA] [--build "CMD"] [--expires 720h|RFC3339] [--data DIR] [--json]
       [--previous-key KEY]... [--previous-maintainer PUBKEY]... [--previous-threshold T]
       [--builder PUBKEY]... [--builder-threshold K]

Publish PATH as version N of an app: import the bundle into the local node and gossip a
release record (app ID, version, CID, source, build command, expiry) signed by every --key.
The maintainer set is the public keys of --key plus --maintainer, with threshold T (default:
the number of --key files). The first release names the app (--app NAME); its app ID is
derived from the name and that first maintainer set and printed. Later releases give --app
NAME with the same keys, or --app APP-ID. Versions only go up.

Builders: --builder names a key whose build attestations count for the release's code
integrity; K of them (default: all) must attest its CID for the badge to turn green, and any
of them attesting another CID turns it red. Attestations by other keys are shown as
"unlisted" and change nothing. Without --builder, a release by app ID keeps the builders of
the current release.

Rotation: to change the maintainer set, give the new set with --key/--maintainer/--threshold
and the current set with --previous-key/--previous-maintainer/--previous-threshold; both
thresholds must sign. After a rotation use --app APP-ID.

Everything is checked, and the record signed and checked by the node, before the bundle is
imported: a refused release publishes nothing. See docs/RELEASES.md.`

func runRelease(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "release", releaseSynopsis)
	appFlag := fs.String("app", "", "app name (first release) or app ID")
	versionFlag := fs.String("version", "", "release version, a positive integer above the current one")
	var keyFiles, maintainers, prevKeyFiles, prevMaintainers listFlag
	fs.Var(&keyFiles, "key", "maintainer key file to sign with (repeatable)")
	fs.Var(&maintainers, "maintainer", "public key of a maintainer who does not sign this release (repeatable)")
	threshold := fs.Int("threshold", 0, "signatures the maintainer set needs (default: the number of --key)")
	fs.Var(&prevKeyFiles, "previous-key", "rotation: key file of the current maintainer set (repeatable)")
	fs.Var(&prevMaintainers, "previous-maintainer", "rotation: public key of a current maintainer who does not sign (repeatable)")
	prevThreshold := fs.Int("previous-threshold", 0, "rotation: threshold of the current maintainer set (default: the number of --previous-key)")
	var builders listFlag
	fs.Var(&builders, "builder", "public key of a builder whose attestations count for code integrity (repeatable)")
	builderThreshold := fs.Int("builder-threshold", 0, "declared builders that must attest the CID (default: all of them)")
	repo := fs.String("repo", "", "source repository URL")
	commit := fs.String("commit", "", "source commit")
	buildCmd := fs.String("build", "", "build command that produces PATH from the source")
	expires := fs.String("expires", "", fmt.Sprintf("how long the release stays current: a duration (720h) or an RFC3339 time (default %s)", release.DefaultTTL))
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, `print {"app": ..., "version": ..., "cid": ...}`)
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}

	// Check every argument before touching anything.
	if len(pos) != 1 {
		return usageErrorf("release: want exactly one PATH, got %d", len(pos))
	}
	path := pos[0]
	if *appFlag == "" {
		return usageErrorf("release: --app NAME or APP-ID is required")
	}
	version, err := strconv.ParseUint(*versionFlag, 10, 64)
	if *versionFlag == "" {
		return usageErrorf("release: --version N is required")
	}
	if err != nil || version == 0 {
		return usageErrorf("release: --version %q is not a positive integer", *versionFlag)
	}
	if len(keyFiles) == 0 {
		return usageErrorf("release: at least one --key is required")
	}
	now := time.Now()
	ttl, err := parseExpiry(*expires, now)
	if err != nil {
		return usageErrorf("release: --expires: %v", err)
	}
	keys, set, err := maintainerSet("", keyFiles, maintainers, *threshold)
	if err != nil {
		return err
	}
	var builderSet *protocol.MaintainerSet
	if len(builders) > 0 {
		for _, b := range builders {
			if _, err := attest.ParseKey(b); err != nil {
				return usageErrorf("release: --builder %q is not a public key (a 12D3KooW... peer ID): %v", b, err)
			}
		}
		bs := release.MaintainerSetOf(*builderThreshold, builders...)
		if *builderThreshold == 0 {
			bs.Threshold = len(bs.Keys)
		}
		if len(bs.Keys) != len(builders) {
			return usageErrorf("release: the same key is given twice in --builder")
		}
		if bs.Threshold < 1 || bs.Threshold > len(bs.Keys) {
			return usageErrorf("release: --builder-threshold %d outside 1..%d (the number of builders)", bs.Threshold, len(bs.Keys))
		}
		builderSet = &bs
	} else if *builderThreshold != 0 {
		return usageErrorf("release: --builder-threshold needs --builder")
	}
	var prevKeys []crypto.PrivKey
	var prevSet *protocol.MaintainerSet
	if len(prevKeyFiles) > 0 || len(prevMaintainers) > 0 {
		pk, ps, err := maintainerSet("previous-", prevKeyFiles, prevMaintainers, *prevThreshold)
		if err != nil {
			return err
		}
		prevKeys, prevSet = pk, &ps
	} else if *prevThreshold != 0 {
		return usageErrorf("release: --previous-threshold needs --previous-key or --previous-maintainer")
	}

	ac, err := node.DialAdmin(*data)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	p := release.Params{Version: version, Repo: *repo, Commit: *commit, Build: *buildCmd,
		Maintainers: set, Previous: prevSet, Builders: builderSet, Time: now, TTL: ttl}
	if protocol.IsAppID(*appFlag) {
		st, err := appStatusFromNode(ctx, ac, *appFlag, 0)
		if err != nil {
			return fmt.Errorf("release: %w (for an app's first release give --app NAME)", err)
		}
		p.App, p.Name = st.App, st.Name
		if p.Builders == nil {
			p.Builders = st.DeclaredBuilders
		}
	} else {
		if strings.HasPrefix(*appFlag, protocol.AppIDPrefix) && len(*appFlag) > 40 {
			return usageErrorf("release: --app %q looks like a mistyped app ID", *appFlag)
		}
		p.Name = *appFlag
	}

	// The bundle's CID, computed without storing anything.
	imp, err := bundle.Import(ctx, path, func(blocks.Block) error { return nil }, nil)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	p.CID = imp.Root.String()
	raw, err := release.Sign(p, append(keys, prevKeys...)...)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	var check node.ReleaseResult
	if err := ac.Post(ctx, "/admin/v1/release", node.ReleaseRequest{Release: raw, Check: true}, &check); err != nil {
		return fmt.Errorf("release: %w", err)
	}

	// Import, then submit the record for real. A bundle the node did not
	// follow before is unfollowed again if the record is refused.
	before, err := ac.List(ctx)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	had := false
	for _, b := range before {
		had = had || b.CID == p.CID
	}
	bar := progress.New(env.stderr, isTerminal(env.stderr) && !*asJSON, "importing", inputSize(path))
	res, err := ac.Import(ctx, path, bar.Set)
	bar.Finish()
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	var out node.ReleaseResult
	err = ac.Post(ctx, "/admin/v1/release", node.ReleaseRequest{Release: raw}, &out)
	if err == nil && res.CID != p.CID {
		err = fmt.Errorf("imported CID %s differs from the computed %s (did PATH change?)", res.CID, p.CID)
	}
	if err != nil {
		if !had {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if uerr := ac.Unfollow(uctx, res.CID); uerr != nil {
				err = fmt.Errorf("%w (and unfollowing the imported bundle failed: %v)", err, uerr)
			}
			cancel()
		}
		return fmt.Errorf("release: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(env.stdout).Encode(out)
	}
	fmt.Fprintf(env.stdout, "%s v%d %s\napp ID: %s\n", p.Name, out.Version, out.CID, out.App)
	return nil
}

// maintainerSet loads key files and builds the maintainer set they and the
// extra public keys form. prefix names the flags in errors.
func maintainerSet(prefix string, keyFiles, pubs []string, threshold int) ([]crypto.PrivKey, protocol.MaintainerSet, error) {
	var keys []crypto.PrivKey
	var all []string
	for _, f := range keyFiles {
		k, err := release.LoadKeyFile(f)
		if err != nil {
			return nil, protocol.MaintainerSet{}, err
		}
		pub, err := release.PublicKey(k)
		if err != nil {
			return nil, protocol.MaintainerSet{}, fmt.Errorf("release: %s: %w", f, err)
		}
		keys, all = append(keys, k), append(all, pub)
	}
	for _, s := range pubs {
		if _, err := attest.ParseKey(s); err != nil {
			return nil, protocol.MaintainerSet{}, usageErrorf("release: --%smaintainer %q is not a public key (a 12D3KooW... peer ID): %v", prefix, s, err)
		}
		all = append(all, s)
	}
	set := release.MaintainerSetOf(threshold, all...)
	if threshold == 0 {
		set.Threshold = len(keyFiles)
	}
	if len(set.Keys) != len(all) {
		return nil, protocol.MaintainerSet{}, usageErrorf("release: the same key is given twice in --%skey/--%smaintainer", prefix, prefix)
	}
	if set.Threshold < 1 || set.Threshold > len(set.Keys) {
		return nil, protocol.MaintainerSet{}, usageErrorf("release: --%sthreshold %d outside 1..%d (the number of maintainers)", prefix, set.Threshold, len(set.Keys))
	}
	if set.Threshold > len(keyFiles) {
		return nil, protocol.MaintainerSet{}, usageErrorf("release: --%sthreshold %d needs %d signatures but only %d --%skey files are given", prefix, set.Threshold, set.Threshold, len(keyFiles), prefix)
	}
	return keys, set, nil
}

// parseExpiry turns --expires into a TTL from now: "" is the default, a
// duration ("720h") or an RFC3339 time.
func parseExpiry(s string, now time.Time) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return 0, fmt.Errorf("%q is not in the future", s)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a duration (720h) nor an RFC3339 time", s)
	}
	if !t.After(now) {
		return 0, fmt.Errorf("%s is not in the future", s)
	}
	return t.Sub(now), nil
}

// appStatusFromNode asks the local node (admin socket) about an app.
func appStatusFromNode(ctx context.Context, ac *node.AdminClient, app string, version uint64) (node.AppStatus, error) {
	var st node.AppStatus
	err := ac.Post(ctx, "/admin/v1/app", map[string]any{"app": app, "version": version}, &st)
	return st, err
}

// nodeResolver resolves releases through the local node: the verify
// command's --app without --expect.
type nodeResolver struct{ ac *node.AdminClient }

func (r nodeResolver) Release(ctx context.Context, ref release.AppRef) (protocol.Release, error) {
	st, err := appStatusFromNode(ctx, r.ac, ref.App, ref.Version)
	if err != nil {
		return protocol.Release{}, err
	}
	if ref.Version == 0 && st.Status == "stale" {
		return protocol.Release{}, fmt.Errorf("%s v%d expired at %s and no newer release is known (stale): give --app %s@%d to check it anyway",
			st.Name, st.Version, st.Expires, st.App, st.Version)
	}
	return protocol.Release{App: st.App, Name: st.Name, Version: st.Version, CID: st.CID, Repo: st.Repo,
		Commit: st.Commit, Build: st.Build, Maintainers: st.Maintainers, Builders: st.DeclaredBuilders}, nil
}

func init() {
	newReleaseResolver = func(ctx context.Context, env *cmdEnv, dataDir string) (releaseResolver, error) {
		ac, err := node.DialAdmin(dataDir)
		if err != nil {
			return nil, err
		}
		return nodeResolver{ac}, nil
	}
}

// submitBuild hands a signed build attestation to the local node, if one
// runs, to gossip it. It reports whether a node took it.
func submitBuild(ctx context.Context, dataDir string, raw []byte) (bool, error) {
	ac, err := node.DialAdmin(dataDir)
	if err != nil {
		if errors.Is(err, node.ErrNoNode) {
			return false, nil
		}
		return false, err
	}
	if err := ac.Post(ctx, "/admin/v1/build", map[string][]byte{"attestation": raw}, nil); err != nil {
		if errors.Is(err, node.ErrNoNode) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// isAppRef reports whether s is "APP-ID" or "APP-ID@..." (get's argument).
func isAppRef(s string) bool {
	app, _, _ := strings.Cut(s, "@")
	return protocol.IsAppID(app)
}

// resolveAppForGet resolves `mirrornet get APP-ID[@N]` to a CID through
// the light client: records from the mirrors, verified here.
func resolveAppForGet(ctx context.Context, env *cmdEnv, ref string, boots []string) (cid.Cid, error) {
	if _, err := release.ParseAppRef(ref); err != nil {
		return cid.Undef, usageErrorf("get: %v", err)
	}
	if len(boots) == 0 {
		return cid.Undef, usageErrorf("get: no mirror to start from: give --bootstrap ADDR or set MIRRORNET_BOOTSTRAP")
	}
	for _, b := range boots {
		if err := client.ParseBootstrap(b); err != nil {
			return cid.Undef, usageErrorf("get: %v", err)
		}
	}
	c, rec, err := client.ResolveApp(ctx, ref, client.Options{Bootstrap: boots})
	if err != nil {
		return cid.Undef, fmt.Errorf("get: %w", err)
	}
	fmt.Fprintf(env.stderr, "%s v%d (%s) is %s, expires %s\n", rec.Name, rec.Version, rec.App, c,
		time.UnixMilli(rec.Expires).UTC().Format(time.RFC3339))
	return c, nil
}
