// Package sampledapp is the sample decentralised app that mirrornet's
// testnet, docker-compose file and tests publish: a small static site
// (index.html, app.js, style.css, logo.svg) that says it is served by
// mirrornet and shows its own origin and the time.
//
// The files live in site/ so that publishing the directory from disk (as the
// compose publisher does) and writing FS out with WriteTo give the same
// bundle CID.
package sampledapp

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed site
var files embed.FS

// FS is the sample dapp's files at its root (index.html, app.js, ...).
var FS fs.FS = mustSub(files, "site")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embed directive guarantees dir exists
	}
	return sub
}

// WriteTo writes the sample dapp's files into dir (created if missing,
// mode 0755 directories, 0644 files).
func WriteTo(dir string) error {
	return fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(FS, p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return fmt.Errorf("sampledapp: %w", err)
		}
		return nil
	})
}
