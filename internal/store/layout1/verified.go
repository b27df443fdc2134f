package layout1

import (
	"sync"
	"time"
)

// DefaultVerifiedCache is the default Options.VerifiedCache: 65536 block
// files (64 GiB of 1 MiB leaves) for about 10 MiB of memory.
const DefaultVerifiedCache = 1 << 16

// fileID is the identity of one version of a block file (see idOf).
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// verifiedCache remembers, per block key, the identity of the file version
// this process last hashed (or wrote) and found valid. A block whose file
// still has that identity need not be hashed again on a read; any other
// version is hashed. It holds no block data and at most max entries; when
// full, an arbitrary entry is evicted (its block is simply hashed on its
// next read). Only reads consult it: Scrub never does.
type verifiedCache struct {
	mu  sync.Mutex
	max int
	m   map[string]fileID
}

func newVerifiedCache(max int) *verifiedCache {
	return &verifiedCache{max: max, m: map[string]fileID{}}
}

// has reports whether key's file version id was verified.
func (v *verifiedCache) has(key string, id fileID) bool {
	if v.max <= 0 {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	got, ok := v.m[key]
	return ok && got == id
}

// racyWindow: a file whose mtime or ctime is this close to the moment it
// was verified is not cached, since a second write within the same
// timestamp tick could leave its identity unchanged (Git's "racy clean"
// problem). Its next read hashes it again and caches it then.
const racyWindow = 100 * time.Millisecond

// add records that key's file version id hashes to key, as verified at now.
func (v *verifiedCache) add(key string, id fileID, now time.Time) {
	if v.max <= 0 {
		return
	}
	if changed := max(id.mtime, id.ctime); now.UnixNano()-changed < int64(racyWindow) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[key]; !ok && len(v.m) >= v.max {
		for k := range v.m {
			delete(v.m, k)
			break
		}
	}
	v.m[key] = id
}

// forget drops key (its file was removed or found corrupt).
func (v *verifiedCache) forget(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, key)
}

func (v *verifiedCache) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}
