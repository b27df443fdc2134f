package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/datadir"
	"github.com/mirrornet/mirrornet/internal/debugprof"
	"github.com/mirrornet/mirrornet/internal/replicate"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/protocol"
)

// The admin channel is HTTP over a Unix socket in the data directory (mode
// 0600): only the node's own user can change it. It is never a TCP port.
//
//	POST /admin/v1/import    body: frames (cid, block)*, empty frame, root cid → ImportResult
//	POST /admin/v1/follow    {"cid": "..."}
//	POST /admin/v1/unfollow  {"cid": "..."}
//	GET  /admin/v1/ls        → []BundleStatus
//	GET  /debug/pprof/...    Go runtime profiles (package debugprof)
const maxBlockSize = 2 << 20

// ImportResult is what publish prints with --json.
type ImportResult struct {
	CID    string `json:"cid"`
	Size   int64  `json:"size"`
	Blocks int    `json:"blocks"`
}

// StateRefused is the ls state of a followed bundle this mirror refuses to
// fetch (larger than --max-storage, or no room beside the other bundles);
// Error says why. The other states are the store's: "held", "fetching".
const StateRefused = "refused"

// BundleStatus is one row of `mirrornet ls --json`.
type BundleStatus struct {
	CID string `json:"cid"`
	// State is "held", "fetching" or "refused".
	State  string `json:"state"`
	Bytes  int64  `json:"bytes"`
	Blocks int    `json:"blocks"`
	Error  string `json:"error,omitempty"`
	// TotalBytes is the bundle's size in block bytes when known: what a
	// held bundle holds, or what a fetching bundle's root block declares
	// (its size plus its links' Tsize); absent until the root is here.
	TotalBytes int64 `json:"total_bytes,omitempty"`
}

func (n *Node) startAdmin() error {
	// The data directory lock (taken in New) proves no other node serves
	// this socket: a leftover from a crash is replaced. The socket is
	// owner-only from its creation (umask 0077).
	path := filepath.Join(n.cfg.DataDir, adminSocket)
	listen := datadir.ListenUnix
	if n.listenAdmin != nil {
		listen = n.listenAdmin
	}
	ln, err := listen(path)
	if err != nil {
		return fmt.Errorf("node: admin socket: %w", err)
	}
	n.adminLn = ln
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/v1/import", n.adminImport)
	mux.HandleFunc("POST /admin/v1/follow", n.adminFollow(true))
	mux.HandleFunc("POST /admin/v1/unfollow", n.adminFollow(false))
	mux.HandleFunc("GET /admin/v1/ls", n.adminList)
	mux.HandleFunc("POST /admin/v1/gc", n.adminGC)
	debugprof.Register(mux) // profiles: admin socket only, never the public port
	for _, f := range n.features {
		f.adminRoutes(mux)
	}
	n.adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

func adminError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// adminImport stores a bundle streamed by `mirrornet publish`. Every block
// is verified against its CID; the bundle is listed as held only after the
// whole DAG is present and verified, so an interrupted publish leaves no
// bundle (its stray blocks are garbage-collected before the error is
// answered).
func (n *Node) adminImport(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.importing++
	n.mu.Unlock()
	completed := false
	finish := sync.OnceFunc(func() {
		n.mu.Lock()
		n.importing--
		n.mu.Unlock()
		// The blocks of a refused or interrupted import (Ctrl-C, a full
		// disk, a bad frame) belong to no bundle: free them now, so they
		// never count against --max-storage.
		if !completed {
			n.gc()
		}
	})
	defer finish()
	// fail answers a failed import once its blocks are freed: when publish
	// reports the error, nothing of it is left.
	fail := func(code int, err error) {
		finish()
		adminError(w, code, err)
	}
	br := bufio.NewReaderSize(r.Body, 1<<20)
	var root cid.Cid
	for {
		cf, err := protocol.ReadFrame(br, 256)
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("import interrupted: %w", err))
			return
		}
		if len(cf) == 0 {
			rf, err := protocol.ReadFrame(br, 256)
			if err != nil {
				fail(http.StatusBadRequest, fmt.Errorf("import interrupted before the root: %w", err))
				return
			}
			if root, err = cid.Cast(rf); err != nil {
				fail(http.StatusBadRequest, fmt.Errorf("bad root CID: %w", err))
				return
			}
			break
		}
		c, err := cid.Cast(cf)
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("bad block CID: %w", err))
			return
		}
		data, err := protocol.ReadFrame(br, maxBlockSize)
		if err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("import interrupted: %w", err))
			return
		}
		if err := n.store.Put(c, data); err != nil {
			fail(http.StatusInsufficientStorage, err)
			return
		}
	}
	if err := n.store.Follow(root); err != nil {
		fail(http.StatusInternalServerError, err)
		return
	}
	completed = true // followed: its blocks are kept from here on
	info, err := n.store.MarkHeld(root)
	if err != nil {
		fail(http.StatusBadRequest, fmt.Errorf("bundle %s is incomplete: %w", root, err))
		return
	}
	n.log.Info("published", "cid", root, "bytes", info.Bytes, "blocks", info.Blocks)
	// Mirrors that followed this CID before it existed have asked for its
	// root already: serve them now rather than at their next re-send.
	if data, err := n.store.Get(root); err == nil {
		if blk, err := blocks.NewBlockWithCid(data, root); err == nil {
			if err := n.repl.Announce(r.Context(), blk); err != nil {
				n.log.Debug("announce to bitswap", "cid", root, "err", err)
			}
		}
	}
	n.announceHeld(root)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ImportResult{CID: root.String(), Size: info.Bytes, Blocks: info.Blocks})
}

func (n *Node) adminFollow(follow bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CID string `json:"cid"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
			return
		}
		c, err := cid.Decode(req.CID)
		if err != nil {
			adminError(w, http.StatusBadRequest, fmt.Errorf("%q is not a CID: %w", req.CID, err))
			return
		}
		if follow {
			err = n.Follow(c)
		} else {
			err = n.Unfollow(c)
		}
		if err != nil {
			adminError(w, http.StatusInternalServerError, err)
			return
		}
		if follow {
			// Following a refused bundle again repeats why, rather than
			// answering success for a bundle that will not be fetched.
			if err := n.refusedError(c); err != nil {
				adminError(w, http.StatusInsufficientStorage, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// Bundles lists what this mirror keeps, with fetch progress.
func (n *Node) Bundles() []BundleStatus {
	out := []BundleStatus{}
	for _, b := range n.store.Bundles() {
		s := BundleStatus{CID: b.Root.String(), State: b.State, Bytes: b.Bytes, Blocks: b.Blocks}
		if f, ok := n.follow.State(b.Root); ok && b.State != "held" {
			s.Bytes, s.Blocks, s.Error = f.Progress.Bytes, f.Progress.Blocks, f.Err
			if f.Refused != "" {
				s.State = StateRefused
			}
		}
		if s.State == "held" {
			s.TotalBytes = s.Bytes
		} else {
			s.TotalBytes = declaredSize(n.store, b.Root)
		}
		out = append(out, s)
	}
	return out
}

func (n *Node) adminList(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(n.Bundles())
}

// ErrNoNode reports that no node runs with the given data directory.
var ErrNoNode = errors.New("no running node")

// ErrAdminDenied reports that this user may not use the node's admin socket
// (it is the node's user's alone, mode 0600).
var ErrAdminDenied = errors.New("node: permission denied on the admin socket")

// deniedError explains an EACCES on the admin socket at path.
func deniedError(path string) error {
	return fmt.Errorf("%w %s: run this command as the user the node runs as", ErrAdminDenied, path)
}

// AdminClient talks to a local node through its admin socket.
type AdminClient struct {
	hc   *http.Client
	path string
}

// DialAdmin finds the node running with dataDir.
func DialAdmin(dataDir string) (*AdminClient, error) {
	path := filepath.Join(dataDir, adminSocket)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w with data directory %s (no %s): start one with 'mirrornet node --data %s'", ErrNoNode, dataDir, path, dataDir)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, deniedError(path)
		}
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &AdminClient{hc: &http.Client{Transport: tr}, path: path}, nil
}

func (c *AdminClient) do(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscallECONNREFUSED()) || strings.Contains(err.Error(), "connection refused") {
			return fmt.Errorf("%w: %s refuses connections (stale socket from a stopped node?)", ErrNoNode, c.path)
		}
		if errors.Is(err, fs.ErrPermission) {
			return deniedError(c.path)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("node answered %s", resp.Status)
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Import imports path (a directory or file) into the node: the CLI computes
// the DAG and streams verified blocks; the node checks each block again and
// marks the bundle held only once it is complete.
func (c *AdminClient) Import(ctx context.Context, path string, progress func(int64)) (ImportResult, error) {
	var res ImportResult
	if _, err := os.Lstat(path); err != nil {
		return res, fmt.Errorf("publish: %w", err)
	}
	pr, pw := io.Pipe()
	importErr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		r, err := bundle.Import(ctx, path, func(b blocks.Block) error {
			if err := protocol.WriteFrame(bw, b.Cid().Bytes()); err != nil {
				return err
			}
			return protocol.WriteFrame(bw, b.RawData())
		}, progress)
		if err == nil {
			err = protocol.WriteFrame(bw, nil)
		}
		if err == nil {
			err = protocol.WriteFrame(bw, r.Root.Bytes())
		}
		if err == nil {
			err = bw.Flush()
		}
		importErr <- err
		// On a local error (a file it may not read), end the stream
		// without its end frame rather than abort the request: the node
		// then sees an interrupted import, frees its blocks and answers,
		// and publish reports the error only once that is done.
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://admin/admin/v1/import", pr)
	if err != nil {
		return res, err
	}
	err = c.do(req, &res)
	pr.CloseWithError(errors.New("request finished"))
	// The reading side's own error (a permission error, say) says more than
	// the request's; but when the request failed first (a stale socket, a
	// node that stopped), the reader only saw its pipe closed.
	if ierr := <-importErr; ierr != nil && !strings.Contains(ierr.Error(), "request finished") &&
		!(err != nil && errors.Is(ierr, io.ErrClosedPipe)) {
		return res, ierr
	}
	return res, err
}

// Follow asks the node to keep a bundle (a CID) or an app's releases (an
// app ID).
func (c *AdminClient) Follow(ctx context.Context, ref string) error {
	if protocol.IsAppID(ref) {
		return c.Post(ctx, "/admin/v1/follow-app", map[string]string{"app": ref}, nil)
	}
	return c.Post(ctx, "/admin/v1/follow", map[string]string{"cid": ref}, nil)
}

// Unfollow asks the node to stop keeping a bundle or an app.
func (c *AdminClient) Unfollow(ctx context.Context, ref string) error {
	if protocol.IsAppID(ref) {
		return c.Post(ctx, "/admin/v1/unfollow-app", map[string]string{"app": ref}, nil)
	}
	return c.Post(ctx, "/admin/v1/unfollow", map[string]string{"cid": ref}, nil)
}

// Post sends a JSON request to an admin route and decodes the JSON answer
// into out (unless out is nil). An error answer's message is the error.
func (c *AdminClient) Post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://admin"+path, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}

// List returns what the node keeps.
func (c *AdminClient) List(ctx context.Context) ([]BundleStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin/admin/v1/ls", nil)
	if err != nil {
		return nil, err
	}
	var out []BundleStatus
	err = c.do(req, &out)
	return out, err
}

func syscallECONNREFUSED() error { return syscall.ECONNREFUSED }

// declaredSize is what root's block declares of the bundle's size: its own
// bytes plus its links' Tsize; 0 when the block is not here yet.
func declaredSize(st *store.Store, root cid.Cid) int64 { return replicate.DeclaredSize(st, root) }

// GCResult is the answer of POST /admin/v1/gc and `mirrornet gc --json`.
type GCResult struct {
	FreedBytes int64 `json:"freed_bytes"`
}

// ErrBusy reports work refused because an import is streaming.
var ErrBusy = errors.New("node: an import is running")

func (n *Node) adminGC(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	busy := n.importing > 0
	n.mu.Unlock()
	if busy {
		adminError(w, http.StatusConflict, fmt.Errorf("%w: run gc again when it has ended", ErrBusy))
		return
	}
	freed, err := n.store.GC()
	if err != nil {
		adminError(w, http.StatusInternalServerError, err)
		return
	}
	if freed > 0 {
		n.storageFreed()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(GCResult{FreedBytes: freed})
}
