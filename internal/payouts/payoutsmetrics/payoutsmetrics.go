// Package payoutsmetrics exports a payouts keeper's figures to
// Prometheus (kept apart so package payouts stays pure).
package payoutsmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mirrornet/mirrornet/internal/payouts"
)

// Collector exports a keeper's figures to Prometheus:
// mirrornet_evidence_bytes (the evidence kept) and
// mirrornet_evidence_refused_total{reason} (statements not kept as
// evidence: payouts.RefusedUnnamed, payouts.RefusedBudget,
// payouts.RefusedMergedInvalid, payouts.RefusedFileDamaged).
type Collector struct{ k *payouts.Keeper }

// NewCollector returns a collector of k's figures.
func NewCollector(k *payouts.Keeper) *Collector { return &Collector{k: k} }

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
