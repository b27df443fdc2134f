package client

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	mbundle "github.com/mirrornet/mirrornet/internal/bundle"
)

// Publish and get -o agree on which file names a bundle may hold: every
// name publish imports, get writes back, and every name get refuses,
// publish refuses first (with an error naming the file), so no published
// bundle is refused at download time.
func TestPublishAndGetAgreeOnNames(t *testing.T) {
	names := []string{
		"index.html", ".well-known", "a b", "ü.txt", "..x", "x..", "-n", "a:b", "*", "tab\tname", "nl\nname",
		`back\slash`, `..\..\evil`, // legal on Linux; a separator on Windows
		"", ".", "..", "a/b", "nul\x00byte", // cannot exist on Linux: only get is asked
	}
	for _, name := range names {
		// The bundle a foreign tool could make: one entry with this name.
		res := oneEntryBundle(t, name)
		getErr := res.WriteDir(filepath.Join(t.TempDir(), "out"))
		if getErr != nil && !errors.Is(getErr, mbundle.ErrBadName) {
			t.Errorf("get -o of an entry named %q: %v, want nil or ErrBadName", name, getErr)
		}

		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, name), []byte("x"), 0o644); err != nil || strings.ContainsAny(name, "/\x00") || name == "" || name == "." || name == ".." {
			// The file system cannot hold this name: publish can never
			// see it, and get must refuse it.
			if getErr == nil {
				t.Errorf("get -o wrote an entry named %q", name)
			}
			continue
		}
		_, pubErr := mbundle.Import(context.Background(), src, func(blocks.Block) error { return nil }, nil)
		if (pubErr == nil) != (getErr == nil) {
			t.Errorf("name %q: publish says %v, get -o says %v", name, pubErr, getErr)
		}
		if pubErr != nil {
			msg := pubErr.Error()
			if !errors.Is(pubErr, mbundle.ErrBadName) || !strings.Contains(msg, filepath.Join(src, name)) || strings.Count(msg, "\n") > strings.Count(name, "\n") {
				t.Errorf("publish of %q: %q, want one ErrBadName line naming the file", name, msg)
			}
		}
	}
}

// oneEntryBundle is a directory bundle holding one small file called name,
// built with boxo directly, without publish's name check.
func oneEntryBundle(t *testing.T, name string) *Result {
	t.Helper()
	ctx := context.Background()
	ds := &storeDAG{memDAG: memDAG{}}
	prof := uio.UnixFS_v1_2025
	leaf, err := prof.CidBuilder().Sum([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := mdag.NewRawNodeWPrefix([]byte("x"), leaf.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	ds.Add(ctx, file)
	d, err := uio.NewDirectory(ds, uio.WithCidBuilder(prof.CidBuilder()))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AddChild(ctx, name, file); err != nil {
		t.Fatal(err)
	}
	root, err := d.GetNode()
	if err != nil {
		t.Fatal(err)
	}
	ds.Add(ctx, root)
	res := &Result{Root: root.Cid(), blocks: map[cid.Cid][]byte{}}
	for c, data := range ds.memDAG {
		res.blocks[c] = data
	}
	return res
}
