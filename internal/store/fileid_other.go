//go:build !linux

package store

import "io/fs"

// idOf identifies one version of a block file by its size and mtime (inode
// and ctime are read on Linux only).
func idOf(fi fs.FileInfo) fileID {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
