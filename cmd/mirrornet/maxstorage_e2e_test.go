package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// metricValue reads one sample of the node's /metrics, 0 when absent.
func metricValue(t *testing.T, httpURL, sample string) float64 {
	t.Helper()
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// lsBundle is the node's `ls --json` row for c (zero value if absent).
func lsBundle(t *testing.T, data, c string) node.BundleStatus {
	t.Helper()
	out, errOut, code := mirrornet(t, "ls", "--data", data, "--json")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	var list []node.BundleStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("ls --json: %v: %q", err, out)
	}
	for _, b := range list {
		if b.CID == c {
			return b
		}
	}
	return node.BundleStatus{}
}

// randomFile writes n deterministic pseudo-random bytes into a new file.
func randomFile(t *testing.T, seed uint64, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("f%d.bin", seed))
	if err := os.WriteFile(p, seededBytes(seed, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitHeartbeats waits until the node at httpURL has seen n more liveness
// statements of peer: in the time they take, a fetch woken by each holder
// announcement (as a refused follow used to be) would have retried n times.
func waitHeartbeats(t *testing.T, httpURL, peer string, n uint64) {
	t.Helper()
	seqOf := func() uint64 {
		for _, m := range statusJSON(t, httpURL).Mirrors {
			if m.PeerID == peer {
				return m.Seq
			}
		}
		return 0
	}
	var start uint64
	waitFor(t, 20*time.Second, "a first statement of "+peer, func() (bool, string) { start = seqOf(); return start > 0, "" })
	seen := map[uint64]bool{start: true}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more statements of %s", n, peer), func() (bool, string) {
		seen[seqOf()] = true
		return uint64(len(seen)) > n, fmt.Sprintf("%d seen", len(seen)-1)
	})
}

// A follow of a bundle larger than --max-storage is refused once, with one
// line saying why (in ls, follow --wait, status and the log) and one count
// in mirrornet_follow_refused_total{reason="too_large"}; it is not fetched
// again while holders keep announcing it, and following it again answers
// the refusal. One
// that fits the limit but not beside other bundles (storage_full) is
// refused the same way and fetched once space is freed.
func TestE2EFollowLargerThanMaxStorage(t *testing.T) {
	a := startNode(t)
	ia := a.info(t)
	b := startNode(t, "--bootstrap", ia.Addrs[0], "--max-storage", "2MiB")
	ib := b.info(t)

	big := publishJSON(t, a.data, randomFile(t, 1, 3<<20))           // 3 MiB: never fits
	mid := publishJSON(t, a.data, randomFile(t, 2, 3<<19))           // 1.5 MiB: fits alone
	local := publishJSON(t, b.data, randomFile(t, 3, 1<<20))         // 1 MiB kept by b
	tooLarge := `mirrornet_follow_refused_total{reason="too_large"}` //
	full := `mirrornet_follow_refused_total{reason="storage_full"}`

	// follow answers at once; --wait fails with the node's one line.
	if _, errOut, code := mirrornet(t, "follow", "--data", b.data, big.CID); code != 0 {
		t.Fatalf("follow: exit %d: %s", code, errOut)
	}
	waitFor(t, 30*time.Second, "the big bundle refused", func() (bool, string) {
		r := lsBundle(t, b.data, big.CID)
		return r.State == node.StateRefused, fmt.Sprintf("%+v", r)
	})
	row := lsBundle(t, b.data, big.CID)
	if !strings.Contains(row.Error, "larger than --max-storage") || strings.Contains(row.Error, "\n") {
		t.Errorf("ls error %q: want one line saying it is larger than --max-storage", row.Error)
	}
	_, errOut, code := mirrornet(t, "follow", "--wait", "--data", b.data, big.CID)
	if code == 0 || !strings.Contains(errOut, "larger than --max-storage") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("follow --wait of a refused bundle: exit %d, %q: want one error line", code, errOut)
	}
	// The status page is a snapshot rebuilt in the background: when builds
	// are slow (a loaded machine, -race) a request is answered with the
	// latest one at once and asks for a fresh one, so the refusal shows a
	// rebuild later.
	waitFor(t, 30*time.Second, "status self.refused to list the big bundle", func() (bool, string) {
		st := statusJSON(t, ib.HTTP)
		ok := len(st.Self.Refused) == 1 && st.Self.Refused[0].CID == big.CID && st.Self.Refused[0].Reason == "too_large"
		return ok, fmt.Sprintf("%+v", st.Self.Refused)
	})
	if out, _, _ := mirrornet(t, "status", "--http", ib.HTTP); !strings.Contains(out, "refused "+big.CID+" (too_large)") {
		t.Errorf("status does not show the refusal:\n%s", out)
	}
	// Only the root block came: nothing near the bundle's size is stored.
	if used := blockBytes(t, b.data); used > local.Size+64<<10 {
		t.Errorf("block store holds %d bytes, want about %d (b's own bundle and the refused root)", used, local.Size)
	}

	// The holder keeps announcing the bundle: no new attempt.
	waitHeartbeats(t, ib.HTTP, ia.PeerID, 10)
	if v := metricValue(t, ib.HTTP, tooLarge); v != 1 {
		t.Errorf("%s = %v after 10 holder announcements, want 1 (refused once, never retried)", tooLarge, v)
	}
	// Following it again answers why at once, and changes nothing.
	_, errOut, code = mirrornet(t, "follow", "--data", b.data, big.CID)
	if code == 0 || !strings.Contains(errOut, "larger than --max-storage") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("follow of a refused bundle: exit %d, %q: want one error line", code, errOut)
	}
	if v := metricValue(t, ib.HTTP, tooLarge); v != 1 {
		t.Errorf("%s = %v after following again, want 1", tooLarge, v)
	}
	if _, errOut, code := mirrornet(t, "unfollow", "--data", b.data, big.CID); code != 0 {
		t.Fatalf("unfollow: %s", errOut)
	}

	// 1.5 MiB beside b's own 1 MiB does not fit 2 MiB: storage_full.
	mirrornet(t, "follow", "--data", b.data, mid.CID)
	waitFor(t, 30*time.Second, "the middle bundle refused", func() (bool, string) {
		r := lsBundle(t, b.data, mid.CID)
		return r.State == node.StateRefused && strings.Contains(r.Error, "storage limit"), fmt.Sprintf("%+v", r)
	})
	waitHeartbeats(t, ib.HTTP, ia.PeerID, 5)
	if v := metricValue(t, ib.HTTP, full); v != 1 {
		t.Errorf("%s = %v, want 1", full, v)
	}
	// Freeing space lets it through.
	if _, errOut, code := mirrornet(t, "unfollow", "--data", b.data, local.CID); code != 0 {
		t.Fatalf("unfollow: %s", errOut)
	}
	waitFor(t, 30*time.Second, "the middle bundle held once space was freed", func() (bool, string) {
		r := lsBundle(t, b.data, mid.CID)
		return r.State == "held", fmt.Sprintf("%+v", r)
	})
	if v := metricValue(t, ib.HTTP, full); v != 1 {
		t.Errorf("%s = %v, want 1", full, v)
	}
}
