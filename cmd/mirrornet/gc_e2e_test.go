package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

// blockBytes sums the disk space allocated to the files under the node's
// block store (a deleted block's bytes are punched out of its pack file,
// which frees them without shrinking the file).
func blockBytes(t *testing.T, data string) int64 {
	t.Helper()
	var n int64
	_ = filepath.WalkDir(filepath.Join(data, "blocks"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				} else {
					n += info.Size()
				}
			}
		}
		return nil
	})
	return n
}

// leftoverSlack is what deleting blocks may leave allocated: the records'
// headers, their tombstones and the partly used pages at their ends.
const leftoverSlack = 64 << 10

// truncatedImport posts to the node's admin socket the import stream of
// src cut off after its first k blocks (no end frame, no root): what the
// node reads when publish is stopped midway. It returns the node's answer.
func truncatedImport(t *testing.T, data, src string, k int) (int, string) {
	t.Helper()
	var body bytes.Buffer
	n := 0
	_, err := bundle.Import(context.Background(), src, func(b blocks.Block) error {
		if n == k {
			return errStop
		}
		n++
		if err := protocol.WriteFrame(&body, b.Cid().Bytes()); err != nil {
			return err
		}
		return protocol.WriteFrame(&body, b.RawData())
	}, nil)
	if !errors.Is(err, errStop) {
		t.Fatalf("%s has fewer than %d blocks: %v", src, k+1, err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(data, "admin.sock"))
	}}}
	resp, err := hc.Post("http://admin/admin/v1/import", "application/octet-stream", &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

var errStop = errors.New("enough blocks")

// A publish stopped midway (Ctrl-C, a dead pipe) leaves no blocks behind to
// count against --max-storage: by the time the node answers the broken
// import, the blocks it stored are freed. The stream is cut at a known
// block, so the node has stored blocks for certain; `mirrornet gc` exists
// and reports what it freed.
func TestE2EInterruptedPublishIsCleanedUp(t *testing.T) {
	m := startNode(t)
	before := blockBytes(t, m.data)
	src := randomFile(t, 7, 6<<20) // six 1 MiB leaves, then the root
	code, msg := truncatedImport(t, m.data, src, 4)
	if code != http.StatusBadRequest || !strings.Contains(msg, "import interrupted") {
		t.Fatalf("truncated import: %d %s", code, msg)
	}
	if now := blockBytes(t, m.data); now > before+leftoverSlack {
		t.Fatalf("after the interrupted import was answered the block store holds %s, before %s", humanBytes(now), humanBytes(before))
	}

	// The same through publish's own client, cancelled a quarter of the way
	// in: it reports an error and leaves nothing behind either.
	ac, err := node.DialAdmin(m.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = ac.Import(ctx, randomFile(t, 8, 24<<20), func(done int64) {
		if done >= 4<<20 {
			cancel() // Ctrl-C
		}
	})
	if err == nil {
		t.Fatal("the interrupted import succeeded")
	}
	waitFor(t, 30*time.Second, "the cancelled publish's blocks are freed", func() (bool, string) {
		now := blockBytes(t, m.data)
		return now <= before+leftoverSlack, "block store holds " + humanBytes(now) + ", before " + humanBytes(before)
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
