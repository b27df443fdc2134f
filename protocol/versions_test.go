package protocol

import (
	"os"
	"strings"
	"testing"
)

// TestWireChangesBumpedVersions: each protocol ID, topic and payload type
// whose wire format changed incompatibly (the package doc, Versions) carries
// the version that a peer of the previous one does not speak, so old and
// new peers never take each other's messages for their own.
func TestWireChangesBumpedVersions(t *testing.T) {
	for _, c := range []struct {
		name, id, want, change string
	}{
		{"PayloadLiveness", PayloadLiveness, "/mirrornet/liveness/2", "holdings by digest only; TTL up to two hours"},
		{"TopicLiveness", TopicLiveness, "/mirrornet/liveness/2", "carries liveness/2 statements"},
		{"PingProtocolID", PingProtocolID, "/mirrornet/ping/2.0.0", "several requests per stream"},
		{"SyncProtocolID", SyncProtocolID, "/mirrornet/sync/2.0.0", "holdings statements in frames above MaxStatementSize"},
	} {
		if c.id != c.want {
			t.Errorf("%s = %q, want %q (%s)", c.name, c.id, c.want, c.change)
		}
		if !strings.Contains(doc(t), c.want) {
			t.Errorf("the package doc does not name %s %q", c.name, c.want)
		}
	}
}

// doc is the text of the package doc (doc.go).
func doc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
