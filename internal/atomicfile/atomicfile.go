// Package atomicfile replaces files so that a crash leaves either the old
// file or the complete new one, never a torn one: write a temporary file in
// the same directory, fsync it, rename it into place, fsync the directory.
package atomicfile

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temporary file this package makes, so
// that a directory's owner can sweep the leftovers of a crash.
const TempPrefix = ".tmp-"

// WriteFile atomically replaces path with data, with permissions mode.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return Write(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write atomically replaces path with what fill writes (buffered), with
// permissions mode. If fill fails, path is left as it was.
func Write(path string, mode os.FileMode, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	bw := bufio.NewWriter(f)
	if err := fill(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
