package main

import (
	"strings"
	"testing"
)

// After the node is gone, `status --data` says so instead of asking
// whatever now answers at the address in the stale node.json.
func TestE2EStatusDataStaleNodeJSON(t *testing.T) {
	m := startNode(t)
	if _, errOut, code := mirrornet(t, "status", "--data", m.data, "--json"); code != 0 {
		t.Fatalf("status of a running node: exit %d: %s", code, errOut)
	}
	m.kill(t)
	_, errOut, code := mirrornet(t, "status", "--data", m.data)
	if code == 0 || !strings.Contains(errOut, "no node is running with data directory") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("status --data of a stopped node: exit %d: %q", code, errOut)
	}
}
