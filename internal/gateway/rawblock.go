package gateway

import (
	"context"
	"sync"

	"github.com/ipfs/boxo/files"
	boxogw "github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/path"
)

// GetBlock serves /ipfs/{cid}?format=raw, the request a light client makes
// for every leaf of a large file, from a recycled buffer when the
// blockstore is an intoGetter: boxo reads each block into fresh memory,
// and on a mirror serving 1 MiB leaves that allocation (and the garbage
// collection it drives) cost more CPU than moving the bytes. The buffer
// goes back to the pool when boxo closes the file, after the response is
// written. Paths below a CID, and blockstores without GetInto, go to boxo
// unchanged; so does any error, which boxo then reports as it would.
func (b *carBackend) GetBlock(ctx context.Context, p path.ImmutablePath) (boxogw.ContentPathMetadata, files.File, error) {
	into, ok := b.bs.(intoGetter)
	c := p.RootCid()
	if !ok || len(p.Segments()) != 2 || !plainCID(c) {
		return b.BlocksBackend.GetBlock(ctx, p)
	}
	buf := rawBufs.Get().(*[]byte)
	data, err := into.GetInto(ctx, c, *buf)
	if err != nil {
		rawBufs.Put(buf)
		return b.BlocksBackend.GetBlock(ctx, p)
	}
	md := boxogw.ContentPathMetadata{LastSegment: p} // as boxo has it for a bare CID
	return md, &pooledFile{ReaderFile: files.NewBytesFile(data).(*files.ReaderFile), buf: buf, data: data}, nil
}

// rawBufs holds buffers for raw block responses, sized for a bundle's
// largest leaves (1 MiB); a larger block is read into memory of its own.
var rawBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// pooledFile is a block in a buffer from rawBufs, returned on Close.
type pooledFile struct {
	*files.ReaderFile
	buf  *[]byte
	data []byte
	once sync.Once
}

var _ files.File = (*pooledFile)(nil)

func (f *pooledFile) Close() error {
	// The response is written: whether data is in buf or (a block
	// larger than buf) memory of its own, buf is free again.
	f.once.Do(func() { rawBufs.Put(f.buf) })
	return nil
}
