package payouts

import "github.com/prometheus/client_golang/prometheus"

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

// Collector exports a keeper's figures to Prometheus:
// mirrornet_evidence_bytes (the evidence kept) and
// mirrornet_evidence_refused_total{reason} (statements not kept as
// evidence: RefusedUnnamed, RefusedBudget, RefusedMergedInvalid,
// RefusedFileDamaged).
type Collector struct{ k *Keeper }

// NewCollector returns a collector of k's figures.
func NewCollector(k *Keeper) *Collector { return &Collector{k: k} }

var (
	bytesDesc   = prometheus.NewDesc("mirrornet_evidence_bytes", "Bytes of signed statements kept as payout evidence (liveness samples, probe results, receipt witnesses).", nil, nil)
	refusedDesc = prometheus.NewDesc("mirrornet_evidence_refused_total", "Statements not kept as payout evidence, by reason: unnamed_liveness (no probe result of the rounds it covers names its mirror), evidence_budget (over the byte budget), merged_item_invalid (a merged item that does not verify), evidence_file_damaged (an evidence file record that could not be read).", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bytesDesc
	ch <- refusedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(c.k.Bytes()))
	for r, n := range c.k.RefusedCounts() {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(n), r)
	}
}
