package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
)

// filesUnder records every file under dir with its bytes.
func filesUnder(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				t.Fatal(rerr)
			}
			out[p] = string(b)
		}
		return nil
	})
	return out
}

// TestE2EStoreBadInput: a block store from a newer version, a truncated
// pack and a truncated index each stop `mirrornet node` at once with one
// line on stderr naming what is wrong, and leave the store as it was.
func TestE2EStoreBadInput(t *testing.T) {
	// a store with a held bundle in several sealed packs
	build := func(t *testing.T) string {
		data := t.TempDir()
		s, err := store.Open(filepath.Join(data, "blocks"), store.Options{PackSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		res, err := bundle.Import(t.Context(), crashTree(t), func(b blocks.Block) error { return s.Put(b.Cid(), b.RawData()) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkHeld(res.Root); err != nil {
			t.Fatal(err)
		}
		s.Close()
		return data
	}
	packs := func(data string) string { return filepath.Join(data, "blocks", "packs") }
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, data string) string // returns what the line must name
		want   string
	}{
		{"newer version", func(t *testing.T, data string) string {
			if err := os.WriteFile(filepath.Join(data, "blocks", "store-version"), []byte("9\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(data, "blocks")
		}, "newer mirrornet"},
		{"truncated pack", func(t *testing.T, data string) string {
			p := filepath.Join(packs(data), "00000001.pack")
			if err := os.Truncate(p, 1000); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is truncated"},
		{"truncated index", func(t *testing.T, data string) string {
			p := filepath.Join(packs(data), "00000002.idx")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b[:len(b)/2], 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, "delete it to have it rebuilt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := build(t)
			names := tc.damage(t, data)
			before := filesUnder(t, filepath.Join(data, "blocks"))
			_, errOut, code := mirrornet(t, "node", "--data", data, "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0",
				"--profile", "local", "--mdns=false", "--dht=false")
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if code == 0 || !strings.Contains(last, names) || !strings.Contains(last, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant a last line naming %s and saying %q", code, errOut, names, tc.want)
			}
			after := filesUnder(t, filepath.Join(data, "blocks"))
			if len(after) != len(before) {
				t.Fatalf("%d files in the store after the refusal, %d before", len(after), len(before))
			}
			for p, b := range before {
				if after[p] != b {
					t.Fatalf("%s changed", p)
				}
			}
			t.Logf("stderr: %s", errOut)
		})
	}
}
