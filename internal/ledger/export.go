package ledger

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// BatchItem is one transfer of a payout batch for a multisig or a
// contract: [{"address","amount","unit"}].
type BatchItem struct {
	Address string `json:"address"`
	Amount  uint64 `json:"amount"`
	Unit    string `json:"unit"`
}

// Batch is the table's transfers: every line with a positive amount, in the
// table's order (by peer ID).
func (t *Table) Batch() []BatchItem {
	out := []BatchItem{}
	for _, p := range t.Payouts {
		if p.Amount > 0 {
			out = append(out, BatchItem{Address: p.Address, Amount: p.Amount, Unit: t.Unit})
		}
	}
	return out
}

// csvHeader names the columns of WriteCSV.
var csvHeader = []string{"peer_id", "address", "amount", "unit", "domain", "uptime_ppm", "diversity_ppm", "traffic_ppm", "verified_rounds", "rounds", "traffic_bytes", "reason"}

// WriteCSV writes the table as CSV with a header row (for an Open
// Collective host or a spreadsheet): one row per line, paid or not.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	u := strconv.FormatUint
	for _, p := range t.Payouts {
		row := []string{p.PeerID, p.Address, u(p.Amount, 10), t.Unit, p.Domain, u(p.Uptime, 10), u(p.Diversity, 10), u(p.Traffic, 10),
			strconv.Itoa(p.VerifiedRounds), strconv.Itoa(t.Rounds), u(p.TrafficBytes, 10), p.Reason}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the table's canonical JSON and a newline.
func (t *Table) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Explain writes, for one peer, every input that produced its line.
func Explain(w io.Writer, in Input, t *Table, peerID string) error {
	var line *Payout
	for i := range t.Payouts {
		if t.Payouts[i].PeerID == peerID {
			line = &t.Payouts[i]
		}
	}
	if line == nil {
		return fmt.Errorf("%w: %s has no line in the ledger (no evidence names it)", ErrInput, peerID)
	}
	var m *Mirror
	for i := range in.Mirrors {
		if in.Mirrors[i].Peer == peerID {
			m = &in.Mirrors[i]
		}
	}
	p := in.Policy
	fmt.Fprintf(w, "peer %s, app %s, epoch %d, evidence root %s\n", peerID, p.App, p.Epoch, in.Root)
	fmt.Fprintf(w, "fund: %d %s per epoch; weights uptime %d, diversity %d, traffic %d; eligible from %d‰ of rounds verified; redundancy target %d; caps %d B per client key, %d B per client network\n",
		p.Budget, p.Unit, p.Weights.Uptime, p.Weights.Diversity, p.Weights.Traffic, p.MinVerifiedPermille, p.RedundancyTarget, p.KeyCap, p.NetworkCap)
	fmt.Fprintf(w, "domain: %s", line.Domain)
	if m != nil {
		fmt.Fprintf(w, ", from the addresses %d observer(s) signed in probe results", m.Observers)
	}
	peers := 0
	for _, o := range in.Mirrors {
		if o.Domain == line.Domain {
			peers++
		}
	}
	fmt.Fprintf(w, " (%d mirror(s) in it share its uptime and diversity)\n", peers)
	fmt.Fprintf(w, "verified in %d of %d probe rounds", line.VerifiedRounds, in.Rounds)
	if m != nil {
		fmt.Fprint(w, ": ")
		for _, v := range m.Verified {
			if v {
				fmt.Fprint(w, "+")
			} else {
				fmt.Fprint(w, ".")
			}
		}
		fmt.Fprintf(w, "\nheld current release: %v; payout address: %q\n", m.HeldRelease, m.Address)
	} else {
		fmt.Fprintln(w)
	}
	var receipts int
	var claimed uint64
	for _, r := range in.Receipts {
		if r.Mirror == peerID {
			receipts++
			claimed += r.Bytes
		}
	}
	fmt.Fprintf(w, "traffic: %d receipt(s) claiming %d B; %d B counted after caps\n", receipts, claimed, line.TrafficBytes)
	fmt.Fprintf(w, "shares: uptime %d ppm, diversity %d ppm, traffic %d ppm of their pools\n", line.Uptime, line.Diversity, line.Traffic)
	if line.Reason != "" {
		fmt.Fprintf(w, "amount: 0 %s: %s\n", t.Unit, line.Reason)
	} else {
		fmt.Fprintf(w, "amount: %d %s of %d\n", line.Amount, t.Unit, t.Budget)
	}
	return nil
}
