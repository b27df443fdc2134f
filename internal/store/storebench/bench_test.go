package storebench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	pebbleds "github.com/ipfs/go-ds-pebble"
	format "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/internal/bundle/verify"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/store/layout1"
)

// backend is one block store under test. put stores bytes the caller has
// hashed; durable makes a round of puts survive a power loss (the group
// commit each store offers: MarkHeld of a root linking every block, or a
// WAL sync); get reads a block back and checks it against its CID.
type backend interface {
	put(c cid.Cid, data []byte) error
	durable(root cid.Cid, rootData []byte) error
	get(c cid.Cid) ([]byte, error)
	close()
}

type packs struct{ s *store.Store }

func (p packs) put(c cid.Cid, d []byte) error { return p.s.PutVerified(c, d) }
func (p packs) durable(root cid.Cid, rd []byte) error {
	if err := p.s.Put(root, rd); err != nil {
		return err
	}
	_, err := p.s.MarkHeld(root)
	return err
}
func (p packs) get(c cid.Cid) ([]byte, error) { return p.s.Get(c) }
func (p packs) close()                        { p.s.Close() }

type files struct{ s *layout1.Store }

func (f files) put(c cid.Cid, d []byte) error { return f.s.PutVerified(c, d) }
func (f files) durable(root cid.Cid, rd []byte) error {
	if err := f.s.Put(root, rd); err != nil {
		return err
	}
	_, err := f.s.MarkHeld(root)
	return err
}
func (f files) get(c cid.Cid) ([]byte, error) { return f.s.Get(c) }
func (f files) close()                        { f.s.Close() }

type pebble struct {
	d  *pebbleds.Datastore
	bs blockstore.Blockstore
}

func (p pebble) put(c cid.Cid, d []byte) error {
	b, err := blocks.NewBlockWithCid(d, c)
	if err != nil {
		return err
	}
	return p.bs.Put(context.Background(), b)
}
func (p pebble) durable(root cid.Cid, rd []byte) error {
	if err := p.put(root, rd); err != nil {
		return err
	}
	return p.d.Sync(context.Background(), ds.NewKey("/"))
}
func (p pebble) get(c cid.Cid) ([]byte, error) {
	b, err := p.bs.Get(context.Background(), c)
	if err != nil {
		return nil, err
	}
	return b.RawData(), verify.Check(c, b.RawData())
}
func (p pebble) close() { p.d.Close() }

var backends = []struct {
	name string
	open func(b *testing.B, dir string) backend
}{
	{"files", func(b *testing.B, dir string) backend {
		s, err := layout1.Open(dir, layout1.Options{VerifiedCache: -1})
		if err != nil {
			b.Fatal(err)
		}
		return files{s}
	}},
	{"packs", func(b *testing.B, dir string) backend {
		s, err := store.Open(dir, store.Options{VerifiedCache: -1})
		if err != nil {
			b.Fatal(err)
		}
		return packs{s}
	}},
	{"pebble", func(b *testing.B, dir string) backend {
		d, err := pebbleds.NewDatastore(dir)
		if err != nil {
			b.Fatal(err)
		}
		return pebble{d: d, bs: blockstore.NewBlockstore(d)}
	}},
}

// workload is a round of blocks of one size: 32 MiB of 1 MiB or 256 KiB
// blocks, or 4,096 blocks of 4 KiB (a bundle of many small files).
type workload struct {
	name  string
	size  int
	count int
}

var workloads = []workload{
	{"1MiB", 1 << 20, 32},
	{"256KiB", 256 << 10, 128},
	{"4KiB", 4 << 10, 4096},
}

func seeded(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// round makes the blocks of w (seeded by round number r) and a dag-pb root
// linking all of them.
func round(b *testing.B, w workload, r int) ([]cid.Cid, [][]byte, cid.Cid, []byte) {
	pref := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	cs := make([]cid.Cid, w.count)
	data := make([][]byte, w.count)
	root := merkledag.NodeWithData(nil)
	root.SetCidBuilder(cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256})
	for i := range cs {
		data[i] = seeded(uint64(r)<<32|uint64(i), w.size)
		c, err := pref.Sum(data[i])
		if err != nil {
			b.Fatal(err)
		}
		cs[i] = c
		if err := root.AddRawLink(fmt.Sprint(i), &format.Link{Cid: c, Size: uint64(w.size)}); err != nil {
			b.Fatal(err)
		}
	}
	return cs, data, root.Cid(), root.RawData()
}

func sysTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Stime.Nano())
}

// BenchmarkPut stores a round of blocks into an empty store and makes them
// durable. MB/s is block bytes; sys-us/block the kernel CPU per block
// (getrusage), which is what a file per block costs.
func BenchmarkPut(b *testing.B) {
	for _, w := range workloads {
		for _, be := range backends {
			b.Run(w.name+"/"+be.name, func(b *testing.B) {
				cs, data, root, rd := round(b, w, 1)
				b.SetBytes(int64(w.size * w.count))
				var sys time.Duration
				n := 0
				for b.Loop() {
					b.StopTimer()
					st := be.open(b, filepath.Join(b.TempDir(), fmt.Sprint(n)))
					s0 := sysTime()
					b.StartTimer()
					for i, c := range cs {
						if err := st.put(c, data[i]); err != nil {
							b.Fatal(err)
						}
					}
					if err := st.durable(root, rd); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					sys += sysTime() - s0
					st.close()
					n++
					b.StartTimer()
				}
				b.ReportMetric(float64(sys.Microseconds())/float64(n*w.count), "sys-us/block")
			})
		}
	}
}

// BenchmarkGet reads every block of a durable round back in a seeded
// random order, each checked against its CID (the stores' verified-read
// caches are off: this is a mirror's first read after a restart).
func BenchmarkGet(b *testing.B) {
	for _, w := range workloads {
		for _, be := range backends {
			b.Run(w.name+"/"+be.name, func(b *testing.B) {
				cs, data, root, rd := round(b, w, 2)
				st := be.open(b, b.TempDir())
				defer st.close()
				for i, c := range cs {
					if err := st.put(c, data[i]); err != nil {
						b.Fatal(err)
					}
				}
				if err := st.durable(root, rd); err != nil {
					b.Fatal(err)
				}
				order := rand.New(rand.NewPCG(1, 2)).Perm(len(cs))
				b.SetBytes(int64(w.size * w.count))
				var sys time.Duration
				n := 0
				for b.Loop() {
					s0 := sysTime()
					for _, i := range order {
						if _, err := st.get(cs[i]); err != nil {
							b.Fatal(err)
						}
					}
					sys += sysTime() - s0
					n++
				}
				b.ReportMetric(float64(sys.Microseconds())/float64(n*w.count), "sys-us/block")
			})
		}
	}
}
