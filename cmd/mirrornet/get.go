package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/client"
	"github.com/mirrornet/mirrornet/discovery"
	"github.com/mirrornet/mirrornet/internal/progress"
)

// runGet implements `mirrornet get CID|APP-ID[@VERSION] [-o DIR | --car FILE
// | --serve ADDR] [--bootstrap ADDR...] [--json]`. Without --bootstrap it
// looks for mirrors on the LAN by mDNS.
func runGet(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "get", "CID|APP-ID[@VERSION] [-o DIR | --car FILE | --serve ADDR] [--bootstrap ADDR...] [--json]")
	out := fs.String("o", "", "write the app to this directory (default: ./CID)")
	carPath := fs.String("car", "", "write the bundle as a CARv1 file instead")
	serve := fs.String("serve", "", "serve the verified app on this address (host:port) instead")
	var boots listFlag
	fs.Var(&boots, "bootstrap", "mirror to start from: http://host:port or /ip4/.../tcp/.../p2p/ID (repeatable)")
	asJSON := fs.Bool("json", false, "print a JSON summary on stdout")
	receipts := fs.Bool("receipts", true, "sign a delivery receipt per mirror and post them to the mirrors, so funds can pay for traffic (docs/PAYOUTS.md)")
	noSync := fs.Bool("no-sync", false, "rename -o or --car output into place without waiting for it to reach the disk (as curl or tar): faster for thousands of small files, but a crash of the machine soon after can leave files empty or short under their final names")
	clientKey := fs.String("client-key", filepath.Join(defaultDataDir(), "client.key"), "the key receipts are signed with, made on first use and kept between runs")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("get: want exactly one CID, got %d arguments", len(pos))
	}
	root, err := cid.Decode(pos[0])
	if err != nil && isAppRef(pos[0]) { // APP-ID[@N]: resolve it (release.go)
		if root, err = resolveAppForGet(ctx, env, pos[0], boots); err != nil {
			return err
		}
	}
	if err != nil {
		return usageErrorf("get: malformed CID %q: %v", pos[0], err)
	}
	n := 0
	for _, s := range []string{*out, *carPath, *serve} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return usageErrorf("get: give at most one of -o, --car, --serve")
	}
	if n == 0 {
		*out = root.String()
	}
	if len(boots) == 0 {
		// No bootstrap given: listen for mirrors announcing themselves on
		// the LAN. They are no more trusted than a bootstrap address:
		// statements are verified and bytes checked.
		found, err := discovery.BrowseMirrors(ctx, mdnsWindow)
		if err != nil || len(found) == 0 {
			return usageErrorf("get: no --bootstrap given and no mirror found on the LAN by mDNS within %s: give --bootstrap ADDR or set MIRRORNET_BOOTSTRAP", mdnsWindow)
		}
		boots = found
	}
	for _, b := range boots {
		if err := client.ParseBootstrap(b); err != nil {
			return usageErrorf("get: %v", err)
		}
	}
	// Check the output before downloading anything.
	var ln net.Listener
	switch {
	case *out != "":
		if err := checkOutput(*out); err != nil {
			return usageErrorf("get: %v", err)
		}
	case *carPath != "":
		if err := checkOutput(*carPath); err != nil {
			return usageErrorf("get: %v", err)
		}
	case *serve != "":
		if ln, err = net.Listen("tcp", *serve); err != nil {
			return usageErrorf("get: cannot serve on %s: %v", *serve, err)
		}
		defer ln.Close()
	}

	opts := client.Options{Bootstrap: boots, NoSync: *noSync}
	bar := progress.New(env.stderr, isTerminal(env.stderr) && !*asJSON, "getting", 0)
	if bar.Enabled() {
		opts.Progress = func(p client.Progress) {
			bar.SetTotal(p.Total)
			bar.Set(p.Bytes)
		}
	}
	// Verified blocks go to a spool on disk as they arrive (beside the
	// output, where a rerun finds and resumes it; for --serve a temporary
	// directory removed at exit), so memory stays flat whatever the size.
	var res *client.Result
	switch {
	case *out != "":
		res, err = client.GetDir(ctx, root, *out, opts)
	case *carPath != "":
		res, err = client.GetCAR(ctx, root, *carPath, opts)
	default:
		var tmp string
		if tmp, err = os.MkdirTemp("", "mirrornet-serve-"); err != nil {
			return fmt.Errorf("get: %w", err)
		}
		defer os.RemoveAll(tmp)
		if res, err = client.Download(ctx, root, tmp, opts); err == nil {
			defer res.Close()
		}
	}
	bar.Finish()
	if err != nil {
		if target := *out + *carPath; target != "" {
			if _, serr := os.Stat(client.PartialDir(target)); serr == nil {
				return fmt.Errorf("%w (verified blocks kept in %s: run the same command again to resume)", err, client.PartialDir(target))
			}
		}
		return err
	}
	if *asJSON {
		if err := printJSON(env.stdout, res); err != nil {
			return err
		}
	} else if *serve == "" {
		dst := *out + "/"
		if *carPath != "" {
			dst = *carPath
		}
		fmt.Fprintf(env.stdout, "%s: %s in %s from %d mirrors -> %s\n", root, humanBytes(res.Bytes),
			res.Duration.Round(time.Millisecond), len(res.PerMirror), dst)
	}
	if *receipts {
		sendReceipts(ctx, env, res, *clientKey)
	}
	if ln == nil {
		return nil
	}
	fmt.Fprintf(env.stderr, "serving %s on http://%s/ (Ctrl-C to stop)\n", root, ln.Addr())
	srv := &http.Server{Handler: res.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-errc
		return nil
	}
}

// sendReceipts signs and posts the fetch's delivery receipts; a failure is
// a warning on stderr, never a failed get.
func sendReceipts(ctx context.Context, env *cmdEnv, res *client.Result, keyPath string) {
	key, err := client.LoadClientKey(keyPath)
	if err == nil {
		_, err = client.SendReceipts(ctx, res, client.ReceiptOptions{Key: key})
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "warning: delivery receipts not sent: %v\n", err)
	}
}

// checkOutput refuses an output path that exists or whose directory cannot
// be written.
func checkOutput(p string) error {
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("output %s already exists", p)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("output %s: %v", p, err)
	}
	dir := filepath.Dir(filepath.Clean(p))
	f, err := os.CreateTemp(dir, ".mirrornet-probe-")
	if err != nil {
		return fmt.Errorf("output %s: cannot write in %s: %v", p, dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printJSON(w io.Writer, res *client.Result) error {
	dropped := res.Dropped
	if dropped == nil {
		dropped = []client.Drop{}
	}
	return json.NewEncoder(w).Encode(struct {
		CID        string           `json:"cid"`
		Bytes      int64            `json:"bytes"`
		DurationMS int64            `json:"duration_ms"`
		Mirrors    map[string]int64 `json:"mirrors"`
		Dropped    []client.Drop    `json:"dropped"`
	}{res.Root.String(), res.Bytes, res.Duration.Milliseconds(), res.PerMirror, dropped})
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// mdnsWindow is how long get listens for mirrors on the LAN when no
// bootstrap address is given.
const mdnsWindow = 3 * time.Second
