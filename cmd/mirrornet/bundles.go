package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"text/tabwriter"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/progress"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

func runPublish(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "publish", "PATH [--data DIR] [--json] [--offline]")
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, `print {"cid": ..., "size": ..., "blocks": ...}`)
	offline := fs.Bool("offline", false, "only compute the CID; no node needed")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("publish: want exactly one PATH, got %d", len(pos))
	}
	path := pos[0]
	bar := progress.New(env.stderr, isTerminal(env.stderr) && !*asJSON, "publishing", inputSize(path))
	progress := bar.Set
	var res node.ImportResult
	if *offline {
		r, err := bundle.Import(ctx, path, func(blocks.Block) error { return nil }, progress)
		if err != nil {
			bar.Finish()
			return err
		}
		res = node.ImportResult{CID: r.Root.String(), Size: r.Size, Blocks: r.Blocks}
	} else {
		ac, err := node.DialAdmin(*data)
		if err != nil {
			return fmt.Errorf("publish: %w (or use --offline to only compute the CID)", err)
		}
		res, err = ac.Import(ctx, path, progress)
		if err != nil {
			bar.Finish()
			return fmt.Errorf("publish: %w", err)
		}
	}
	bar.Finish()
	if *asJSON {
		return json.NewEncoder(env.stdout).Encode(res)
	}
	fmt.Fprintln(env.stdout, res.CID)
	return nil
}

func runFollow(ctx context.Context, env *cmdEnv, args []string) error {
	return followCmd(ctx, env, args, "follow", true)
}

func runUnfollow(ctx context.Context, env *cmdEnv, args []string) error {
	return followCmd(ctx, env, args, "unfollow", false)
}

func followCmd(ctx context.Context, env *cmdEnv, args []string, name string, follow bool) error {
	synopsis := "CID|APP-ID [--data DIR]"
	if follow {
		synopsis = "CID|APP-ID [--data DIR] [--wait] [--json]"
	}
	fs := newFlagSet(env, name, synopsis)
	data := dataFlag(fs)
	var wait, asJSON *bool
	if follow {
		wait = fs.Bool("wait", false, "wait until the bundle is held (a progress bar on a terminal); fails at once if the node refuses it (larger than --max-storage)")
		asJSON = fs.Bool("json", false, "with --wait: print the held bundle's ls --json row, no progress bar")
	}
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("%s: want exactly one CID or APP-ID, got %d", name, len(pos))
	}
	if _, err := cid.Decode(pos[0]); err != nil && !protocol.IsAppID(pos[0]) {
		return usageErrorf("%s: %q is neither a CID nor an app ID: %v", name, pos[0], err)
	}
	if wait != nil && *wait {
		if _, err := cid.Decode(pos[0]); err != nil {
			return usageErrorf("follow: --wait takes a bundle CID (an app's bundle changes with each release; see 'mirrornet status --app')")
		}
	}
	ac, err := node.DialAdmin(*data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if follow {
		err = ac.Follow(ctx, pos[0])
	} else {
		err = ac.Unfollow(ctx, pos[0])
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if wait != nil && *wait {
		return waitHeld(ctx, env, ac, pos[0], *asJSON)
	}
	if follow {
		fmt.Fprintf(env.stdout, "following %s (see progress with 'mirrornet ls', or follow --wait)\n", pos[0])
	} else {
		fmt.Fprintf(env.stdout, "unfollowed %s\n", pos[0])
	}
	return nil
}

func runLs(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "ls", "[--data DIR] [--json]")
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, `print [{"cid", "state": "held|fetching|refused", "bytes", "blocks", "error"?, "total_bytes"?}]`)
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("ls: unexpected argument %q", pos[0])
	}
	ac, err := node.DialAdmin(*data)
	if err != nil {
		return fmt.Errorf("ls: %w", err)
	}
	list, err := ac.List(ctx)
	if err != nil {
		return fmt.Errorf("ls: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(env.stdout).Encode(list)
	}
	tw := tabwriter.NewWriter(env.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CID\tSTATE\tSIZE\tBLOCKS\tNOTE")
	var held, total int64
	nHeld := 0
	for _, b := range list {
		size := humanBytes(b.Bytes)
		if b.State != "held" && b.TotalBytes > 0 {
			size = fmt.Sprintf("%s of %s (%d%%)", humanBytes(b.Bytes), humanBytes(b.TotalBytes), percent(b.Bytes, b.TotalBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.CID, b.State, size, b.Blocks, b.Error)
		total += b.Bytes
		if b.State == "held" {
			held += b.Bytes
			nHeld++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.stdout, "total: %d bundles, %s (%d held, %s)\n", len(list), humanBytes(total), nHeld, humanBytes(held))
	return err
}

// percent is done/total in whole percent, at most 100.
func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(100, done*100/total)
}

// inputSize is the bytes of the regular files under path: publish's total.
func inputSize(path string) int64 {
	var total int64
	_ = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// waitHeld polls the node until bundle c is held, drawing its progress.
func waitHeld(ctx context.Context, env *cmdEnv, ac *node.AdminClient, c string, asJSON bool) error {
	bar := progress.New(env.stderr, isTerminal(env.stderr) && !asJSON, "fetching", 0)
	defer bar.Finish()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastErr := ""
	for {
		list, err := ac.List(ctx)
		if err != nil {
			return fmt.Errorf("follow: %w", err)
		}
		for _, b := range list {
			if b.CID != c {
				continue
			}
			bar.SetTotal(b.TotalBytes)
			bar.Set(b.Bytes)
			if b.State == node.StateRefused {
				// The node will not retry on its own: waiting is pointless.
				return fmt.Errorf("follow: %s", b.Error)
			}
			if b.State == "held" {
				bar.Finish()
				if asJSON {
					return json.NewEncoder(env.stdout).Encode(b)
				}
				fmt.Fprintf(env.stdout, "held %s (%s, %d blocks)\n", c, humanBytes(b.Bytes), b.Blocks)
				return nil
			}
			if b.Error != "" && b.Error != lastErr && !bar.Enabled() && !asJSON {
				fmt.Fprintf(env.stderr, "follow: %s: %s (still trying)\n", c, b.Error)
			}
			lastErr = b.Error
		}
		select {
		case <-ctx.Done():
			if lastErr != "" {
				return fmt.Errorf("follow: stopped waiting for %s: %s", c, lastErr)
			}
			return fmt.Errorf("follow: stopped waiting for %s: %w", c, ctx.Err())
		case <-tick.C:
		}
	}
}

// runGc frees blocks no followed bundle needs (left by refused or
// interrupted publishes, or by unfollowed bundles).
func runGc(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "gc", "[--data DIR] [--json]")
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, `print {"freed_bytes": N}`)
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("gc: unexpected argument %q", pos[0])
	}
	ac, err := node.DialAdmin(*data)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	var res node.GCResult
	if err := ac.Post(ctx, "/admin/v1/gc", struct{}{}, &res); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(env.stdout).Encode(res)
	}
	_, err = fmt.Fprintf(env.stdout, "freed %s\n", humanBytes(res.FreedBytes))
	return err
}
