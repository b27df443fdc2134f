//go:build !linux

package store

import "os"

// startWriteback does nothing where sync_file_range is missing: MarkHeld's
// fsync writes the pages.
func startWriteback(*os.File, int64, int64) {}

// writeRecord writes a record's header and data at off.
func writeRecord(f *os.File, off int64, hdr, data []byte) error {
	if _, err := f.WriteAt(hdr, off); err != nil {
		return err
	}
	_, err := f.WriteAt(data, off+int64(len(hdr)))
	return err
}

// punchHole does nothing here: deleted bytes stay until GC compacts the
// pack.
func punchHole(*os.File, int64, int64) {}
