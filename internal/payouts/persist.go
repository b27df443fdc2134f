package payouts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/protocol"
)

// Evidence files in Config.Dir: round-N.ev holds probe round N's items,
// state.ev the funds, payout addresses, ledger roots and the holdings
// statements kept samples name. Each is a framed
// stream of signed statements (protocol.WriteFrame) ended by an empty
// frame, replaced whole through a temporary file, fsync and rename.
const (
	roundPrefix = "round-"
	fileSuffix  = ".ev"
	stateFile   = "state" + fileSuffix
)

// Save writes the rounds changed since the last Save and, if they changed,
// the funds, payout addresses and roots; it removes the files of rounds
// pruned; it checks again saved funds Load could not (now is the clock).
// It does nothing without Config.Dir. The node calls it from its
// loop: a restart then loses at most one loop period of evidence, never
// an epoch.
func (k *Keeper) Save(now time.Time) error {
	if k.cfg.Dir == "" {
		return nil
	}
	k.retryPendingFunds(now)
	if err := os.MkdirAll(k.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("payouts: evidence dir: %w", err)
	}
	k.mu.Lock()
	type file struct {
		name  string
		items [][]byte // nil: remove
	}
	var files []file
	for r := range k.dirty {
		var items [][]byte
		for h := range k.byRound[r] {
			if it, ok := k.items[h]; ok {
				items = append(items, it.raw)
			}
		}
		slices.SortFunc(items, bytes.Compare)
		files = append(files, file{roundPrefix + strconv.FormatInt(r, 10) + fileSuffix, items})
	}
	k.dirty = map[int64]bool{}
	if k.stateDirty {
		var items [][]byte
		for _, f := range k.funds {
			items = append(items, f.Raw)
		}
		items = append(items, k.pendingFunds...)
		for _, st := range k.payout {
			items = append(items, st.Raw)
		}
		for _, m := range k.roots {
			for _, st := range m {
				items = append(items, st.Raw)
			}
		}
		for _, st := range k.held {
			items = append(items, st.Raw)
		}
		slices.SortFunc(items, bytes.Compare)
		files = append(files, file{stateFile, items})
		k.stateDirty = false
	}
	k.mu.Unlock()
	var errs []error
	for _, f := range files {
		path := filepath.Join(k.cfg.Dir, f.name)
		if len(f.items) == 0 && f.name != stateFile {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
			bw := bufio.NewWriter(w)
			for _, raw := range f.items {
				if err := protocol.WriteFrame(bw, raw); err != nil {
					return err
				}
			}
			if err := protocol.WriteFrame(bw, nil); err != nil {
				return err
			}
			return bw.Flush()
		})
		if err != nil {
			errs = append(errs, err)
			k.mu.Lock()
			k.markDirtyLocked(f.name)
			k.mu.Unlock()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("payouts: save evidence: %w", err)
	}
	return nil
}

// markDirtyLocked has the next Save write the file name again.
func (k *Keeper) markDirtyLocked(name string) {
	if name == stateFile {
		k.stateDirty = true
		return
	}
	if r, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, roundPrefix), fileSuffix), 10, 64); err == nil {
		k.dirty[r] = true
	}
}

// Load reads the evidence files of Config.Dir back, verifying every
// statement as if it had arrived by gossip (now is the clock; statements
// too old for gossip are kept, their epochs may still be open), and
// removes the files of rounds outside the retention. A damaged file
// (a statement that does not verify, a torn end) gives up what it cannot
// read, counted in Refused as RefusedFileDamaged, and keeps the
// rest. Funds whose app the release book does not know yet are kept
// aside and checked again on every Save. It returns how many statements
// it took.
func (k *Keeper) Load(now time.Time) (int, error) {
	if k.cfg.Dir == "" {
		return 0, nil
	}
	ents, err := os.ReadDir(k.cfg.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("payouts: evidence dir: %w", err)
	}
	cut := (now.UnixMilli() - k.cfg.Retention.Milliseconds()) / k.cfg.ProbeEpoch.Milliseconds()
	n := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, fileSuffix) || e.IsDir() {
			continue
		}
		path := filepath.Join(k.cfg.Dir, name)
		if name != stateFile {
			r, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, roundPrefix), fileSuffix), 10, 64)
			if !strings.HasPrefix(name, roundPrefix) || err != nil {
				continue
			}
			if r < cut {
				_ = os.Remove(path)
				continue
			}
		}
		f, err := os.Open(path)
		if err != nil {
			return n, fmt.Errorf("payouts: evidence file: %w", err)
		}
		damaged := false
		const maxItem = max(protocol.MaxStatementSize, protocol.MaxHoldingsSize)
		br := bufio.NewReader(io.LimitReader(f, k.cfg.MaxBytes+int64(maxItem)))
		for {
			raw, err := protocol.ReadFrame(br, maxItem)
			if err != nil {
				damaged = true
				break
			}
			if len(raw) == 0 {
				break
			}
			if k.load(raw, now) {
				n++
			} else {
				damaged = true
			}
		}
		f.Close()
		if damaged {
			k.mu.Lock()
			k.Refused[RefusedFileDamaged]++
			k.markDirtyLocked(name) // rewritten with what verified
			k.mu.Unlock()
		}
	}
	k.mu.Lock()
	clear(k.dirty)
	k.stateDirty = len(k.pendingFunds) > 0
	k.mu.Unlock()
	return n, nil
}

// load takes one saved statement; it reports whether it verified.
func (k *Keeper) load(raw []byte, now time.Time) bool {
	if protocol.IsSignedRecord(raw) {
		_, err := k.AddFund(raw, now)
		switch {
		case err == nil, errors.Is(err, ErrRollback):
		case errors.Is(err, ErrNoKey):
			k.mu.Lock()
			k.pendingFunds = append(k.pendingFunds, raw)
			k.mu.Unlock()
		default:
			return false
		}
		return true
	}
	st, err := attest.Verify(raw, now)
	if st == nil || (err != nil && !errors.Is(err, attest.ErrTooOld)) {
		return false
	}
	switch st.Kind {
	case attest.KindPayout:
		k.AddPayout(st)
	case attest.KindLedgerRoot:
		k.AddRoot(st)
	default:
		k.Observe(st)
	}
	return true
}

// retryPendingFunds checks again the saved funds whose app was unknown.
func (k *Keeper) retryPendingFunds(now time.Time) {
	k.mu.Lock()
	pending := k.pendingFunds
	k.pendingFunds = nil
	k.mu.Unlock()
	for _, raw := range pending {
		if _, err := k.AddFund(raw, now); errors.Is(err, ErrNoKey) {
			k.mu.Lock()
			k.pendingFunds = append(k.pendingFunds, raw)
			k.mu.Unlock()
		}
	}
}
