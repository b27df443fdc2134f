package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	mbundle "github.com/mirrornet/mirrornet/internal/bundle"
)

// snapshot describes a written tree: every path below dir with its
// type and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink " + target
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			out[rel] = fmt.Sprintf("file %v %x", fi.Mode().Perm(), data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getBoth writes b with GetDir (the tree written during the download) and
// with Get + WriteDir (written from memory afterwards) and returns both
// trees, or the errors.
func getBoth(t *testing.T, b *bundle) (live, after map[string]string, liveErr, afterErr error) {
	t.Helper()
	m := newFakeMirror(t, b, honest)
	dir := t.TempDir()
	if _, liveErr = GetDir(context.Background(), b.root, filepath.Join(dir, "live"), testOptions(t, m.URL)); liveErr == nil {
		live = snapshot(t, filepath.Join(dir, "live"))
	}
	res, err := Get(context.Background(), b.root, testOptions(t, m.URL))
	if err != nil {
		t.Fatal(err)
	}
	if afterErr = res.WriteDir(filepath.Join(dir, "after")); afterErr == nil {
		after = snapshot(t, filepath.Join(dir, "after"))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "live" && e.Name() != "after" {
			t.Errorf("left behind beside the output: %s", e.Name())
		}
	}
	return live, after, liveErr, afterErr
}

// fileRoot is a bundle whose root is the file at name inside b.
func fileRoot(t *testing.T, b *bundle, name string) *bundle {
	t.Helper()
	e, err := memDAG(b.blocks).entry(context.Background(), b.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range e.node.Links() {
		if l.Name == name {
			return &bundle{root: l.Cid, blocks: b.blocks}
		}
	}
	t.Fatalf("no %s in the bundle", name)
	return nil
}

// GetDir writes, while downloading and in arrival order, exactly the tree
// WriteDir writes from a finished download: directories, HAMT shards,
// multi-leaf files, a file whose chunks repeat, the same file under two
// names, empty files, and a bundle that is one file.
func TestGetDirWritesWhatWriteDirWrites(t *testing.T) {
	chunk := randomBytes(31, 1<<20)
	hamt := map[string][]byte{"sub/x.js": []byte("x")}
	for i := range 1000 {
		name := fmt.Sprintf("%04d-%s", i, strings.Repeat("n", 240))
		hamt[name] = []byte(name[:4])
	}
	big := buildBundle(t, map[string][]byte{
		"index.html":   []byte("<h1>app</h1>"),
		"big.bin":      randomBytes(32, 3<<20+5),
		"repeats.bin":  append(append(append([]byte{}, chunk...), chunk...), "tail"...),
		"lib/a.js":     randomBytes(33, 3000),
		"lib/same.bin": randomBytes(32, 3<<20+5),
		"empty.txt":    {},
		"lib/empty":    {},
	})
	for name, b := range map[string]*bundle{
		"tree":     big,
		"hamt":     buildBundle(t, hamt),
		"one-file": fileRoot(t, big, "big.bin"),
		"one-leaf": fileRoot(t, big, "index.html"),
		"empty":    fileRoot(t, big, "empty.txt"),
	} {
		t.Run(name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				live, after, liveErr, afterErr := getBoth(t, b)
				if liveErr != nil || afterErr != nil {
					t.Fatalf("GetDir: %v, WriteDir: %v", liveErr, afterErr)
				}
				if len(live) != len(after) {
					t.Errorf("GetDir wrote %d paths, WriteDir %d", len(live), len(after))
				}
				for p, want := range after {
					if got := live[p]; got != want {
						t.Errorf("%s: GetDir wrote %.60s, WriteDir %.60s", p, got, want)
					}
				}
			})
		})
	}
}

// Names GetDir refuses are the names WriteDir refuses, and nothing is
// left at the output.
func TestGetDirRefusesNamesAsWriteDir(t *testing.T) { inBubble(t, testGetDirRefusesNamesAsWriteDir) }

func testGetDirRefusesNamesAsWriteDir(t *testing.T) {
	for _, name := range []string{"index.html", "..x", "", ".", "..", "a/b", "nul\x00byte"} {
		res := oneEntryBundle(t, name)
		b := &bundle{root: res.Root, blocks: res.blocks}
		_, _, liveErr, afterErr := getBoth(t, b)
		if (liveErr == nil) != (afterErr == nil) || errors.Is(liveErr, mbundle.ErrBadName) != errors.Is(afterErr, mbundle.ErrBadName) {
			t.Errorf("entry %q: GetDir says %v, WriteDir %v", name, liveErr, afterErr)
		}
	}
}

// The files of a download appear (in the hidden directory beside the
// output) while it still runs: the mirror holds back the last leaf of a
// large file until the small files are on disk.
func TestGetDirWritesFilesDuringDownload(t *testing.T) {
	inBubble(t, testGetDirWritesFilesDuringDownload)
}

func testGetDirWritesFilesDuringDownload(t *testing.T) {
	b := buildBundle(t, map[string][]byte{
		"lib/a.js":   []byte("console.log(1)"),
		"index.html": []byte("<h1>app</h1>"),
		"big.bin":    randomBytes(41, 2<<20+9),
	})
	e, err := memDAG(b.blocks).entry(context.Background(), b.root)
	if err != nil {
		t.Fatal(err)
	}
	var bigNode cid.Cid
	for _, l := range e.node.Links() {
		if l.Name == "big.bin" {
			bigNode = l.Cid
		}
	}
	ls, err := linksOf(bigNode, b.blocks[bigNode])
	if err != nil || len(ls) != 3 {
		t.Fatalf("big.bin has %d leaves (%v), want 3", len(ls), err)
	}
	held := ls[2].c
	out := filepath.Join(t.TempDir(), "app")
	early := filepath.Join(PartialDir(out), "tree", "lib", "a.js")
	sawEarly := make(chan bool, 1)
	m := newFakeMirror(t, b, honest)
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, held.String()) {
			// Virtual time: the deadline passes only once nothing
			// else can move, so a file not there by then is one the
			// download would not write before the held leaf came.
			deadline := time.Now().Add(20 * time.Second)
			tick := time.NewTicker(5 * time.Millisecond)
			ok := false
			for !ok && time.Now().Before(deadline) {
				if data, err := os.ReadFile(early); err == nil && string(data) == "console.log(1)" {
					ok = true
					break
				}
				<-tick.C
			}
			tick.Stop()
			select {
			case sawEarly <- ok:
			default:
			}
		}
		m.ServeHTTP(w, r)
	}))
	o := testOptions(t, srv.URL)
	o.StallTimeout = time.Minute
	if _, err := GetDir(context.Background(), b.root, out, o); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-sawEarly:
		if !ok {
			t.Fatal("lib/a.js was not on disk before the download finished")
		}
	default:
		t.Fatal("the held leaf was never asked for")
	}
	got, err := os.ReadFile(filepath.Join(out, "big.bin"))
	if err != nil || !bytes.Equal(got, b.files["big.bin"]) {
		t.Fatalf("big.bin: %d bytes, %v", len(got), err)
	}
}

// A tree of many files is flushed while it is written (the flusher starts
// once it has more than syncFSFiles paths) and the flusher is stopped by
// the time GetDir returns, which writes the same tree as before.
func TestGetDirManyFilesFlushesWhileWriting(t *testing.T) {
	inBubble(t, testGetDirManyFilesFlushesWhileWriting)
}

func testGetDirManyFilesFlushesWhileWriting(t *testing.T) {
	files := map[string][]byte{}
	for i := range 3 * syncFSFiles {
		files[fmt.Sprintf("d%d/f%03d.js", i%4, i)] = randomBytes(uint64(100+i), 200+i*37)
	}
	b := buildBundle(t, files)
	out := filepath.Join(t.TempDir(), "app")
	var lt *liveTree
	testHookLiveTree = func(t *liveTree) { lt = t }
	defer func() { testHookLiveTree = nil }()
	if _, err := GetDir(context.Background(), b.root, out, testOptions(t, newFakeMirror(t, b, honest).URL)); err != nil {
		t.Fatal(err)
	}
	checkTree(t, b, out)
	if lt == nil || lt.flush == nil {
		t.Fatal("no flusher ran for a tree of many files")
	}
	select {
	case <-lt.flush.done:
	default:
		t.Fatal("the flusher still runs after GetDir returned")
	}
}

// Files in different directories are written at the same time: while one
// writer is held inside a leaf write, another directory's file is
// written. With one writer the held write would block every other one.
// In a bubble, the held writer's guard fires only once nothing else can
// move, so a loaded machine cannot make another writer look absent.
func TestGetDirWritesDirectoriesInParallel(t *testing.T) {
	inBubble(t, testGetDirWritesDirectoriesInParallel)
}

func testGetDirWritesDirectoriesInParallel(t *testing.T) {
	// Two directories whose files go to different writers.
	dirA, dirB := "d0", "d1"
	files := map[string][]byte{}
	for i := range 4 {
		files[fmt.Sprintf("%s/a%d.js", dirA, i)] = randomBytes(uint64(300+i), 500+i)
		files[fmt.Sprintf("%s/b%d.js", dirB, i)] = randomBytes(uint64(400+i), 600+i)
	}
	b := buildBundle(t, files)
	out := filepath.Join(t.TempDir(), "app")
	other := make(chan struct{}) // closed when a write in another directory starts
	var first string
	var overlapped bool // the other write started while the first was held
	var once, otherOnce sync.Once
	testHookLeafWrite = func(p string) {
		dir := filepath.Base(filepath.Dir(p))
		isFirst := false
		once.Do(func() { first, isFirst = dir, true })
		if isFirst {
			select {
			case <-other:
				overlapped = true
			case <-time.After(10 * time.Second): // virtual time: every other goroutine is blocked, no other writer ran
			}
			return
		}
		if dir != first {
			otherOnce.Do(func() { close(other) })
		}
	}
	defer func() { testHookLeafWrite = nil }()
	if _, err := GetDir(context.Background(), b.root, out, testOptions(t, newFakeMirror(t, b, honest).URL)); err != nil {
		t.Fatal(err)
	}
	checkTree(t, b, out)
	if !overlapped {
		t.Fatalf("no file of another directory was written while one in %s was held", first)
	}
}

// With NoSync, GetDir and GetCAR write the same output without making it
// durable: no flusher, no syncfs and no fsync (each of which the default
// runs before and after the rename).
func TestGetNoSync(t *testing.T) {
	files := map[string][]byte{}
	for i := range 3 * syncFSFiles {
		files[fmt.Sprintf("d%d/f%03d.js", i%4, i)] = randomBytes(uint64(700+i), 200+i*37)
	}
	b := buildBundle(t, files)
	m := newFakeMirror(t, b, honest)
	var syncs atomic.Int64
	testHookSync = func() { syncs.Add(1) }
	defer func() { testHookSync = nil }()
	var lt *liveTree
	testHookLiveTree = func(t *liveTree) { lt = t }
	defer func() { testHookLiveTree = nil }()
	for _, noSync := range []bool{false, true} {
		syncs.Store(0)
		o := testOptions(t, m.URL)
		o.NoSync = noSync
		dir := t.TempDir()
		out := filepath.Join(dir, "app")
		if _, err := GetDir(context.Background(), b.root, out, o); err != nil {
			t.Fatal(err)
		}
		checkTree(t, b, out)
		if flushed := lt.flush != nil; flushed == noSync {
			t.Errorf("NoSync %v: flusher ran %v", noSync, flushed)
		}
		carPath := filepath.Join(dir, "app.car")
		if _, err := GetCAR(context.Background(), b.root, carPath, o); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(carPath); err != nil || fi.Size() < int64(len(files)*200) {
			t.Fatalf("NoSync %v: CAR %v", noSync, err)
		}
		switch n := syncs.Load(); {
		case noSync && n != 0:
			t.Errorf("NoSync: %d steps made the output durable, want none", n)
		case !noSync && n < 4: // the tree and its parent, the CAR and its directory
			t.Errorf("default: %d steps made the output durable, want 4", n)
		}
	}
}
