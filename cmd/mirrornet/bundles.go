package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
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
	progress := terminalProgress(env, "importing")
	var res node.ImportResult
	if *offline {
		r, err := bundle.Import(ctx, path, func(blocks.Block) error { return nil }, progress)
		if err != nil {
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
			return fmt.Errorf("publish: %w", err)
		}
	}
	clearProgress(env)
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
	fs := newFlagSet(env, name, "CID|APP-ID [--data DIR]")
	data := dataFlag(fs)
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
	if follow {
		fmt.Fprintf(env.stdout, "following %s (see progress with 'mirrornet ls')\n", pos[0])
	} else {
		fmt.Fprintf(env.stdout, "unfollowed %s\n", pos[0])
	}
	return nil
}

func runLs(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "ls", "[--data DIR] [--json]")
	data := dataFlag(fs)
	asJSON := fs.Bool("json", false, `print [{"cid": "...", "state": "held|fetching", "bytes": N}]`)
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
	fmt.Fprintln(tw, "CID\tSTATE\tBYTES\tBLOCKS\tNOTE")
	for _, b := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", b.CID, b.State, b.Bytes, b.Blocks, b.Error)
	}
	return tw.Flush()
}

// terminalProgress returns a progress callback that rewrites one stderr
// line when stderr is a terminal, and nil otherwise.
func terminalProgress(env *cmdEnv, what string) func(int64) {
	if !isTerminal(env.stderr) {
		return nil
	}
	return func(done int64) {
		fmt.Fprintf(env.stderr, "\r%s: %.1f MiB", what, float64(done)/(1<<20))
	}
}

func clearProgress(env *cmdEnv) {
	if isTerminal(env.stderr) {
		fmt.Fprint(env.stderr, "\r\033[K")
	}
}
