package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/protocol"
)

// releaseResolver finds the release record an app reference names (version
// 0: the latest). The node wiring provides one through newReleaseResolver;
// verify uses it for --app without --expect.
type releaseResolver interface {
	Release(ctx context.Context, ref release.AppRef) (protocol.Release, error)
}

// newReleaseResolver opens a resolver for the node whose data directory is
// dataDir. nil until the node side is wired: then --app needs --expect.
var newReleaseResolver func(ctx context.Context, env *cmdEnv, dataDir string) (releaseResolver, error)

const verifySynopsis = `--source DIR --build "CMD" --out OUTDIR [--expect CID | --app APP-ID[@N]] [--against DIR] [--key KEY]

Copy DIR into a clean temporary directory, run CMD there with sh -c, and compute
the bundle CID of OUTDIR (relative to the copy) exactly as 'mirrornet publish' and
'ipfs add -r' (unixfs-v1-2025) would. Compare it with --expect, or with the CID of
the release --app names. When they differ, print which files differ: against the
files of --against DIR if given, else the built tree's per-file CIDs. With --key,
sign a build attestation ("this source, built with CMD, gives CID") and print it
or write it to --attestation FILE. Exit status 1 when the CIDs differ.`

// runVerify rebuilds a bundle from source and checks its CID.
func runVerify(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "verify", verifySynopsis)
	source := fs.String("source", "", "source directory to build (copied, never modified)")
	buildCmd := fs.String("build", "", "build command, run with sh -c in the copy")
	out := fs.String("out", "", "build output directory, relative to the source root")
	expect := fs.String("expect", "", "expected bundle CID")
	appFlag := fs.String("app", "", "app ID (or APP-ID@VERSION) whose release CID to expect; needs a node")
	version := fs.Uint64("version", 0, "release version of --app (default: latest)")
	against := fs.String("against", "", "reference directory to diff the built tree against, file by file")
	keyFile := fs.String("key", "", "builder key file: sign a build attestation")
	attOut := fs.String("attestation", "", "write the signed build attestation to this file (default: print base64)")
	repo := fs.String("repo", "", "source repository URL, recorded in the attestation")
	commit := fs.String("commit", "", "source commit, recorded in the attestation (default: git rev-parse HEAD of --source, if any)")
	keep := fs.Bool("keep", false, "keep the temporary build directory")
	dataDir := dataFlag(fs)
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("verify: unexpected argument %q", pos[0])
	}
	switch {
	case *source == "":
		return usageErrorf("verify: --source is required")
	case *buildCmd == "":
		return usageErrorf("verify: --build is required")
	case *out == "":
		return usageErrorf("verify: --out is required")
	case !filepath.IsLocal(*out):
		return usageErrorf("verify: --out %q must be a path inside the source", *out)
	}
	var ref release.AppRef
	if *appFlag != "" {
		if ref, err = release.ParseAppRef(*appFlag); err != nil {
			return usageErrorf("verify: --app: %v", err)
		}
		if *version != 0 {
			ref.Version = *version
		}
	} else if *version != 0 {
		return usageErrorf("verify: --version needs --app")
	}
	if *expect != "" {
		if _, err := cid.Decode(*expect); err != nil {
			return usageErrorf("verify: --expect %q is not a CID: %v", *expect, err)
		}
	}
	if *keyFile != "" && *appFlag != "" && ref.Version == 0 && *expect != "" {
		return usageErrorf("verify: an attestation for --app needs its version: use --app APP-ID@N or --version N")
	}

	// Load the key first: a bad key file should fail before a long build.
	var signer func(protocol.BuildAttestation) ([]byte, error)
	var builderID string
	if *keyFile != "" {
		k, err := release.LoadKeyFile(*keyFile)
		if err != nil {
			return commandError("verify", err)
		}
		if builderID, err = release.PublicKey(k); err != nil {
			return commandError("verify", err)
		}
		signer = func(b protocol.BuildAttestation) ([]byte, error) { return attest.SignBuild(k, b) }
	}

	// Find the expected CID (and the release it comes from).
	want := *expect
	if *appFlag != "" && want == "" {
		if newReleaseResolver == nil {
			return fmt.Errorf("verify: looking up %s needs a running node, which this build cannot reach yet: pass --expect CID", ref)
		}
		res, err := newReleaseResolver(ctx, env, *dataDir)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		rec, err := res.Release(ctx, ref)
		if err != nil {
			return fmt.Errorf("verify: release %s: %w", ref, err)
		}
		want, ref.Version = rec.CID, rec.Version
		fmt.Fprintf(env.stdout, "release:  %s@%d (%s)\n", rec.App, rec.Version, rec.Name)
	}

	work, err := os.MkdirTemp("", "mirrornet-verify-")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if *keep {
		fmt.Fprintf(env.stderr, "verify: build directory %s kept\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	srcCopy := filepath.Join(work, "src")
	if err := copyTree(*source, srcCopy); err != nil {
		return fmt.Errorf("verify: copy source: %w", err)
	}
	sh := exec.CommandContext(ctx, "sh", "-c", *buildCmd)
	sh.Dir = srcCopy
	sh.Stdout, sh.Stderr = env.stderr, env.stderr
	if err := sh.Run(); err != nil {
		return fmt.Errorf("verify: build command %q failed: %w", *buildCmd, err)
	}
	outDir := filepath.Join(srcCopy, *out)
	if _, err := os.Stat(outDir); err != nil {
		return fmt.Errorf("verify: build output %s: %w", *out, err)
	}
	got, err := treeCID(ctx, outDir)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	fmt.Fprintf(env.stdout, "built:    %s\n", got)

	if signer != nil {
		cm := *commit
		if cm == "" {
			cm = gitHead(ctx, *source)
		}
		now := time.Now()
		b := protocol.BuildAttestation{
			Builder: builderID, Seq: uint64(now.UnixMilli()), Time: now.UnixMilli(),
			Repo: *repo, Commit: cm, Build: *buildCmd, CID: got,
		}
		if ref.App != "" && ref.Version != 0 {
			b.App, b.Version = ref.App, ref.Version
		}
		raw, err := signer(b)
		if err != nil {
			return fmt.Errorf("verify: sign attestation: %w", err)
		}
		// Hand it to the local node, if one runs, to gossip it.
		if sent, err := submitBuild(ctx, *dataDir, raw); err != nil {
			fmt.Fprintf(env.stderr, "verify: the local node did not take the attestation: %v\n", err)
		} else if sent {
			fmt.Fprintln(env.stdout, "gossiped: the local node publishes the attestation")
		}
		if *attOut != "" {
			if err := os.WriteFile(*attOut, raw, 0o644); err != nil {
				return fmt.Errorf("verify: write attestation: %w", err)
			}
			fmt.Fprintf(env.stdout, "attested: %s by %s\n", *attOut, builderID)
		} else {
			fmt.Fprintf(env.stdout, "attested: %s by %s\n", base64.StdEncoding.EncodeToString(raw), builderID)
		}
	}

	var diff []release.FileChange
	var refCID string
	if *against != "" {
		if refCID, err = treeCID(ctx, *against); err != nil {
			return fmt.Errorf("verify: --against: %w", err)
		}
		fmt.Fprintf(env.stdout, "against:  %s\n", refCID)
		if refCID != got {
			gotFiles, err := fileCIDs(ctx, outDir)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			wantFiles, err := fileCIDs(ctx, *against)
			if err != nil {
				return fmt.Errorf("verify: --against: %w", err)
			}
			diff = release.DiffFiles(gotFiles, wantFiles)
		}
	}
	if want != "" {
		fmt.Fprintf(env.stdout, "expected: %s\n", want)
	}
	wantOK := want == "" || sameCID(want, got)
	switch {
	case want == "" && refCID == "":
		return nil
	case wantOK && (refCID == "" || refCID == got):
		fmt.Fprintln(env.stdout, "result:   match")
		return nil
	}
	fmt.Fprintln(env.stdout, "result:   DIFFERENT")
	if *against != "" {
		for _, d := range diff {
			fmt.Fprintf(env.stdout, "  %s\n", d)
		}
		if len(diff) == 0 {
			fmt.Fprintln(env.stdout, "  (same files and contents: the difference is in directory or symlink entries)")
		}
	} else {
		files, err := fileCIDs(ctx, outDir)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		fmt.Fprintln(env.stdout, "files of the built tree (compare with 'ipfs ls' of the expected CID, or rerun with --against DIR):")
		for _, p := range slices.Sorted(maps.Keys(files)) {
			fmt.Fprintf(env.stdout, "  %s  %s\n", files[p], p)
		}
	}
	if !wantOK {
		return fmt.Errorf("verify: built CID %s differs from expected %s", got, want)
	}
	return fmt.Errorf("verify: built CID %s differs from %s (%s)", got, *against, refCID)
}

// sameCID compares two CIDs whatever their multibase text form.
func sameCID(a, b string) bool {
	ca, err1 := cid.Decode(a)
	cb, err2 := cid.Decode(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return ca.Equals(cb)
}

// treeCID is the bundle CID of path, computed without storing blocks.
func treeCID(ctx context.Context, path string) (string, error) {
	res, err := bundle.Import(ctx, path, func(blocks.Block) error { return nil }, nil)
	if err != nil {
		return "", err
	}
	return res.Root.String(), nil
}

// fileCIDs lists every regular file under root with its CID (each file's
// DAG is the one it has inside the bundle); symlinks are listed as
// "symlink:TARGET". Paths are slash-separated and relative to root.
func fileCIDs(ctx context.Context, root string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files[rel] = "symlink:" + target
		case d.Type().IsRegular():
			c, err := treeCID(ctx, p)
			if err != nil {
				return err
			}
			files[rel] = c
		}
		return nil
	})
	return files, err
}

// copyTree copies directories, regular files (with their permission bits)
// and symlinks (as links) from src to a new directory dst.
func copyTree(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: cannot copy %s", p, info.Mode().Type())
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// gitHead is the commit checked out in dir, or "" if dir is not a git work
// tree (or git is missing).
func gitHead(ctx context.Context, dir string) string {
	b, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
