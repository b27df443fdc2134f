package payoutsmetrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/internal/payouts"
)

// TestRefusedExported: the keeper's refusals appear by reason.
func TestRefusedExported(t *testing.T) {
	k := &payouts.Keeper{Refused: map[string]int{payouts.RefusedUnnamed: 3}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(k))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "mirrornet_evidence_refused_total" && l.GetValue() == payouts.RefusedUnnamed {
					counted = m.GetCounter().GetValue()
				}
			}
		}
	}
	if counted != 3 {
		t.Fatalf("mirrornet_evidence_refused_total{reason=%q} = %v, want 3", payouts.RefusedUnnamed, counted)
	}
}
