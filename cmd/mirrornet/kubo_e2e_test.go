package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// kuboEnv names the kubo (`ipfs`) binary the interop test runs against.
// .ci/kubo installs the pinned version and prints its path; .ci/run sets it.
const kuboEnv = "MIRRORNET_KUBO"

// TestE2EKuboInterop runs a stock kubo daemon next to a real mirror, both
// on loopback only, and moves bundles both ways over bitswap as a user
// would: kubo fetches what the mirror publishes (`ipfs swarm connect`,
// `ipfs dag export`, `ipfs get`), and the mirror follows what kubo added
// (`mirrornet follow`) and serves it from its gateway. Along the way, kubo
// under the unixfs-v1-2025 import profile and `mirrornet publish` must make
// the same CIDs, and kubo's `dag export` must be byte for byte the mirror's
// trustless-gateway CAR.
//
// It skips only when MIRRORNET_KUBO is unset; a binary that is set but does
// not work fails the test.
func TestE2EKuboInterop(t *testing.T) {
	bin := os.Getenv(kuboEnv)
	if bin == "" {
		t.Skip(kuboEnv + " is unset: the kubo interop test needs a kubo (ipfs) binary; .ci/kubo installs one and prints its path")
	}
	k := startKubo(t, bin)
	m := startNode(t)
	mi := m.info(t)
	mirrorAddr := mi.Addrs[0]

	t.Run("mirror to kubo", func(t *testing.T) {
		tree := interopTree(t, "site", 10)
		pub := publishJSON(t, m.data, tree)

		// kubo computes the same CID (without storing anything).
		if got := strings.TrimSpace(k.ipfs(t, "add", "-r", "-Q", "--only-hash", tree)); got != pub.CID {
			t.Fatalf("kubo's CID for the tree is %s, mirrornet's %s", got, pub.CID)
		}
		// So whatever kubo has next came over the network.
		if _, errOut, err := k.try(t, "block", "stat", "--offline", pub.CID); err == nil {
			t.Fatalf("kubo holds %s before connecting to the mirror", pub.CID)
		} else if !strings.Contains(errOut, "not found") {
			t.Fatalf("ipfs block stat --offline: %v: %s", err, errOut)
		}

		k.ipfs(t, "swarm", "connect", mirrorAddr)
		exported := k.ipfs(t, "dag", "export", pub.CID)
		blocks := checkCAR(t, []byte(exported), pub.CID)
		if blocks != pub.Blocks {
			t.Errorf("kubo exported %d blocks, the mirror published %d", blocks, pub.Blocks)
		}
		gwCAR, status := httpGet(t, mi.HTTP+"/ipfs/"+pub.CID+"?format=car", "")
		if status != http.StatusOK {
			t.Fatalf("mirror gateway CAR: status %d: %s", status, gwCAR)
		}
		if !bytes.Equal([]byte(exported), gwCAR) {
			t.Errorf("kubo's dag export (%d bytes) differs from the mirror's trustless CAR (%d bytes)", len(exported), len(gwCAR))
		}

		dest := filepath.Join(t.TempDir(), "out")
		k.ipfs(t, "get", "-o", dest, pub.CID)
		sameTree(t, tree, dest)
	})

	t.Run("kubo to mirror", func(t *testing.T) {
		tree := interopTree(t, "app", 20)
		root := strings.TrimSpace(k.ipfs(t, "add", "-r", "-Q", tree))
		if _, err := cid.Decode(root); err != nil {
			t.Fatalf("ipfs add printed %q: %v", root, err)
		}
		if out, errOut, code := mirrornet(t, "publish", "--offline", tree); code != 0 || strings.TrimSpace(out) != root {
			t.Fatalf("publish --offline: exit %d, CID %q (%s); kubo's is %s", code, out, errOut, root)
		}
		var stat struct {
			TotalSize    int64
			UniqueBlocks int
		}
		if err := json.Unmarshal([]byte(k.ipfs(t, "dag", "stat", "--progress=false", "--enc=json", root)), &stat); err != nil || stat.UniqueBlocks == 0 {
			t.Fatalf("ipfs dag stat: %+v, %v", stat, err)
		}

		k.ipfs(t, "swarm", "connect", mirrorAddr)
		if _, errOut, code := mirrornet(t, "follow", "--data", m.data, root); code != 0 {
			t.Fatalf("follow: exit %d: %s", code, errOut)
		}
		waitFor(t, 15*time.Second, "mirror holds the bundle kubo added", func() (bool, string) {
			out, errOut, _ := mirrornet(t, "ls", "--data", m.data, "--json")
			var list []struct {
				CID    string `json:"cid"`
				State  string `json:"state"`
				Bytes  int64  `json:"bytes"`
				Blocks int    `json:"blocks"`
			}
			_ = json.Unmarshal([]byte(out), &list)
			for _, b := range list {
				if b.CID == root {
					return b.State == "held" && b.Bytes == stat.TotalSize && b.Blocks == stat.UniqueBlocks,
						fmt.Sprintf("%s (kubo: %d bytes, %d blocks)", out, stat.TotalSize, stat.UniqueBlocks)
				}
			}
			return false, out + errOut
		})

		// The mirror serves it: each file on the app's own origin, and the
		// whole DAG as a trustless CAR identical to kubo's export.
		port := mi.HTTP[strings.LastIndex(mi.HTTP, ":")+1:]
		origin := root + ".ipfs.localhost:" + port
		n := 0
		err := filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(tree, p)
			want, _ := os.ReadFile(p)
			got, status := httpGet(t, mi.HTTP+"/"+filepath.ToSlash(rel), origin)
			if status != http.StatusOK || !bytes.Equal(got, want) {
				t.Errorf("gateway %s/%s: status %d, %d bytes, want %d bytes", origin, rel, status, len(got), len(want))
			}
			n++
			return nil
		})
		if err != nil || n == 0 {
			t.Fatalf("walk %s: %d files, %v", tree, n, err)
		}
		gwCAR, status := httpGet(t, mi.HTTP+"/ipfs/"+root+"?format=car", "")
		if status != http.StatusOK {
			t.Fatalf("mirror gateway CAR: status %d: %s", status, gwCAR)
		}
		if exported := k.ipfs(t, "dag", "export", root); !bytes.Equal([]byte(exported), gwCAR) {
			t.Errorf("the mirror's trustless CAR (%d bytes) differs from kubo's dag export (%d bytes)", len(gwCAR), len(exported))
		}
	})

	t.Run("empty file", func(t *testing.T) {
		kuboEmptyFile(t, k, m, mirrorAddr)
	})
}

// kuboEmptyFile moves bundles holding an empty file (a common .nojekyll or
// placeholder) both ways between kubo and the mirror.
func kuboEmptyFile(t *testing.T, k *kubo, m *proc, mirrorAddr string) {
	dir := filepath.Join(t.TempDir(), "empty")
	for rel, b := range map[string]string{"index.html": "<!doctype html>\n", ".nojekyll": "", "sub/placeholder": ""} {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k.ipfs(t, "swarm", "connect", mirrorAddr)

	// mirror -> kubo
	out, errOut, code := mirrornet(t, "publish", "--data", m.data, dir)
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, errOut)
	}
	root := strings.TrimSpace(out)
	checkCAR(t, []byte(k.ipfs(t, "dag", "export", root)), root)

	// kubo -> mirror: the same files in another directory, so the root
	// differs and the mirror does not hold it yet.
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><p>2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root2 := strings.TrimSpace(k.ipfs(t, "add", "-r", "-Q", dir))
	if _, errOut, code := mirrornet(t, "follow", "--data", m.data, root2); code != 0 {
		t.Fatalf("follow: exit %d: %s", code, errOut)
	}
	waitFor(t, 15*time.Second, "mirror holds kubo's bundle with empty files", func() (bool, string) {
		out, errOut, _ := mirrornet(t, "ls", "--data", m.data, "--json")
		var list []struct {
			CID   string `json:"cid"`
			State string `json:"state"`
		}
		_ = json.Unmarshal([]byte(out), &list)
		for _, b := range list {
			if b.CID == root2 {
				return b.State == "held", out
			}
		}
		return false, out + errOut
	})
}

// interopTree writes a small app: an index, a nested directory of small
// files, and one file of more than two 1 MiB chunks.
func interopTree(t *testing.T, name string, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	files := map[string][]byte{
		"index.html":          fmt.Appendf(nil, "<!doctype html><title>%s</title><script src=js/app.js></script>\n", name),
		"js/app.js":           seededBytes(seed+1, 20_000),
		"js/lib/vendor.js":    seededBytes(seed+2, 70_000),
		"css/style.css":       seededBytes(seed+3, 3_000),
		"assets/app.wasm":     seededBytes(seed+4, 2<<20+12_345),
		"assets/robots.txt":   []byte("User-agent: *\n"),
		"deep/er/still/x.txt": []byte(name + "\n"),
	}
	for rel, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkCAR checks that raw is a CARv1 with the single root want whose every
// block matches its CID, and returns the number of blocks.
func checkCAR(t *testing.T, raw []byte, want string) int {
	t.Helper()
	br, err := car.NewBlockReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("CAR: %v", err)
	}
	if br.Version != 1 || len(br.Roots) != 1 || br.Roots[0].String() != want {
		t.Fatalf("CAR v%d with roots %v, want v1 with the one root %s", br.Version, br.Roots, want)
	}
	n := 0
	for {
		blk, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("CAR block %d: %v", n, err)
		}
		c, err := blk.Cid().Prefix().Sum(blk.RawData())
		if err != nil || !c.Equals(blk.Cid()) {
			t.Fatalf("CAR block %s does not match its bytes (%v)", blk.Cid(), err)
		}
		n++
	}
	return n
}

// httpGet fetches url, with Host header host if not empty, following no
// redirects, and returns the body and status.
func httpGet(t *testing.T, url, host string) ([]byte, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	hc := &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body, resp.StatusCode
}

// kubo is a running kubo daemon with its own repository.
type kubo struct {
	bin  string
	env  []string
	out  *bytes.Buffer // daemon stdout and stderr; read only after done
	done chan error
}

// startKubo initialises a repository in a temporary directory, confines
// the daemon to loopback (no bootstrap peers, no mDNS, no DHT or delegated
// routing, no NAT mapping, AutoNAT, relays, AutoTLS, AutoConf or
// telemetry; API, gateway and swarm on 127.0.0.1 ports the kernel picks),
// imports with the unixfs-v1-2025 profile, starts `ipfs daemon` and waits
// until its RPC API answers.
func startKubo(t *testing.T, bin string) *kubo {
	t.Helper()
	repo := t.TempDir()
	k := &kubo{
		bin: bin,
		env: append(os.Environ(), "IPFS_PATH="+repo, "HOME="+repo, "IPFS_TELEMETRY=off", "DO_NOT_TRACK=1"),
	}
	if v, errOut, err := k.try(t, "version", "--number"); err != nil {
		t.Fatalf("%s=%s does not run: %v: %s", kuboEnv, bin, err, errOut)
	} else {
		t.Logf("kubo %s", strings.TrimSpace(v))
	}
	k.ipfs(t, "init", "--profile", "test,unixfs-v1-2025")
	confineToLoopback(t, filepath.Join(repo, "config"))

	cmd := exec.Command(bin, "daemon")
	cmd.Env = k.env
	k.out = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = k.out, k.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubo daemon: %v", err)
	}
	k.done = make(chan error, 1)
	go func() { k.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-k.done
		if t.Failed() {
			t.Logf("kubo daemon output:\n%s", lastLines(k.out.String(), 30))
		}
		k.done <- nil
	})

	// The daemon writes REPO/api once its RPC API listens.
	var apiURL string
	waitFor(t, 20*time.Second, "kubo RPC API answers", func() (bool, string) {
		select {
		case err := <-k.done:
			k.done <- err
			t.Fatalf("kubo daemon exited early: %v\n%s", err, k.out.String())
		default:
		}
		if apiURL == "" {
			raw, err := os.ReadFile(filepath.Join(repo, "api"))
			if err != nil {
				return false, err.Error()
			}
			a, err := ma.NewMultiaddr(strings.TrimSpace(string(raw)))
			if err != nil {
				return false, err.Error()
			}
			na, err := manet.ToNetAddr(a)
			if err != nil {
				return false, err.Error()
			}
			apiURL = "http://" + na.String()
		}
		// A kubo that accepts but never answers must not outlast waitFor.
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Post(apiURL+"/api/v0/id", "", nil)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var id struct{ ID string }
		err = json.NewDecoder(resp.Body).Decode(&id)
		return resp.StatusCode == http.StatusOK && err == nil && id.ID != "", fmt.Sprintf("status %d, %v", resp.StatusCode, err)
	})
	return k
}

// confineToLoopback edits a kubo config file so the daemon listens and
// talks on loopback only, whatever the test profile sets in this version.
func confineToLoopback(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("kubo config: %v", err)
	}
	set := func(key string, v any) {
		parts := strings.Split(key, ".")
		m := cfg
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	loopback := "/ip4/127.0.0.1/tcp/0"
	set("Addresses.Swarm", []string{loopback})
	set("Addresses.API", loopback)
	set("Addresses.Gateway", loopback)
	set("Addresses.Announce", []string{})
	set("Addresses.AppendAnnounce", []string{})
	set("Bootstrap", []string{})
	set("Peering.Peers", []any{})
	set("Discovery.MDNS.Enabled", false)
	set("Routing.Type", "none")
	set("Routing.DelegatedRouters", []string{})
	set("Provide.Enabled", false)
	set("AutoNAT.ServiceMode", "disabled")
	set("AutoConf.Enabled", false)
	set("AutoTLS.Enabled", false)
	set("DNS.Resolvers", map[string]string{})
	set("Ipns.DelegatedPublishers", []string{})
	set("Swarm.DisableNatPortMap", true)
	set("Swarm.RelayClient.Enabled", false)
	set("Swarm.RelayService.Enabled", false)
	set("Plugins.Plugins.telemetry.Config.Mode", "off")
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// try runs the ipfs CLI against the daemon (it finds the daemon through
// IPFS_PATH) and returns stdout, stderr and the error.
func (k *kubo) try(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Env = k.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("no answer within 20s: %w", ctx.Err())
	}
	return out.String(), errb.String(), err
}

// ipfs runs the ipfs CLI and fails the test unless it succeeds.
func (k *kubo) ipfs(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := k.try(t, args...)
	if err != nil {
		t.Fatalf("ipfs %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}
