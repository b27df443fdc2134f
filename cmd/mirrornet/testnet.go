package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
	"github.com/mirrornet/mirrornet/internal/testnet"
)

const testnetSynopsis = "[--nodes N] [--dir DIR] [--demo] [--json] [--http-port PORT] [--timeout DURATION]"

// testnetConfig turns `mirrornet testnet` flags and MIRRORNET_* variables
// into a validated testnet.Config, starting nothing.
func testnetConfig(env *cmdEnv, args []string) (cfg testnet.Config, demo, asJSON bool, err error) {
	def := testnet.DefaultConfig()
	fs := newFlagSet(env, "testnet", testnetSynopsis)
	nodes := fs.Int("nodes", def.Nodes, "number of mirrors")
	dir := fs.String("dir", "", "directory for the mirrors' data, logs and testnet.json (kept; refused if it holds an earlier testnet); default a temporary directory removed on exit")
	demoFlag := fs.Bool("demo", false, "run the disaster-recovery story unattended: publish, replicate, stop the origin, resolve from the survivors; exit 0 only if every step succeeded")
	jsonFlag := fs.Bool("json", false, "with --demo: print the step report as JSON on stdout (narration goes to stderr)")
	httpPort := fs.Int("http-port", 0, "serve mirror I's gateway on 127.0.0.1:PORT+I (0: free ports)")
	timeout := fs.Duration("timeout", def.Timeout, "bound on each wait (mirrors up, alive, replicas held, app resolved)")
	profile := fs.String("profile", def.Profile, "node timer profile: local, lan or wan")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return cfg, false, false, err
	}
	if len(pos) > 0 {
		return cfg, false, false, usageErrorf("testnet: unexpected argument %q", pos[0])
	}
	cfg = def
	cfg.Nodes, cfg.Dir, cfg.HTTPPort, cfg.Timeout, cfg.Profile = *nodes, *dir, *httpPort, *timeout, *profile
	if err := cfg.Validate(); err != nil {
		return cfg, false, false, usageErrorf("%v", err)
	}
	if *demoFlag && cfg.Nodes < 2 {
		return cfg, false, false, usageErrorf("testnet: --nodes %d: the demo needs an origin and at least one survivor (2 or more)", cfg.Nodes)
	}
	if *jsonFlag && !*demoFlag {
		return cfg, false, false, usageErrorf("testnet: --json needs --demo")
	}
	return cfg, *demoFlag, *jsonFlag, nil
}

func runTestnet(ctx context.Context, env *cmdEnv, args []string) error {
	cfg, demo, asJSON, err := testnetConfig(env, args)
	if err != nil {
		return err
	}
	cfg.Out = env.stdout
	if demo {
		if asJSON {
			cfg.Out = env.stderr
		}
		rep, err := testnet.Demo(ctx, cfg)
		if asJSON {
			if jerr := json.NewEncoder(env.stdout).Encode(rep); jerr != nil && err == nil {
				err = jerr
			}
		}
		if err != nil {
			return fmt.Errorf("testnet demo: %w", err)
		}
		return nil
	}
	return serveTestnet(ctx, env, cfg)
}

// serveTestnet starts the network, publishes the sample dapp on mirror 0,
// has the others follow it, prints every mirror and the app's URLs, and
// runs until ctx ends.
func serveTestnet(ctx context.Context, env *cmdEnv, cfg testnet.Config) (err error) {
	tn, err := testnet.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(env.stdout, "testnet: stopping every mirror")
		if serr := tn.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	fmt.Fprintf(env.stdout, "testnet: directory %s (PIDs and URLs in %s)\n", tn.Dir(), testnet.RecordFile)
	if err := tn.WaitAlive(ctx); err != nil {
		return err
	}
	app := filepath.Join(tn.Dir(), "sample-dapp")
	if err := os.RemoveAll(app); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := sampledapp.WriteTo(app); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	c, err := tn.Publish(ctx, 0, app)
	if err != nil {
		return err
	}
	var followers []int
	for i := 1; i < cfg.Nodes; i++ {
		followers = append(followers, i)
	}
	if err := tn.Follow(ctx, c, followers...); err != nil {
		return err
	}
	if err := tn.WaitHeld(ctx, c, followers...); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\nsample dapp %s published on mirror-0, held by all %d mirrors\n\n", c, cfg.Nodes)
	tw := tabwriter.NewWriter(env.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MIRROR\tPID\tPEER\tSEES ALIVE\tSTATUS\tAPP")
	for i, m := range tn.Mirrors() {
		alive := "?"
		if n, err := tn.AliveSeenBy(ctx, i); err == nil {
			alive = fmt.Sprintf("%d/%d", n, cfg.Nodes)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s/api/v1/status\t%s\n", m.Name, m.PID, m.PeerID, alive, m.HTTP, tn.AppURL(i, c))
	}
	tw.Flush()
	fmt.Fprintf(env.stdout, "\nlogs in %s/mirror-*.log; try: mirrornet status --http %s\n", tn.Dir(), tn.Mirrors()[0].HTTP)
	fmt.Fprintln(env.stdout, "testnet: ready; Ctrl-C stops every mirror")
	select {
	case <-ctx.Done():
	case err := <-tn.Failed():
		return err
	}
	return nil
}
