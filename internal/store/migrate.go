package store

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/bundle/verify"
)

// migrate moves a store directory of the file-per-block layout (layout 1:
// DIR/blocks/XX/KEY, one file per block) to pack files, and finishes a
// migration a crash interrupted. It is a no-op for a directory already in
// the pack layout, or a new one.
//
// The old layout stays the store, untouched and usable (by this version or
// the previous one), until the migration has completed: every block is
// read, checked against its name and appended to packs in DIR/packs.migrating,
// the packs and their indexes are fsynced, and only then is that directory
// renamed to DIR/packs (the commit point), the directory fsynced, the
// layout version written, and the old block files removed. A crash before
// the rename leaves the old layout as it was (the staging directory is
// removed and the migration starts again); a crash after it leaves the
// packs complete and some old files, which the next Open absorbs (see
// absorbOld). So does a block directory an older mirrornet wrote into a
// migrated store (run after a downgrade): its blocks are added, not lost.
// A full disk stops the migration, removes the staging directory and
// returns ErrNoSpace: nothing is lost. A block file that does not match its
// name is not migrated (a held bundle that needed it is fetched again).
// bundles.json has the same format in both layouts and is kept as is.
// It reports whether old block files remain beside the packs for Open to
// absorb.
func migrate(dir string, packSize int64) (leftover bool, err error) {
	oldDir := filepath.Join(dir, blocksDir)
	packs := filepath.Join(dir, packsDir)
	staging := filepath.Join(dir, migratingDir)
	_, oldErr := os.Stat(oldDir)
	_, packErr := os.Stat(packs)
	if oldErr != nil {
		_ = os.RemoveAll(staging)
		return false, nil // nothing to migrate
	}
	if packErr == nil {
		_ = os.RemoveAll(staging)
		return true, nil // committed, or an older version wrote more since
	}
	if err := os.RemoveAll(staging); err != nil {
		return false, fmt.Errorf("store: removing %s left by an interrupted migration: %w", staging, err)
	}
	var need int64
	err = copyOldLayout(oldDir, staging, packSize, &need)
	if err == nil {
		err = os.Rename(staging, packs)
	}
	if err != nil {
		_ = os.RemoveAll(staging)
		if isNoSpace(err) {
			return false, errorf(ErrNoSpace, "store: no space left on device migrating %s to pack files (about %d MiB needed beside the old layout): free disk space and start again; the old layout is untouched",
				dir, need>>20+1)
		}
		return false, fmt.Errorf("store: migrating %s to pack files (the old layout is untouched): %w", dir, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return false, fmt.Errorf("store: migrating %s: %w", dir, err)
	}
	if err := writeVersion(dir); err != nil {
		return false, fmt.Errorf("store: migrating %s: %w", dir, err)
	}
	if err := os.RemoveAll(oldDir); err != nil {
		return false, fmt.Errorf("store: removing the migrated %s: %w", oldDir, err)
	}
	return false, nil
}

// absorbOld adds the blocks of old block files left beside the packs (a
// migration interrupted after its commit point, or an older mirrornet run
// on the migrated store) that the packs lack, checked against their names,
// makes them durable, and only then removes the old files. A full disk
// stops it with the old files untouched.
func (s *Store) absorbOld() error {
	oldDir := filepath.Join(s.dir, blocksDir)
	added := false
	err := walkOldBlocks(oldDir, func(name string) bool {
		_, ok := s.lookup(name)
		return !ok
	}, func(name string, c cid.Cid, data []byte) error {
		if err := s.appendBlock(name, c.Hash(), data); err != nil {
			return err
		}
		added = true
		s.mu.Lock()
		s.usage += int64(len(data))
		s.mu.Unlock()
		return nil
	}, nil)
	if err == nil && added {
		s.mu.Lock()
		a := s.active
		s.mu.Unlock()
		if a != nil {
			err = s.syncPack(a)
		}
	}
	if err != nil {
		if isNoSpace(err) {
			return errorf(ErrNoSpace, "store: no space left on device adding the old block files of %s to its packs: free disk space and start again; the old files are untouched", oldDir)
		}
		return fmt.Errorf("store: adding the old block files of %s to its packs (they are untouched): %w", oldDir, err)
	}
	if err := os.RemoveAll(oldDir); err != nil {
		return fmt.Errorf("store: removing the migrated %s: %w", oldDir, err)
	}
	return nil
}

// copyOldLayout appends every valid block file under oldDir to sealed,
// fsynced packs in staging. need accumulates the bytes of block data read.
func copyOldLayout(oldDir, staging string, packSize int64, need *int64) error {
	if err := os.Mkdir(staging, 0o755); err != nil {
		return err
	}
	w := &packWriter{dir: staging, max: packSize}
	defer w.close()
	err := walkOldBlocks(oldDir, nil, func(_ string, c cid.Cid, data []byte) error {
		return w.add(c.Hash(), data)
	}, need)
	if err != nil {
		return err
	}
	if err := w.seal(); err != nil {
		return err
	}
	return atomicfile.SyncDir(staging)
}

// walkOldBlocks calls fn for every block file under oldDir whose name is a
// block key, that want accepts (nil: all), and whose content matches its
// name. Temporary files and foreign names are skipped; a torn or corrupt
// block is skipped too (a held bundle that needs it is fetched again). read,
// if not nil, accumulates the bytes of block data read.
func walkOldBlocks(oldDir string, want func(name string) bool, fn func(name string, c cid.Cid, data []byte) error, read *int64) error {
	return filepath.WalkDir(oldDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		c, err := keyCid(d.Name())
		if err != nil {
			return nil // not a block file
		}
		if want != nil && !want(d.Name()) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if read != nil {
			*read += int64(len(data))
		}
		if len(data) > verify.MaxBlockSize || verify.Check(c, data) != nil {
			return nil
		}
		return fn(d.Name(), c, data)
	})
}

// packWriter writes sealed packs one after another into a directory.
type packWriter struct {
	dir  string
	max  int64
	seq  uint32
	f    *os.File
	size int64
	recs []record
}

func (w *packWriter) add(m, data []byte) error {
	if w.f == nil {
		w.seq++
		f, err := os.OpenFile(filepath.Join(w.dir, packName(w.seq)+packExt), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		w.f, w.size, w.recs = f, fileHdrSize, nil
		if _, err := f.WriteAt(packHeader(), 0); err != nil {
			return err
		}
	}
	r := record{kind: kindBlock, mh: m, off: w.size, size: uint32(len(data))}
	if err := writeRecord(w.f, r.off, recordHeader(kindBlock, m, len(data)), data); err != nil {
		return err
	}
	startWriteback(w.f, r.off, r.end()-r.off)
	w.size = r.end()
	w.recs = append(w.recs, r)
	if w.size >= w.max || len(w.recs) >= maxPackRecords {
		return w.seal()
	}
	return nil
}

// seal fsyncs the open pack and writes its index.
func (w *packWriter) seal() error {
	if w.f == nil {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	ix := encodeIndex(packIndex{sealed: true, covered: w.size, recs: w.recs})
	if err := atomicfile.WriteFile(filepath.Join(w.dir, packName(w.seq)+idxExt), ix, 0o644); err != nil {
		return err
	}
	err := w.f.Close()
	w.f = nil
	return err
}

func (w *packWriter) close() {
	if w.f != nil {
		w.f.Close()
	}
}
