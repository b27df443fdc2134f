package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"text/tabwriter"

	"github.com/mirrornet/mirrornet/node"
)

// statusBundle prints `mirrornet status --bundle CID`: the bundle's holders
// grouped by failure domain, each with its probe verdict, and its effective
// redundancy (distinct failure domains among verified holders). With
// --json it prints the node's answer as is (node.BundleReport).
func statusBundle(ctx context.Context, env *cmdEnv, base, c string, asJSON bool) error {
	raw, err := getJSON(ctx, base, node.BundlePathPrefix+url.PathEscape(c))
	if err != nil {
		return err
	}
	if asJSON {
		_, err = env.stdout.Write(raw)
		return err
	}
	var rep node.BundleReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("status: %s did not answer with a bundle report: %v", base, err)
	}
	printBundle(env.stdout, rep)
	return nil
}

func printBundle(w io.Writer, rep node.BundleReport) {
	fmt.Fprintf(w, "bundle %s\n", rep.CID)
	fmt.Fprintf(w, "effective redundancy: %d (distinct failure domains among verified holders)\n", rep.EffectiveRedundancy)
	if len(rep.Holders) == 0 {
		fmt.Fprintln(w, "\nno mirror this node knows holds it")
		return
	}
	byDomain := map[string][]node.BundleHolder{}
	for _, h := range rep.Holders {
		byDomain[h.Domain] = append(byDomain[h.Domain], h)
	}
	domains := make([]string, 0, len(byDomain))
	for d := range byDomain {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	fmt.Fprintf(w, "\n%s in %s:\n\n", statusBundleCount(len(rep.Holders), "holder"), statusBundleCount(len(domains), "failure domain"))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tPEER\tSTATE")
	for _, d := range domains {
		hs := byDomain[d]
		sort.Slice(hs, func(i, j int) bool { return hs[i].PeerID < hs[j].PeerID })
		for i, h := range hs {
			label := d
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", label, h.PeerID, h.State)
		}
	}
	tw.Flush()
}

// statusBundleCount is "1 holder", "3 holders".
func statusBundleCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
