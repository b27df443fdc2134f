package layout1

import (
	"io/fs"
	"syscall"
)

// strongFileID: the identity includes inode and ctime, which every write,
// rename over and os.Chtimes changes.
const strongFileID = true

// idOf identifies one version of a block file: its size and mtime, and on
// Linux its device, inode and ctime. Replacing the file (a new inode),
// truncating or writing it changes the identity; so does os.Chtimes, which
// can restore the mtime but always moves the ctime to now.
func idOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev = uint64(st.Dev)
		id.ino = uint64(st.Ino)
		id.ctime = st.Ctim.Nano()
	}
	return id
}
