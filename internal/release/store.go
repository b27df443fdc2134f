package release

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/protocol"
)

// Add verifies a signed release (attest.VerifyRelease) and applies it: what
// a gossip validator or a sync receiver calls, mapping the error with
// Verdict. A record that verifies but has expired is still applied (it
// extends the chain and blocks rollbacks); Add then returns the expiry
// error, so the verdict is Ignore and the stale record is not forwarded.
// A record signed in the future is not applied.
func (b *Book) Add(raw []byte, now time.Time) (*attest.Release, error) {
	rel, verr := attest.VerifyRelease(raw, now)
	if rel == nil || (verr != nil && !errors.Is(verr, attest.ErrExpired)) {
		return nil, verr
	}
	if err := b.Apply(rel, now); err != nil {
		return rel, err
	}
	return rel, verr
}

// WriteTo writes every record of every app as frames (protocol.WriteFrame),
// apps in ID order and records in version order, ending with an empty
// frame: the same framing as a sync response.
func (b *Book) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	for _, app := range b.Apps() {
		for _, raw := range b.Raw(app) {
			if err := protocol.WriteFrame(cw, raw); err != nil {
				return cw.n, err
			}
		}
	}
	err := protocol.WriteFrame(cw, nil)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBookFile: a saved book is truncated or corrupt.
var ErrBookFile = errors.New("release: saved release book is corrupt")

// ReadBook reads records written by WriteTo and applies them in version
// order. Records that no longer apply are skipped (their errors are
// returned alongside the book); a truncated or corrupt stream is ErrBookFile.
func ReadBook(r io.Reader, now time.Time) (*Book, []error, error) {
	br := bufio.NewReader(r)
	var rels []*attest.Release
	var skipped []error
	for {
		raw, err := protocol.ReadFrame(br, protocol.MaxStatementSize)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrBookFile, err)
		}
		if len(raw) == 0 {
			break
		}
		rel, err := attest.VerifyRelease(raw, now)
		if rel == nil {
			skipped = append(skipped, err)
			continue
		}
		rels = append(rels, rel)
	}
	b := NewBook()
	skipped = append(skipped, b.ApplyAll(rels, now)...)
	return b, skipped, nil
}

// SaveFile writes the book to path atomically: a temporary file in the same
// directory, synced, renamed into place, and the directory synced.
func (b *Book) SaveFile(path string) error {
	err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
		_, err := b.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("release: save book: %w", err)
	}
	return nil
}

// LoadFile reads a book saved with SaveFile; a missing file is an empty
// book.
func LoadFile(path string, now time.Time) (*Book, []error, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return NewBook(), nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("release: load book: %w", err)
	}
	defer f.Close()
	b, skipped, err := ReadBook(f, now)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (%s)", err, path)
	}
	return b, skipped, nil
}

// Reason is a short, stable label for an error of VerifyRelease or Apply,
// for metrics.
func Reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrNotAnchored, "not_anchored"}, {ErrDuplicate, "duplicate"}, {ErrRollback, "rollback"},
		{ErrNameChange, "name_change"}, {ErrUnknownPrevious, "unknown_previous"},
		{ErrOldThreshold, "old_threshold"}, {ErrNewThreshold, "new_threshold"},
		{attest.ErrThreshold, "threshold"}, {attest.ErrUnknownSigner, "unknown_signer"}, {attest.ErrExpired, "expired"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return attest.Reason(err)
}

// Summary is the one-line state of an app for `status --app` and `get`:
// "demo v3 bafy… current · verified · 2 builders", or "stale" in place of
// "current" once the latest record has expired.
func Summary(rec protocol.Release, st Status, integ Integrity) string {
	if st == StatusUnknown {
		return "unknown app"
	}
	return fmt.Sprintf("%s v%d %s %s · %s", rec.Name, rec.Version, rec.CID, st, integ)
}
