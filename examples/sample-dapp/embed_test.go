package sampledapp

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	blocks "github.com/ipfs/go-block-format"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

func TestFilesPresent(t *testing.T) {
	var names []string
	fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	want := []string{"app.js", "index.html", "logo.svg", "style.css"}
	if !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
}

// The compose publisher imports site/ from disk; the testnet writes FS out
// with WriteTo. Both must give the same bundle CID.
func TestWriteToGivesSameCIDAsSiteDir(t *testing.T) {
	dir := t.TempDir()
	if err := WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.html", "app.js", "style.css", "logo.svg"} {
		a, _ := os.ReadFile(filepath.Join("site", name))
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(a) != string(b) {
			t.Fatalf("%s differs after WriteTo (err %v)", name, err)
		}
	}
	discard := func(blocks.Block) error { return nil }
	fromDisk, err := bundle.Import(context.Background(), "site", discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	written, err := bundle.Import(context.Background(), dir, discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fromDisk.Root != written.Root {
		t.Fatalf("site/ is %s but WriteTo output is %s", fromDisk.Root, written.Root)
	}
	t.Logf("sample dapp CID %s", fromDisk.Root)
}
