package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// blockBytes sums the sizes of the files under the node's block store.
func blockBytes(t *testing.T, data string) int64 {
	t.Helper()
	var n int64
	_ = filepath.WalkDir(filepath.Join(data, "blocks"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// An interrupted publish (the user pressed Ctrl-C) leaves no blocks
// behind to count against --max-storage; `mirrornet gc` exists and reports
// what it freed.
func TestE2EInterruptedPublishIsCleanedUp(t *testing.T) {
	m := startNode(t)
	before := blockBytes(t, m.data)

	src := filepath.Join(t.TempDir(), "big.bin")
	buf := make([]byte, 24<<20)
	_, _ = rand.Read(buf)
	if err := os.WriteFile(src, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	ac, err := node.DialAdmin(m.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = ac.Import(ctx, src, func(done int64) {
		if done >= 4<<20 {
			cancel() // Ctrl-C, a quarter of the way in
		}
	})
	if err == nil {
		t.Fatal("the interrupted import succeeded")
	}
	waitFor(t, 30*time.Second, "the interrupted publish's blocks are freed", func() (bool, string) {
		now := blockBytes(t, m.data)
		return now <= before, "block store holds " + humanBytes(now) + ", before " + humanBytes(before)
	})
	out, errOut, code := mirrornet(t, "gc", "--data", m.data, "--json")
	var res node.GCResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("gc: exit %d, %q %q", code, out, errOut)
	}
	if out, _, code := mirrornet(t, "gc", "--data", m.data); code != 0 || !strings.HasPrefix(out, "freed ") {
		t.Errorf("gc: exit %d, %q", code, out)
	}
}
