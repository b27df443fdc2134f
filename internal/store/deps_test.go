package store

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPureDependencies keeps the store a pure core: no HTTP, no libp2p host,
// no pubsub in its (non-test) dependency graph.
func TestPureDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "net/http",
			strings.HasPrefix(dep, "github.com/libp2p/go-libp2p/core/host"),
			strings.HasPrefix(dep, "github.com/libp2p/go-libp2p-pubsub"),
			strings.HasPrefix(dep, "github.com/ipfs/boxo/bitswap"):
			t.Errorf("store depends on %s", dep)
		}
	}
}
