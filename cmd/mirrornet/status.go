package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

func runStatus(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "status", "[--http URL] [--data DIR] [--json] [--bundle CID | --app APP-ID]")
	data := dataFlag(fs)
	base := fs.String("http", "", "HTTP URL of the node to ask (default: the local node's, from DATA/node.json, else http://127.0.0.1:8080)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	bundleCID := fs.String("bundle", "", "show one bundle's holders grouped by failure domain and its effective redundancy")
	appID := fs.String("app", "", "show one app's current release, its expiry, builders that agree, and which mirrors hold it")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("status: unexpected argument %q", pos[0])
	}
	if *base == "" {
		if err := checkNodeRunning(*data); err != nil {
			return err
		}
	}
	url := nodeHTTP(*base, *data)
	switch {
	case *bundleCID != "" && *appID != "":
		return usageErrorf("status: give --bundle or --app, not both")
	case *bundleCID != "":
		return statusBundle(ctx, env, url, *bundleCID, *asJSON)
	case *appID != "":
		return statusApp(ctx, env, url, *appID, *asJSON)
	}
	st, raw, err := fetchStatus(ctx, url)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := env.stdout.Write(raw)
		return err
	}
	printStatus(env.stdout, st, time.Now())
	return nil
}

// checkNodeRunning refuses to trust DATA/node.json when no node runs with
// that data directory: a node that stopped (or crashed) leaves node.json
// behind, and its HTTP address may since belong to another process.
func checkNodeRunning(dataDir string) error {
	if _, err := node.ReadInfo(dataDir); err != nil {
		return nil // no node.json: the default address is tried
	}
	c, err := net.DialTimeout("unix", filepath.Join(dataDir, "admin.sock"), 2*time.Second)
	if err != nil {
		return fmt.Errorf("status: no node is running with data directory %s (its node.json is from a node that stopped): start it with 'mirrornet node --data %s', or pass --http URL", dataDir, dataDir)
	}
	c.Close()
	return nil
}

// nodeHTTP picks the node's HTTP URL: the flag, else DATA/node.json, else
// the default --http address.
func nodeHTTP(flagURL, dataDir string) string {
	if flagURL != "" {
		if !strings.Contains(flagURL, "://") {
			flagURL = "http://" + flagURL
		}
		return strings.TrimRight(flagURL, "/")
	}
	if info, err := node.ReadInfo(dataDir); err == nil && info.HTTP != "" {
		return info.HTTP
	}
	return "http://" + node.DefaultConfig().HTTPAddr
}

// getJSON fetches base+path from a node's HTTP side and returns the body;
// a non-200 answer becomes an error carrying the node's message.
func getJSON(ctx context.Context, base, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, usageErrorf("status: bad URL %q: %v", base, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: no node answers at %s (is 'mirrornet node' running? pass --http or --data): %v", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("status: read from %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(raw))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return nil, fmt.Errorf("status: %s answered %s: %s", base, resp.Status, msg)
	}
	return raw, nil
}

func fetchStatus(ctx context.Context, base string) (node.Status, []byte, error) {
	var st node.Status
	raw, err := getJSON(ctx, base, protocol.HTTPStatusPath)
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("status: %s did not answer with mirrornet status JSON: %v", base, err)
	}
	return st, raw, nil
}

func printStatus(w io.Writer, st node.Status, now time.Time) {
	fmt.Fprintf(w, "node %s (%s, profile %s), %d peers connected\n\n", st.Self.PeerID, st.Self.Version, st.Self.Profile, st.Self.Peers)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tEVIDENCE\tDOMAIN\tLAST SEEN\tHTTP\tBUNDLES")
	for _, m := range st.Mirrors {
		seen := "-"
		if t, err := time.Parse(time.RFC3339Nano, m.LastSeen); err == nil {
			seen = now.Sub(t).Round(100*time.Millisecond).String() + " ago"
		}
		id := m.PeerID
		if id == st.Self.PeerID {
			id += " (self)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", id, m.State, dash(m.Evidence), dash(m.Domain), seen, m.HTTP, len(m.Bundles))
	}
	tw.Flush()
	for _, r := range st.Self.Refused {
		fmt.Fprintf(w, "\nrefused %s (%s): %s", r.CID, r.Reason, r.Error)
	}
	if len(st.Self.Refused) > 0 {
		fmt.Fprintln(w)
	}
	printBitswap(w, st)
}

// printBitswap shows the peers this node serves over bitswap.
func printBitswap(w io.Writer, st node.Status) {
	b := st.Bitswap
	if len(b.Peers) == 0 {
		return
	}
	fmt.Fprintf(w, "\nbitswap: %d peers, %d blocks re-sent, %d peers cut off for not reading\n", len(b.Peers), b.BlocksResent, b.PeersCutOff["slow_reader"])
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tWANTS OPEN\tUNANSWERED\tOLDEST OPEN WANT\tBYTES OUTSTANDING\tRE-SENT")
	for _, p := range b.Peers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1fs\t%d\t%d\n", p.Peer, p.WantsOpen, p.WantsUnanswered, p.OldestOpenWant, p.BytesOutstanding, p.BlocksResent)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
