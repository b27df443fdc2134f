package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// bundleStatus runs `status --bundle CID --json` against a node.
func bundleStatus(t *testing.T, httpURL, c string) node.BundleReport {
	t.Helper()
	out, errOut, code := mirrornet(t, "status", "--http", httpURL, "--bundle", c, "--json")
	if code != 0 {
		t.Fatalf("status --bundle exit %d: %s", code, errOut)
	}
	var rep node.BundleReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --bundle --json is not a bundle report: %v\n%s", err, out)
	}
	return rep
}

func allHoldersVerified(rep node.BundleReport, n int) (bool, string) {
	if len(rep.Holders) != n {
		return false, fmt.Sprintf("%d holders: %+v", len(rep.Holders), rep)
	}
	for _, h := range rep.Holders {
		if h.State != "verified" {
			return false, fmt.Sprintf("%s is %s", h.PeerID, h.State)
		}
	}
	return true, ""
}

// TestE2EStatusBundle: three real mirrors hold a bundle; each is verified
// by retrieval probes, and `status --bundle` reports the effective
// redundancy as each node places them: one domain on one host, three when
// a node's label file puts the other two in racks of their own.
func TestE2EStatusBundle(t *testing.T) {
	a := startNode(t)
	ia := a.info(t)
	boot := ia.Addrs[0]
	b := startNode(t, "--bootstrap", boot)
	ib := b.info(t)
	labels := filepath.Join(t.TempDir(), "labels.txt")
	if err := os.WriteFile(labels, []byte(ia.PeerID+" rack-a\n"+ib.PeerID+" rack-b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startNode(t, "--bootstrap", boot, "--labels", labels)
	ic := c.info(t)

	app := t.TempDir()
	os.WriteFile(filepath.Join(app, "index.html"), []byte("<!doctype html><title>probe e2e</title>"), 0o644)
	os.WriteFile(filepath.Join(app, "app.js"), []byte(strings.Repeat("console.log('mirror');\n", 4000)), 0o644)
	out, errOut, code := mirrornet(t, "publish", "--data", a.data, app)
	if code != 0 {
		t.Fatalf("publish exit %d: %s", code, errOut)
	}
	root := strings.TrimSpace(out)
	for _, p := range []*proc{b, c} {
		if _, errOut, code := mirrornet(t, "follow", "--data", p.data, root); code != 0 {
			t.Fatalf("follow exit %d: %s", code, errOut)
		}
	}

	var rep node.BundleReport
	waitFor(t, 60*time.Second, "three verified holders at C", func() (bool, string) {
		rep = bundleStatus(t, ic.HTTP, root)
		return allHoldersVerified(rep, 3)
	})
	waitFor(t, 20*time.Second, "effective redundancy 3 at C", func() (bool, string) {
		rep = bundleStatus(t, ic.HTTP, root)
		return rep.EffectiveRedundancy == 3, fmt.Sprintf("%+v", rep)
	})
	if rep.CID != root {
		t.Errorf("cid %q, want %q", rep.CID, root)
	}
	waitFor(t, 20*time.Second, "three verified holders at A", func() (bool, string) {
		rep = bundleStatus(t, ia.HTTP, root)
		return allHoldersVerified(rep, 3)
	})
	if rep.EffectiveRedundancy != 1 {
		t.Errorf("A places three mirrors on one host in %d domains, want 1: %+v", rep.EffectiveRedundancy, rep)
	}

	// The table groups holders by domain.
	out, errOut, code = mirrornet(t, "status", "--http", ic.HTTP, "--bundle", root)
	if code != 0 {
		t.Fatalf("status --bundle exit %d: %s", code, errOut)
	}
	t.Logf("status --bundle at C:\n%s", out)
	for _, want := range []string{"effective redundancy: 3", "3 holders in 3 failure domains", "label:rack-a", "label:rack-b", "net:127.0.0.0/24", ib.PeerID, "verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("status --bundle output lacks %q:\n%s", want, out)
		}
	}

	// A bad CID is a one-line error.
	_, errOut, code = mirrornet(t, "status", "--http", ia.HTTP, "--bundle", "not-a-cid")
	if code == 0 || !strings.Contains(errOut, "not a CID") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Errorf("bad CID: exit %d, stderr %q: want a one-line 'not a CID' error", code, errOut)
	}
}

// TestE2EMalformedDomainFiles: a node given a malformed --labels or
// --asn-db file does not start, and says which file and line in one line.
func TestE2EMalformedDomainFiles(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "labels.txt")
	os.WriteFile(labels, []byte("# racks\n\n12D3KooWnot-a-peer rack-a\n"), 0o644)
	asn := filepath.Join(dir, "asn.tsv")
	os.WriteFile(asn, []byte("1.0.0.0 1.0.0.255 13335 US CLOUDFLARENET\n"), 0o644)
	for _, tc := range []struct{ flag, file, line string }{
		{"--labels", labels, labels + ":3"},
		{"--asn-db", asn, asn + ":1"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			_, errOut, code := mirrornet(t, "node", "--data", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--http", "",
				"--profile", "local", "--mdns=false", "--dht=false", tc.flag, tc.file)
			if code == 0 {
				t.Fatal("node started with a malformed file")
			}
			// Logs may precede it; the error is the one line mirrornet prints.
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
				if strings.HasPrefix(l, "mirrornet: ") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], tc.line) || !strings.Contains(errLines[0], tc.flag) {
				t.Errorf("stderr %q: want one error line naming %s and %s", errOut, tc.flag, tc.line)
			}
		})
	}
}
