//go:build !linux

package layout1

import "io/fs"

// strongFileID: without inode and ctime a same-size copy that keeps its
// mtime (cp -p, rsync -a, a restore) would look unchanged, so the store's
// verified-read cache is off here.
const strongFileID = false

// idOf identifies one version of a block file by its size and mtime (inode
// and ctime are read on Linux only).
func idOf(fi fs.FileInfo) fileID {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
