package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multibase"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// bookResolver answers from a release book, as the node wiring will.
type bookResolver struct{ b *release.Book }

func (r bookResolver) Release(ctx context.Context, ref release.AppRef) (protocol.Release, error) {
	rec, ok := r.b.Get(ref.App, ref.Version)
	if !ok {
		return protocol.Release{}, os.ErrNotExist
	}
	return rec, nil
}

// writeSource makes a small app whose build copies src/ into dist/ and
// stamps a version file.
func writeSource(t *testing.T, js string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"src/index.html": "<h1>demo</h1>\n",
		"src/app.js":     js,
		"src/css/a.css":  "h1{color:red}\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const sampleBuild = "mkdir -p dist && cp -R src/. dist/ && echo v1 > dist/VERSION"

func TestVerifyAgreesWithRelease(t *testing.T) {
	ctx := context.Background()
	// The publisher builds and releases.
	pubSrc := writeSource(t, "console.log(1)\n")
	if _, _, err := runInProcess(t, "verify", "--source", pubSrc, "--build", sampleBuild, "--out", "dist"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pubSrc, "dist")); !os.IsNotExist(err) {
		t.Fatal("verify built inside the source directory")
	}
	ref := t.TempDir()
	os.WriteFile(filepath.Join(ref, "VERSION"), []byte("v1\n"), 0o644)
	copyTreeInto(t, filepath.Join(pubSrc, "src"), ref)
	cid, err := treeCID(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "maint.key")
	pub, err := release.GenerateKeyFile(keyPath, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The release declares the builder whose attestation will count.
	builderKey := filepath.Join(t.TempDir(), "builder.key")
	builder, err := release.GenerateKeyFile(builderKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bset := release.MaintainerSetOf(1, builder)
	now := time.Now()
	raw, err := release.Build(release.Params{Name: "demo", Version: 1, CID: cid, Build: sampleBuild,
		Maintainers: release.MaintainerSetOf(1, pub), Builders: &bset, Time: now}, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := attest.VerifyRelease(raw, now)
	if err != nil {
		t.Fatal(err)
	}
	book := release.NewBook()
	if err := book.Apply(rel, now); err != nil {
		t.Fatal(err)
	}
	prev := newReleaseResolver
	newReleaseResolver = func(context.Context, *cmdEnv, string) (releaseResolver, error) { return bookResolver{book}, nil }
	t.Cleanup(func() { newReleaseResolver = prev })

	// The builder rebuilds from the same source and attests.
	src := writeSource(t, "console.log(1)\n")
	out, _, err := runInProcess(t, "verify", "--source", src, "--build", sampleBuild, "--out", "dist",
		"--app", rel.Record.App, "--key", builderKey, "--repo", "https://example.org/demo.git", "--commit", "abc123")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if !strings.Contains(out, "result:   match") || !strings.Contains(out, "built:    "+cid) {
		t.Fatalf("output:\n%s", out)
	}
	// The attestation verifies and counts towards the release's integrity.
	var b64 string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "attested: "); ok {
			b64 = strings.Fields(rest)[0]
		}
	}
	envBytes, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("attestation %q: %v", b64, err)
	}
	st, err := attest.Verify(envBytes, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Build.Builder != builder || st.Build.CID != cid || st.Build.App != rel.Record.App || st.Build.Version != 1 || st.Build.Commit != "abc123" {
		t.Fatalf("attestation %+v", st.Build)
	}
	if got := release.CheckIntegrity(rel.Record, []protocol.BuildAttestation{*st.Build}); got.String() != "verified · 1 builder" {
		t.Fatalf("integrity %q", got)
	}
}

func TestVerifyReportsChangedFile(t *testing.T) {
	ctx := context.Background()
	good := writeSource(t, "console.log(1)\n")
	ref := filepath.Join(t.TempDir(), "ref")
	if _, _, err := runInProcess(t, "verify", "--source", good, "--build", sampleBuild+" && cp -R dist "+ref, "--out", "dist"); err != nil {
		t.Fatal(err)
	}
	want, err := treeCID(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	bad := writeSource(t, "console.log('evil')\n")

	out, _, err := runInProcess(t, "verify", "--source", bad, "--build", sampleBuild, "--out", "dist", "--expect", want)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "differs from expected "+want) {
		t.Fatalf("changed source verified: %v\n%s", err, out)
	}
	if !strings.Contains(out, "result:   DIFFERENT") || !strings.Contains(out, "  app.js") || !strings.Contains(out, "  css/a.css") {
		t.Fatalf("no per-file listing:\n%s", out)
	}

	out, _, err = runInProcess(t, "verify", "--source", bad, "--build", sampleBuild, "--out", "dist", "--against", ref)
	if err == nil {
		t.Fatalf("--against: changed tree matched\n%s", out)
	}
	if !strings.Contains(out, "changed  app.js") || strings.Contains(out, "index.html") || strings.Contains(out, "a.css") {
		t.Fatalf("diff should name app.js only:\n%s", out)
	}
	// The expected CID may be written in another multibase (base36 here).
	wantCID, _ := cid.Decode(want)
	want36, err := wantCID.StringOfBase(multibase.Base36)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = runInProcess(t, "verify", "--source", good, "--build", sampleBuild, "--out", "dist", "--against", ref, "--expect", want36)
	if err != nil || !strings.Contains(out, "result:   match") {
		t.Fatalf("same source: %v\n%s", err, out)
	}
}

func TestVerifyUsage(t *testing.T) {
	src := writeSource(t, "x")
	for _, args := range [][]string{
		{"verify", "--build", "true", "--out", "dist"},
		{"verify", "--source", src, "--out", "dist"},
		{"verify", "--source", src, "--build", "true", "--out", "../etc"},
		{"verify", "--source", src, "--build", "true", "--out", "dist", "--app", "nope"},
		{"verify", "--source", src, "--build", "true", "--out", "dist", "--version", "2"},
		{"verify", "--source", src, "--build", "true", "--out", "dist", "--expect", "bafkreifoo"},
	} {
		if _, _, err := runInProcess(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want usage error", args, err, exitCode(err))
		}
	}
	_, _, err := runInProcess(t, "verify", "--source", src, "--build", "exit 3", "--out", "dist")
	if err == nil || !strings.Contains(err.Error(), "build command") {
		t.Fatalf("failing build: %v", err)
	}
	_, _, err = runInProcess(t, "verify", "--source", src, "--build", "true", "--out", "dist", "--key", filepath.Join(src, "missing.key"))
	if err == nil || !strings.Contains(err.Error(), "key file not found") {
		t.Fatalf("missing key: %v", err)
	}
}

func copyTreeInto(t *testing.T, src, dst string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "c")
	if err := copyTree(src, tmp); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// The per-file CIDs verify prints must be the ones inside the bundle's
// DAG, or a user could not match them against 'ipfs ls'.
func TestFileCIDsMatchBundleLinks(t *testing.T) {
	ctx := context.Background()
	src := writeSource(t, strings.Repeat("x", 3<<20)) // a multi-block file
	dir := filepath.Join(src, "src")
	blocksByCID := map[string][]byte{}
	res, err := bundle.Import(ctx, dir, func(b blocks.Block) error {
		blocksByCID[b.Cid().String()] = b.RawData()
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := merkledag.DecodeProtobuf(blocksByCID[res.Root.String()])
	if err != nil {
		t.Fatal(err)
	}
	files, err := fileCIDs(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, l := range root.Links() {
		if c, ok := files[l.Name]; ok {
			if c != l.Cid.String() {
				t.Errorf("%s: listed %s, DAG has %s", l.Name, c, l.Cid)
			}
			checked++
		}
	}
	if checked != 2 {
		t.Fatalf("checked %d top-level files, want 2", checked)
	}
}
