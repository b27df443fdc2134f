package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json with the CIDs computed now")

// Independently published CIDs (not computed by this package):
//   - the CIDv1 raw-leaf CIDs of an empty file and of "hello world\n" and the
//     empty UnixFS directory are the ones every IPFS implementation prints;
//   - the directory holding hello.txt ("hello\n") is the IPIP-550 fixture
//     (links-first encoding) pinned in boxo's profile_test.go;
//   - the 3000-byte file of 'a' at 1000-byte chunks and the 64-entry HAMT
//     are the `ipfs add --chunker=size-1000` fixtures pinned in boxo's
//     profile_test.go for unixfs-v1-2025.
const (
	cidEmptyFile  = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
	cidHelloWorld = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4" // = sha256sum of "hello world\n" (a948904f...)
	cidEmptyDir   = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
	cidHelloDir   = "bafybeigdcg7pksx2zk5336vrfsktjodlr4rbfz37qr3koc5xboxe5ekv24"
	cidAAA1000    = "bafybeiapp6tzng2hpxzmopnplvg6hoxldufypompu6uzmhc6rdyw4m2qx4"
	cidHAMT64     = "bafybeiahnfucbarnualj2uzakbqnj3b3nvrszwu4jrl2x7ekbfqshpd524"
)

// seeded returns n deterministic pseudo-random bytes.
func seeded(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	r := rand.NewChaCha8(key)
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// memPut collects imported blocks.
type memPut struct {
	m     map[cid.Cid][]byte
	order []cid.Cid
}

func newMemPut() *memPut { return &memPut{m: map[cid.Cid][]byte{}} }

func (p *memPut) put(b blocks.Block) error {
	if _, ok := p.m[b.Cid()]; ok {
		return fmt.Errorf("block %s put twice", b.Cid())
	}
	p.m[b.Cid()] = b.RawData()
	p.order = append(p.order, b.Cid())
	return nil
}

func (p *memPut) get(c cid.Cid) ([]byte, error) {
	d, ok := p.m[c]
	if !ok {
		return nil, fmt.Errorf("missing %s", c)
	}
	return d, nil
}

// goldenTrees builds every golden input under dir and returns name -> path.
func goldenTrees(t testing.TB, dir string) map[string]string {
	t.Helper()
	p := map[string]string{}
	add := func(name string) string { p[name] = filepath.Join(dir, name); return p[name] }

	write(t, add("hello-world.txt"), []byte("hello world\n"))
	write(t, add("empty.txt"), nil)
	if err := os.Mkdir(add("empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(add("hello-dir"), "hello.txt"), []byte("hello\n"))
	write(t, add("small.bin"), seeded(1, 12345))
	write(t, add("multichunk.bin"), seeded(2, 5<<19)) // 2.5 MiB: three chunks

	nested := add("nested")
	write(t, filepath.Join(nested, "index.html"), []byte("<h1>app</h1>\n"))
	write(t, filepath.Join(nested, "assets", "app.js"), seeded(3, 70000))
	write(t, filepath.Join(nested, "assets", "img", "logo.png"), seeded(4, 3000))
	write(t, filepath.Join(nested, "assets", "img", "same.png"), seeded(4, 3000)) // duplicate block
	write(t, filepath.Join(nested, "deep", "a", "b", "c", "d.txt"), []byte("deep\n"))
	write(t, filepath.Join(nested, "big.bin"), seeded(5, 1<<20+1))
	if err := os.Symlink("index.html", filepath.Join(nested, "link.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../nowhere", filepath.Join(nested, "dangling")); err != nil {
		t.Fatal(err)
	}

	// Real-profile HAMT: each entry costs ~110 bytes in a basic directory
	// block, so 2600 entries pass the 256 KiB threshold.
	hamt := add("hamt")
	for i := range 2600 {
		name := fmt.Sprintf("entry-%04d-%s.txt", i, strings.Repeat("x", 60))
		write(t, filepath.Join(hamt, name), fmt.Appendf(nil, "entry %d\n", i))
	}
	// Just under the threshold: stays a basic directory.
	basic := add("basic-under-threshold")
	for i := range 2000 {
		name := fmt.Sprintf("entry-%04d-%s.txt", i, strings.Repeat("x", 60))
		write(t, filepath.Join(basic, name), fmt.Appendf(nil, "entry %d\n", i))
	}
	return p
}

var (
	treesOnce sync.Once
	treesDir  string
	trees     map[string]string
)

// sharedTrees builds the golden inputs once per test binary.
func sharedTrees(t *testing.T) map[string]string {
	treesOnce.Do(func() {
		var err error
		treesDir, err = os.MkdirTemp("", "bundle-golden-")
		if err != nil {
			t.Fatal(err)
		}
		trees = goldenTrees(t, treesDir)
	})
	if trees == nil {
		t.Fatal("golden trees not built")
	}
	return trees
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if treesDir != "" {
		os.RemoveAll(treesDir)
	}
	os.Exit(code)
}

func TestGoldenVectors(t *testing.T) {
	paths := sharedTrees(t)
	got := map[string]string{}
	for name, path := range paths {
		mp := newMemPut()
		res, err := Import(t.Context(), path, mp.put, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got[name] = res.Root.String()
		if res.Blocks != len(mp.m) {
			t.Errorf("%s: Result.Blocks = %d, put %d", name, res.Blocks, len(mp.m))
		}
		var sum int64
		for _, d := range mp.m {
			sum += int64(len(d))
		}
		if res.Size != sum {
			t.Errorf("%s: Result.Size = %d, blocks sum to %d", name, res.Size, sum)
		}
		// every block reachable, verified, nothing extra
		n := 0
		if err := Walk(t.Context(), res.Root, mp.get, func(cid.Cid, []byte) error { n++; return nil }); err != nil {
			t.Fatalf("%s: walk: %v", name, err)
		}
		if n != len(mp.m) {
			t.Errorf("%s: walk visited %d blocks, import made %d", name, n, len(mp.m))
		}
		// the root is always the last block put (children first)
		if last := mp.order[len(mp.order)-1]; !last.Equals(res.Root) {
			t.Errorf("%s: last block put is %s, want root", name, last)
		}
	}

	for name, want := range map[string]string{
		"hello-world.txt": cidHelloWorld,
		"empty.txt":       cidEmptyFile,
		"empty-dir":       cidEmptyDir,
		"hello-dir":       cidHelloDir,
	} {
		if got[name] != want {
			t.Errorf("%s: got %s, want published %s", name, got[name], want)
		}
	}

	golden := filepath.Join("testdata", "golden.json")
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Errorf("golden has %d entries, computed %d", len(want), len(got))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %s, golden %s", name, got[name], w)
		}
	}
}

// TestMultiChunkFileIndependent computes the root of a multi-chunk file by
// hand (raw leaves = sha256 of each 1 MiB chunk, root = dag-pb PBNode with
// one link per chunk and a UnixFS File Data field) and compares it with
// what Import builds through boxo.
func TestMultiChunkFileIndependent(t *testing.T) {
	data := seeded(2, 5<<19)
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, data)
	res, err := Import(t.Context(), path, func(blocks.Block) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}

	const chunk = 1 << 20
	var links, unixfs []byte
	unixfs = append(unixfs, 0x08, 0x02) // Type = File
	unixfs = append(unixfs, 0x18)       // filesize
	unixfs = binary.AppendUvarint(unixfs, uint64(len(data)))
	for off := 0; off < len(data); off += chunk {
		part := data[off:min(off+chunk, len(data))]
		sum := sha256.Sum256(part)
		mhash, _ := mh.Encode(sum[:], mh.SHA2_256)
		c := cid.NewCidV1(cid.Raw, mhash).Bytes()
		var l []byte
		l = append(l, 0x0a) // Hash
		l = binary.AppendUvarint(l, uint64(len(c)))
		l = append(l, c...)
		l = append(l, 0x12, 0x00) // Name ""
		l = append(l, 0x18)       // Tsize
		l = binary.AppendUvarint(l, uint64(len(part)))
		links = append(links, 0x12) // PBNode.Links
		links = binary.AppendUvarint(links, uint64(len(l)))
		links = append(links, l...)
		unixfs = append(unixfs, 0x20) // blocksizes
		unixfs = binary.AppendUvarint(unixfs, uint64(len(part)))
	}
	node := append(links, 0x0a) // PBNode.Data
	node = binary.AppendUvarint(node, uint64(len(unixfs)))
	node = append(node, unixfs...)
	sum := sha256.Sum256(node)
	mhash, _ := mh.Encode(sum[:], mh.SHA2_256)
	want := cid.NewCidV1(cid.DagProtobuf, mhash)
	if !res.Root.Equals(want) {
		t.Fatalf("Import root %s, independent computation %s", res.Root, want)
	}
	if res.Blocks != 4 || res.Files != 1 {
		t.Errorf("Blocks=%d Files=%d, want 4 and 1", res.Blocks, res.Files)
	}
}

// TestPublishedSmallScaleFixtures reproduces boxo's unixfs-v1-2025 fixtures
// that match `ipfs add --chunker=size-1000` with the HAMT threshold lowered
// to 1024 bytes.
func TestPublishedSmallScaleFixtures(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "aaa"), bytes.Repeat([]byte("a"), 3000))
	res, err := importPath(t.Context(), filepath.Join(dir, "aaa"), func(blocks.Block) error { return nil }, nil, 1000, Profile.HAMTShardingSize)
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.String() != cidAAA1000 {
		t.Errorf("3000 x 'a' at size-1000: got %s, want %s", res.Root, cidAAA1000)
	}

	hd := filepath.Join(dir, "hamt")
	for i := range 64 {
		write(t, filepath.Join(hd, fmt.Sprintf("file-%d.txt", i)), fmt.Appendf(nil, "file %d\n", i))
	}
	mp := newMemPut()
	res, err = importPath(t.Context(), hd, mp.put, nil, Profile.ChunkSize, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if res.Root.String() != cidHAMT64 {
		t.Errorf("64-entry HAMT: got %s, want %s", res.Root, cidHAMT64)
	}
	if !isHAMT(t, mp.m[res.Root]) {
		t.Error("64-entry directory over 1024 bytes is not a HAMT shard")
	}
}

func isHAMT(t *testing.T, data []byte) bool {
	t.Helper()
	nd, err := dag.DecodeProtobuf(data)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := ft.FSNodeFromBytes(nd.Data())
	if err != nil {
		t.Fatal(err)
	}
	return fs.Type() == ft.THAMTShard
}

func TestHAMTThreshold(t *testing.T) {
	paths := sharedTrees(t)
	for name, wantHAMT := range map[string]bool{"hamt": true, "basic-under-threshold": false, "nested": false} {
		mp := newMemPut()
		res, err := Import(t.Context(), paths[name], mp.put, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := isHAMT(t, mp.m[res.Root]); got != wantHAMT {
			t.Errorf("%s: HAMT=%v, want %v", name, got, wantHAMT)
		}
	}
}

func TestSymlinksStoredAsNodes(t *testing.T) {
	paths := sharedTrees(t)
	mp := newMemPut()
	res, err := Import(t.Context(), paths["nested"], mp.put, nil)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := dag.DecodeProtobuf(mp.m[res.Root])
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, l := range nd.Links() {
		if l.Name != "link.html" && l.Name != "dangling" {
			continue
		}
		child, err := dag.DecodeProtobuf(mp.m[l.Cid])
		if err != nil {
			t.Fatal(err)
		}
		fs, err := ft.FSNodeFromBytes(child.Data())
		if err != nil {
			t.Fatal(err)
		}
		if fs.Type() != ft.TSymlink {
			t.Errorf("%s: type %v, want symlink", l.Name, fs.Type())
		}
		found++
	}
	if found != 2 {
		t.Fatalf("found %d symlink entries, want 2", found)
	}
	if res.Files != 6 {
		t.Errorf("Files = %d, want 6 regular files", res.Files)
	}
}

func TestImportErrorsNamePath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "x", "y")
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	put := func(blocks.Block) error { return nil }
	for _, p := range []string{missing, loop} {
		_, err := Import(t.Context(), p, put, nil)
		if err == nil {
			t.Fatalf("%s: no error", p)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "bundle: ") || !strings.Contains(msg, p) || strings.Contains(msg, "\n") {
			t.Errorf("error %q: want one line starting with bundle: naming %s", msg, p)
		}
	}
	if os.Geteuid() != 0 {
		unread := filepath.Join(dir, "d", "secret")
		write(t, unread, []byte("x"))
		if err := os.Chmod(unread, 0); err != nil {
			t.Fatal(err)
		}
		_, err := Import(t.Context(), filepath.Join(dir, "d"), put, nil)
		if want := "bundle: open " + unread + ": permission denied"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	// A put error stops the import and is wrapped.
	boom := errors.New("boom")
	write(t, filepath.Join(dir, "f"), []byte("data"))
	if _, err := Import(t.Context(), filepath.Join(dir, "f"), func(blocks.Block) error { return boom }, nil); !errors.Is(err, boom) {
		t.Errorf("put error: got %v", err)
	}
	// Cancelled context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Import(ctx, filepath.Join(dir, "f"), put, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

func TestProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	write(t, path, seeded(9, 3<<20))
	var last int64
	calls := 0
	_, err := Import(t.Context(), path, func(blocks.Block) error { return nil }, func(done int64) {
		if done < last {
			t.Errorf("progress went backwards: %d after %d", done, last)
		}
		last = done
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != 3<<20 || calls < 3 {
		t.Errorf("progress ended at %d after %d calls", last, calls)
	}
}

func TestCheckAndLinks(t *testing.T) {
	good := dag.NewRawNode([]byte("hello world\n"))
	if err := Check(good.Cid(), good.RawData()); err != nil {
		t.Fatal(err)
	}
	if err := Check(good.Cid(), []byte("hello world!")); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered: got %v", err)
	}
	// non-sha256 path
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_512, MhLength: -1}.Sum([]byte("x"))
	if err := Check(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := Check(c, []byte("y")); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("sha512 tampered: got %v", err)
	}
	if l, err := Links(good.Cid(), good.RawData()); err != nil || len(l) != 0 {
		t.Fatalf("raw links: %v %v", l, err)
	}
	dir := ft.EmptyDirNode()
	_ = dir.SetCidBuilder(Profile.CidBuilder())
	_ = dir.AddNodeLink("a", good)
	_ = dir.AddNodeLink("b", dag.NewRawNode([]byte("b")))
	l, err := Links(dir.Cid(), dir.RawData())
	if err != nil || len(l) != 2 || !l[0].Equals(good.Cid()) {
		t.Fatalf("dag-pb links: %v %v", l, err)
	}
	if _, err := Links(dir.Cid(), []byte{0xff, 0xff}); !errors.Is(err, ErrBadBlock) {
		t.Fatalf("garbage: got %v", err)
	}
	cb, _ := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte{0xa0})
	if _, err := Links(cb, []byte{0xa0}); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("cbor: got %v", err)
	}
}

func TestWalkOrderAndVerification(t *testing.T) {
	// root -> (a -> (x), b -> (x), x): depth-first, parents first, each once
	x := dag.NewRawNode([]byte("x"))
	mk := func(children ...*dag.RawNode) *dag.ProtoNode {
		n := ft.EmptyDirNode()
		_ = n.SetCidBuilder(Profile.CidBuilder())
		for i, c := range children {
			_ = n.AddNodeLink(fmt.Sprint(i), c)
		}
		return n
	}
	a := mk(x)
	b := mk(x, dag.NewRawNode([]byte("y")))
	root := ft.EmptyDirNode()
	_ = root.SetCidBuilder(Profile.CidBuilder())
	_ = root.AddNodeLink("a", a)
	_ = root.AddNodeLink("b", b)
	_ = root.AddNodeLink("x", x)
	store := map[cid.Cid][]byte{}
	for _, n := range []interface {
		Cid() cid.Cid
		RawData() []byte
	}{x, a, b, root, dag.NewRawNode([]byte("y"))} {
		store[n.Cid()] = n.RawData()
	}
	get := func(c cid.Cid) ([]byte, error) {
		d, ok := store[c]
		if !ok {
			return nil, errors.New("missing")
		}
		return d, nil
	}
	var order []cid.Cid
	if err := Walk(t.Context(), root.Cid(), get, func(c cid.Cid, _ []byte) error { order = append(order, c); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []cid.Cid{root.Cid(), a.Cid(), x.Cid(), b.Cid(), dag.NewRawNode([]byte("y")).Cid()}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	// a tampered block stops the walk before visit sees it
	store[x.Cid()] = []byte("X")
	err := Walk(t.Context(), root.Cid(), get, func(c cid.Cid, _ []byte) error {
		if c.Equals(x.Cid()) {
			t.Error("visit saw tampered block")
		}
		return nil
	})
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered walk: %v", err)
	}
}

func FuzzLinks(f *testing.F) {
	dir := ft.EmptyDirNode()
	_ = dir.AddNodeLink("a", dag.NewRawNode([]byte("a")))
	f.Add(dir.RawData())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := Profile.CidBuilder().Sum(data)
		got, err := Links(c, data)
		// must agree with boxo's decoder whenever both accept the block
		if nd, derr := dag.DecodeProtobuf(data); err == nil && derr == nil {
			if len(got) != len(nd.Links()) {
				t.Fatalf("%d links, boxo decodes %d", len(got), len(nd.Links()))
			}
			for i, l := range nd.Links() {
				if !l.Cid.Equals(got[i]) {
					t.Fatalf("link %d: %s, boxo %s", i, got[i], l.Cid)
				}
			}
		}
		if err := Check(c, data); err != nil {
			t.Fatal(err)
		}
	})
}
