package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/mirrornet/mirrornet/internal/release"
	"github.com/mirrornet/mirrornet/node"
)

// statusApp prints `mirrornet status --app APP-ID[@N]`: the app's current
// (or given) release, its expiry, the builders that agree and the mirrors
// that hold it, from the node's GET /api/v1/app/{app-id}.
func statusApp(ctx context.Context, env *cmdEnv, base, app string, asJSON bool) error {
	ref, err := release.ParseAppRef(app)
	if err != nil {
		return usageErrorf("status: --app: %v", err)
	}
	path := "/api/v1/app/" + url.PathEscape(ref.App)
	if ref.Version != 0 {
		path += fmt.Sprintf("?version=%d", ref.Version)
	}
	raw, err := getJSON(ctx, base, path)
	if err != nil {
		return err
	}
	if asJSON {
		_, err = env.stdout.Write(raw)
		return err
	}
	var st node.AppStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("status: %s did not answer with app status JSON: %v", base, err)
	}
	tw := tabwriter.NewWriter(env.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "app:\t%s (%s)\n", st.Name, st.App)
	fmt.Fprintf(tw, "release:\tv%d %s (%s)\n", st.Version, st.CID, st.Status)
	fmt.Fprintf(tw, "signed:\t%s, expires %s\n", st.Time, st.Expires)
	if st.Repo != "" || st.Commit != "" || st.Build != "" {
		fmt.Fprintf(tw, "source:\t%s %s\n", st.Repo, st.Commit)
		fmt.Fprintf(tw, "build:\t%s\n", st.Build)
	}
	fmt.Fprintf(tw, "maintainers:\t%d of %d\n", st.Maintainers.Threshold, len(st.Maintainers.Keys))
	integ := st.Integrity
	switch st.Integrity {
	case string(release.Verified):
		integ = fmt.Sprintf("verified · %d builder(s) agree", len(st.Builders))
	case string(release.Diverges):
		var who []string
		for k, cids := range st.Divergent {
			who = append(who, k+" built "+strings.Join(cids, ","))
		}
		integ = "DIVERGES: " + strings.Join(who, "; ")
	}
	fmt.Fprintf(tw, "integrity:\t%s\n", integ)
	fmt.Fprintf(tw, "held by:\t%d mirror(s) %s\n", len(st.Holders), strings.Join(st.Holders, " "))
	fmt.Fprintf(tw, "this node:\tfollows app: %v, holds release: %v\n", st.Followed, st.Held)
	fmt.Fprintf(tw, "payouts:\t%s\n", ledgerLine(ctx, base, st.App))
	return tw.Flush()
}

// ledgerLine summarises the agreement on the app's fund's latest closed
// epoch (see docs/PAYOUTS.md).
func ledgerLine(ctx context.Context, base, app string) string {
	raw, err := getJSON(ctx, base, "/api/v1/ledger/"+url.PathEscape(app))
	if err != nil {
		if strings.Contains(err.Error(), "unknown fund") {
			return "no fund"
		}
		return err.Error()
	}
	var ls node.LedgerStatus
	if err := json.Unmarshal(raw, &ls); err != nil {
		return "unreadable ledger status"
	}
	if len(ls.Agreements) == 0 {
		return fmt.Sprintf("epoch %d: table %s, no mirror has signed a root yet", ls.Epoch, short(ls.TableHash))
	}
	a := ls.Agreements[0]
	mine := "this mirror computes another table"
	if a.Table == ls.TableHash {
		mine = "this mirror agrees"
	}
	return fmt.Sprintf("epoch %d: %d mirror(s) in %d domain(s) agree on table %s (%s; %d other table(s) signed)",
		ls.Epoch, a.Mirrors, a.Domains, short(a.Table), mine, len(ls.Agreements)-1)
}
