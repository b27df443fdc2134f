package health

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// RefusesStranger answers, before a statement's signature is checked,
// whether the view would refuse any liveness statement of at least size
// signed bytes from signer at now: the signer is not held, not protected,
// a statement of its would not fit the limits, and the view found nothing
// a stranger may evict (it refuses strangers without a scan until then).
// It returns the refusal Add would give (ErrViewFull or ErrOverBudget), or
// nil when the statement must be verified and offered to Add.
//
// It reads only the view and the signer's claimed ID, so it can run before
// verification: whoever the statement really comes from, Add would refuse
// it for the same reason. A flood of strangers once the view is full then
// costs an envelope decode per statement instead of a signature check.
func (v *View) RefusesStranger(signer peer.ID, size int, now time.Time) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	l := v.limits
	if l.MaxMirrors <= 0 && l.MaxBytes <= 0 || !now.Before(v.fullUntil) {
		return nil
	}
	if _, held := v.entries[signer]; held {
		return nil
	}
	if l.Protected != nil && l.Protected(signer) {
		return nil
	}
	minCost := int64(size) + 256 // StatementCost's lower bound
	tooMany := l.MaxMirrors > 0 && len(v.entries)+1 > l.MaxMirrors
	tooBig := l.MaxBytes > 0 && v.bytes+minCost > l.MaxBytes
	if !tooMany && !tooBig {
		return nil
	}
	return v.refusal(tooMany)
}
