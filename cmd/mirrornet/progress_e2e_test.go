package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/node"
)

// Scripts see no progress output (stderr is not a terminal here); follow
// --wait returns once the bundle is held; ls prints human sizes and a
// total line, and ls --json keeps its fields plus total_bytes.
func TestE2EFollowWaitAndLs(t *testing.T) {
	origin := startNode(t)
	pub, errOut, code := mirrornet(t, "publish", sampleDir(t), "--data", origin.data, "--json")
	if code != 0 || errOut != "" {
		t.Fatalf("publish: exit %d, stderr %q (want nothing on stderr when it is not a terminal)", code, errOut)
	}
	var res node.ImportResult
	if err := json.Unmarshal([]byte(pub), &res); err != nil {
		t.Fatal(err)
	}
	follower := startNode(t, "--bootstrap", origin.info(t).Addrs[0])
	out, errOut, code := mirrornet(t, "follow", res.CID, "--data", follower.data, "--wait")
	if code != 0 || errOut != "" || strings.TrimSpace(out) != "held "+res.CID+" ("+humanBytes(res.Size)+", "+itoa(res.Blocks)+" blocks)" {
		t.Fatalf("follow --wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = mirrornet(t, "ls", "--data", follower.data)
	if code != 0 || !strings.Contains(out, humanBytes(res.Size)) || !strings.Contains(out, "total: 1 bundles, "+humanBytes(res.Size)+" (1 held, ") {
		t.Errorf("ls:\n%s", out)
	}
	out, _, _ = mirrornet(t, "ls", "--data", follower.data, "--json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("ls --json: %v %s", err, out)
	}
	for _, k := range []string{"cid", "state", "bytes", "blocks", "total_bytes"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("ls --json lacks %q: %s", k, out)
		}
	}
	if rows[0]["total_bytes"] != rows[0]["bytes"] {
		t.Errorf("a held bundle's total_bytes %v differs from bytes %v", rows[0]["total_bytes"], rows[0]["bytes"])
	}
	// follow --wait takes a CID, said in one line.
	if _, errOut, code := mirrornet(t, "follow", "--wait", "app-bo3yt5ha7jqo6xfbhtc3z4rw6v4m3j2jmo7aoaoamtgtpvqfhwuuq", "--data", follower.data); code != 2 || !strings.Contains(errOut, "--wait takes a bundle CID") {
		t.Errorf("follow --wait APP-ID: exit %d, %q", code, errOut)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
