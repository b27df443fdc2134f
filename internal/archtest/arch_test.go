package archtest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mirrornet/mirrornet"

// pure lists the packages that must stay free of hosts, networks and the
// composition root. Packages not written yet are skipped (and logged);
// add new pure packages here.
var pure = []struct {
	dir string
	// stdlibOnly: the package may import nothing outside the standard
	// library (protocol is the spec a newcomer reads alone).
	stdlibOnly bool
}{
	{"protocol", true},
	{"attest", false},
	{"internal/health", false},
	{"internal/store", false},
	{"internal/store/layout1", false},
	{"internal/bundle", false},
	{"internal/probe", false},
	{"internal/probe/probetest", false},
	{"internal/domain", false},
	{"internal/release", false},
	{"internal/badge", false},
	{"internal/atomicfile", false},
	{"internal/announce", false},
	{"internal/bundle/verify", false},
	{"internal/bitswapserve/wants", false},
	{"internal/ledger", false},
	{"internal/evidence", false},
	{"internal/payouts", false},
	{"internal/snapcache", true},
	{"internal/swim", false},
	{"internal/relsync", false},
	{"internal/gctune", true},
}

// rule is one forbidden dependency of a pure package.
type rule struct {
	name  string
	match func(p *pkg) bool
	// through lists library packages whose own imports are not followed for
	// this rule, each with the reason. Keep it short and justified.
	through map[string]string
}

func pathOrBelow(prefix string) func(*pkg) bool {
	return func(p *pkg) bool { return p.ImportPath == prefix || strings.HasPrefix(p.ImportPath, prefix+"/") }
}

var forbidden = []rule{
	{name: "the libp2p host", match: func(p *pkg) bool {
		return p.ImportPath == "github.com/libp2p/go-libp2p" || strings.HasPrefix(p.ImportPath, "github.com/libp2p/go-libp2p/p2p/")
	}},
	{name: "gossipsub", match: pathOrBelow("github.com/libp2p/go-libp2p-pubsub")},
	{name: "net/http", match: pathOrBelow("net/http"), through: map[string]string{
		// Libraries that link net/http for a side feature that mirrornet's
		// pure code never calls. boxo's UnixFS and chunker code (needed for
		// kubo-identical CIDs) pulls in all three. A direct import of
		// net/http, or one through any other package (boxo/gateway, a
		// mirrornet package), is still caught.
		"github.com/ipfs/boxo/files":           "UnixFS file abstraction; carries multipart helpers",
		"go.uber.org/zap":                      "go-log's logger; carries an HTTP level handler",
		"go.opentelemetry.io/otel/propagation": "tracing; carries HTTP header carriers",
	}},
	{name: "the node package", match: pathOrBelow(module + "/node")},
}

// stdlibOnly is the stricter rule for protocol.
var stdlibOnly = rule{name: "a non-standard-library package", match: func(p *pkg) bool { return !p.Standard }}

// pkg is the part of `go list -json` this test reads.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
	Error      *struct{ Err string }
}

type graph map[string]*pkg

// violations walks root's dependencies breadth first and returns, for each
// dependency r matches, "r.name: root -> ... -> dep" (a shortest chain),
// sorted.
func (g graph) violations(root string, r rule) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	var out []string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		p, ok := g[cur]
		if !ok {
			if cur == "C" {
				continue
			}
			p = &pkg{ImportPath: cur} // not listed: unknown, so not standard
		}
		if cur != root && r.match(p) {
			chain := []string{cur}
			for at := parent[cur]; at != ""; at = parent[at] {
				chain = append(chain, at)
			}
			slices.Reverse(chain)
			out = append(out, r.name+": "+strings.Join(chain, " -> "))
			continue
		}
		if _, skip := r.through[cur]; skip {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := parent[imp]; !seen {
				parent[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	slices.Sort(out)
	return out
}

// check applies every rule to root.
func (g graph) check(root string, rules []rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, g.violations(root, r)...)
	}
	slices.Sort(out)
	return out
}

// goList runs `go list -e -json=... args` in the module root.
func goList(t *testing.T, root string, args ...string) graph {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found: ", err)
	}
	cmd := exec.Command(gotool, append([]string{"list", "-e", "-json=ImportPath,Standard,Imports,Error"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.Bytes())
	}
	g := graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		g[p.ImportPath] = &p
	}
	return g
}

// moduleRoot finds the directory holding go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("go.mod not found")
		}
		dir = up
	}
}

// hasGoFiles reports whether dir holds a non-test Go file.
func hasGoFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}

func TestPurePackagesStayPure(t *testing.T) {
	root := moduleRoot(t)
	var args []string
	for _, p := range pure {
		if !hasGoFiles(filepath.Join(root, p.dir)) {
			t.Logf("%s: not written yet, skipped", p.dir)
			continue
		}
		args = append(args, "./"+p.dir)
	}
	if len(args) == 0 {
		t.Skip("no pure package exists")
	}
	g := goList(t, root, append([]string{"-deps"}, args...)...)
	for _, p := range pure {
		path := module + "/" + p.dir
		lp, ok := g[path]
		if !ok {
			continue
		}
		t.Run(p.dir, func(t *testing.T) {
			if lp.Error != nil {
				t.Logf("%s does not load cleanly (%s); checking what it imports anyway", p.dir, lp.Error.Err)
			}
			rules := forbidden
			if p.stdlibOnly {
				rules = append(slices.Clone(forbidden), stdlibOnly)
			}
			for _, v := range g.check(path, rules) {
				t.Errorf("pure package %s depends on %s", p.dir, v)
			}
		})
	}
}

func TestOnlyCmdImportsNode(t *testing.T) {
	root := moduleRoot(t)
	if !hasGoFiles(filepath.Join(root, "node")) {
		t.Skip("node does not exist yet")
	}
	g := goList(t, root, "./...")
	node := module + "/node"
	var importers []string
	// internal/testnet runs mirrors as child processes for `mirrornet
	// testnet`; it uses node's admin client and node.json reader, never
	// node.New.
	allowed := map[string]bool{node: true, module + "/internal/testnet": true}
	for path, p := range g {
		if strings.HasPrefix(path, module+"/cmd/") || allowed[path] {
			continue
		}
		if slices.Contains(p.Imports, node) {
			importers = append(importers, path)
		}
	}
	slices.Sort(importers)
	for _, path := range importers {
		t.Errorf("%s imports node: only cmd/... may (node.New is the one composition root)", path)
	}
}

// TestNetsimOnlyInTests: internal/netsim, the simulated network of the
// scale benchmarks, never reaches a shipped binary (goList reads non-test
// imports only).
func TestNetsimOnlyInTests(t *testing.T) {
	root := moduleRoot(t)
	netsim := module + "/internal/netsim"
	g := goList(t, root, "./...")
	for path, p := range g {
		if slices.Contains(p.Imports, netsim) {
			t.Errorf("%s imports %s: only tests and benchmarks may", path, netsim)
		}
	}
}

// TestCheckerCatchesViolations proves the checks above can fail: a
// synthetic graph with each kind of forbidden dependency, reached
// indirectly, is reported with its chain.
func TestCheckerCatchesViolations(t *testing.T) {
	std := func(path string, imports ...string) *pkg {
		return &pkg{ImportPath: path, Standard: true, Imports: imports}
	}
	ext := func(path string, imports ...string) *pkg { return &pkg{ImportPath: path, Imports: imports} }
	const (
		health  = module + "/internal/health"
		attest  = module + "/attest"
		proto   = module + "/protocol"
		corep   = "github.com/libp2p/go-libp2p/core/peer"
		helper  = "github.com/example/helper"
		host    = "github.com/libp2p/go-libp2p/p2p/host/basic"
		pubsub  = "github.com/libp2p/go-libp2p-pubsub"
		files   = "github.com/ipfs/boxo/files"
		unixfs  = "github.com/ipfs/boxo/ipld/unixfs"
		bundle  = module + "/internal/bundle"
		bundle2 = module + "/internal/bundle2"
		store   = module + "/internal/store"
	)
	g := graph{}
	for _, p := range []*pkg{
		ext(health, attest, "time"),
		ext(attest, proto, corep),
		ext(corep, helper, "github.com/libp2p/go-libp2p/core/crypto"),
		ext("github.com/libp2p/go-libp2p/core/crypto"),
		ext(helper, host, "net/http/httptest"),
		ext(host, pubsub),
		ext(pubsub),
		std("net/http/httptest", "net/http"),
		std("net/http"),
		ext(proto, "encoding/json", "github.com/example/leaf"),
		ext("github.com/example/leaf"),
		std("encoding/json"),
		std("time"),
		ext(store, module+"/node", "C"),
		ext(module + "/node"),
		ext(bundle, unixfs, "github.com/libp2p/go-libp2p"),
		ext("github.com/libp2p/go-libp2p"),
		ext(unixfs, files),
		ext(files, "net/http"),
		ext(bundle2, unixfs, "net/http"),
		ext(module+"/internal/clean", corep, unixfs),
	} {
		g[p.ImportPath] = p
	}
	chain := func(reason string, path ...string) string { return reason + ": " + strings.Join(path, " -> ") }
	for _, tc := range []struct {
		root  string
		rules []rule
		want  []string
	}{
		{health, forbidden, []string{
			chain("gossipsub", health, attest, corep, helper, host, pubsub),
			chain("net/http", health, attest, corep, helper, "net/http/httptest"),
			chain("the libp2p host", health, attest, corep, helper, host),
		}},
		{proto, []rule{stdlibOnly}, []string{
			chain("a non-standard-library package", proto, "github.com/example/leaf"),
		}},
		{store, forbidden, []string{
			chain("the node package", store, module+"/node"),
		}},
		// net/http through boxo/files alone is tolerated; the host is not.
		{bundle, forbidden, []string{
			chain("the libp2p host", bundle, "github.com/libp2p/go-libp2p"),
		}},
		// A direct import of net/http is caught despite the exception.
		{bundle2, forbidden, []string{
			chain("net/http", bundle2, "net/http"),
		}},
	} {
		if got := g.check(tc.root, tc.rules); !slices.Equal(got, tc.want) {
			t.Errorf("check(%s):\n got %q\nwant %q", tc.root, got, tc.want)
		}
	}
	// go-libp2p/core is allowed; only the host (root package, p2p/...) is not.
	g2 := graph{}
	for _, p := range []*pkg{
		ext(module+"/internal/clean", corep),
		ext(corep, "github.com/libp2p/go-libp2p/core/crypto"),
		ext("github.com/libp2p/go-libp2p/core/crypto"),
	} {
		g2[p.ImportPath] = p
	}
	if got := g2.check(module+"/internal/clean", forbidden); len(got) != 0 {
		t.Errorf("core-only package flagged: %q", got)
	}
}
