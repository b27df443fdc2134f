package payouts

// RefusedCounts returns a copy of the keeper's refusals, by reason.
func (k *Keeper) RefusedCounts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.Refused))
	for r, n := range k.Refused {
		out[r] = n
	}
	return out
}
