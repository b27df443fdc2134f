package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mirrornet/mirrornet/internal/gctune"
	"github.com/mirrornet/mirrornet/node"
	"github.com/mirrornet/mirrornet/protocol"
)

const nodeSynopsis = "[--data DIR] [--listen MULTIADDR]... [--http ADDR] [--public-url URL] [--bootstrap MULTIADDR]... [--follow CID|APP-ID]... [--profile local|lan|wan] [--max-storage SIZE] [more flags below]"

// nodeConfig turns `mirrornet node` flags and MIRRORNET_* environment
// variables into a validated node.Config and a logger, starting nothing. The
// compose-file test calls it to prove every service's command is accepted.
func nodeConfig(env *cmdEnv, args []string) (node.Config, *slog.Logger, error) {
	def := node.DefaultConfig()
	fs := newFlagSet(env, "node", nodeSynopsis)
	data := dataFlag(fs)
	var listen, bootstrap, follow listFlag
	fs.Var(&listen, "listen", "libp2p listen multiaddr (repeatable; default TCP and QUIC on port 4001)")
	httpAddr := fs.String("http", def.HTTPAddr, "public read-only HTTP address (gateway, status, metrics); empty to disable")
	fs.Var(&bootstrap, "bootstrap", "multiaddr of a mirror to join through, ending in /p2p/PEER-ID (repeatable)")
	fs.Var(&follow, "follow", "bundle CID or APP-ID to keep (repeatable)")
	mdns := fs.Bool("mdns", def.MDNS, "find mirrors on the LAN with mDNS")
	dht := fs.Bool("dht", def.DHT, "run the mirrornet Kademlia DHT")
	profile := fs.String("profile", def.Profile, "timer profile: local (tests, testnets), lan, wan")
	maxStorage := fs.String("max-storage", "0", "storage limit for bundles, e.g. 10GiB, 500MB (0 = unlimited)")
	region := fs.String("region", "", "self-declared region announced to others (a name for this mirror's failure domain, never a domain of its own)")
	publicURL := fs.String("public-url", "", "URL browsers, clients and probes use to reach this mirror, e.g. https://mirror.example.org (default: a concrete --http address, or the address peers observe)")
	announceHTTP := fs.String("announce-http", "", "older name of --public-url")
	var trustedProxy, apps listFlag
	httpsAddr := fs.String("https", "", "HTTPS listen address (e.g. :443), with ACME certificates for the --public-url host and every --app host; empty: no HTTPS")
	acmeCA := fs.String("acme-ca", "", "ACME directory URL (default Let's Encrypt)")
	acmeEmail := fs.String("acme-email", "", "contact address for the ACME account")
	acmeCARoot := fs.String("acme-ca-root", "", "PEM file of the roots trusted for a private ACME server's TLS (Pebble, step-ca)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate served for the names it covers, e.g. a wildcard *.ipfs.PUBLIC-HOST")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	acmeDNS := fs.String("acme-dns", "", "DNS provider for the *.ipfs.PUBLIC-HOST wildcard certificate over ACME DNS-01: rfc2136 (TSIG-signed dynamic updates); empty: none")
	acmeDNSConfig := fs.String("acme-dns-config", "", "JSON file of the --acme-dns provider's settings (server, tsig_key, tsig_secret; mode 0600)")
	fs.Var(&apps, "app", "HOST=APP-ID: follow the app and serve its current verified release at HOST (repeatable)")
	fs.Var(&trustedProxy, "trusted-proxy", "CIDR or address of a reverse proxy whose X-Forwarded-Host is believed (repeatable)")
	asnDB := fs.String("asn-db", "", "IP-to-ASN database (iptoasn TSV) for placing mirrors in failure domains")
	labels := fs.String("labels", "", `file of "PEER-ID LABEL" lines splitting observed failure domains by hand`)
	probeK := fs.Int("probe-k", 0, "independent observers (distinct failure domains) needed for verified; 0 = the profile's")
	auto := fs.Bool("auto", false, "follow under-mirrored bundles where this mirror adds a new failure domain")
	target := fs.Int("redundancy-target", def.RedundancyTarget, "effective redundancy --auto aims for")
	var payout listFlag
	fs.Var(&payout, "payout", "UNIT=ADDRESS this mirror is paid at, e.g. STX=SP2J... (repeatable; see docs/PAYOUTS.md)")
	maxMirrors := fs.Int("max-mirrors", def.MaxMirrors, "most mirrors kept in the health view; strangers are evicted first")
	maxStatementBytes := fs.String("max-statement-bytes", "16MiB", "memory budget for the statements the health view keeps")
	connsLow := fs.Int("conns-low", def.ConnsLow, "connection manager low water mark")
	connsHigh := fs.Int("conns-high", def.ConnsHigh, "connection manager high water mark: above it, connections are trimmed to --conns-low")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return node.Config{}, nil, err
	}
	if len(pos) > 0 {
		return node.Config{}, nil, usageErrorf("node: unexpected argument %q", pos[0])
	}
	logger, err := newLogger(env, *logLevel, *logFormat)
	if err != nil {
		return node.Config{}, nil, err
	}
	limit, err := parseBytes(*maxStorage)
	if err != nil {
		return node.Config{}, nil, usageErrorf("node: --max-storage %q: %v", *maxStorage, err)
	}
	stmtBytes, err := parseBytes(*maxStatementBytes)
	if err != nil {
		return node.Config{}, nil, usageErrorf("node: --max-statement-bytes %q: %v", *maxStatementBytes, err)
	}
	cfg := def
	cfg.MaxMirrors, cfg.MaxStatementBytes, cfg.ConnsLow, cfg.ConnsHigh = *maxMirrors, stmtBytes, *connsLow, *connsHigh
	cfg.DataDir = *data
	if len(listen) > 0 {
		cfg.Listen = listen
	}
	cfg.HTTPAddr = *httpAddr
	cfg.Bootstrap = bootstrap
	cfg.Follow = follow
	cfg.MDNS = *mdns
	cfg.DHT = *dht
	cfg.Profile = *profile
	cfg.MaxStorage = limit
	cfg.Region = *region
	cfg.AnnounceHTTP = *announceHTTP
	cfg.PublicURL = *publicURL
	cfg.TrustedProxies = trustedProxy
	cfg.Apps = apps
	cfg.HTTPSAddr, cfg.ACMECA, cfg.ACMEEmail, cfg.ACMECARoot = *httpsAddr, *acmeCA, *acmeEmail, *acmeCARoot
	cfg.TLSCert, cfg.TLSKey = *tlsCert, *tlsKey
	cfg.ACMEDNS, cfg.ACMEDNSConfig = *acmeDNS, *acmeDNSConfig
	cfg.ASNDB, cfg.Labels, cfg.ProbeK, cfg.Auto, cfg.RedundancyTarget = *asnDB, *labels, *probeK, *auto, *target
	for _, p := range payout {
		unit, addr, err := protocol.ParsePayoutFlag(p)
		if err != nil {
			return node.Config{}, nil, usageErrorf("node: --payout: %v", err)
		}
		if cfg.Payout == nil {
			cfg.Payout = map[string]string{}
		}
		if _, dup := cfg.Payout[unit]; dup {
			return node.Config{}, nil, usageErrorf("node: --payout: unit %s given twice", unit)
		}
		cfg.Payout[unit] = addr
	}
	if err := cfg.Validate(); err != nil {
		if errors.Is(err, node.ErrConfig) {
			return node.Config{}, nil, usageErrorf("%v", err)
		}
		return node.Config{}, nil, err
	}

	return cfg, logger, nil
}

func runNode(ctx context.Context, env *cmdEnv, args []string) error {
	cfg, logger, err := nodeConfig(env, args)
	if err != nil {
		return err
	}
	// A mirror's heap is mostly statements and evidence held to budgets:
	// collect at GOGC=50 unless the operator set GOGC (see gctune).
	gctune.Apply(os.LookupEnv)
	n, err := node.New(cfg, node.WithLogger(logger))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "peer ID: %s\n", n.ID())
	for _, a := range n.Addrs() {
		fmt.Fprintf(env.stdout, "listening: %s\n", a)
	}
	if u := n.HTTPURL(); u != "" {
		fmt.Fprintf(env.stdout, "http: %s\n", u)
	}
	if a := n.HTTPSAddr(); a != "" {
		fmt.Fprintf(env.stdout, "https: %s\n", a)
	}
	fmt.Fprintf(env.stdout, "node info: %s/node.json\n", cfg.DataDir)

	// First signal: leave gracefully. A second one exits at once.
	<-ctx.Done()
	fmt.Fprintln(env.stderr, "mirrornet: leaving (signal again to exit at once)")
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	done := make(chan error, 1)
	go func() {
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.Leave(lctx)
	}()
	select {
	case err := <-done:
		return err
	case <-again:
		fmt.Fprintln(env.stderr, "mirrornet: exiting at once")
		os.Exit(1)
		return nil
	}
}

func newLogger(env *cmdEnv, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	default:
		return nil, usageErrorf("--log-format %q: want text or json", format)
	}
}

// parseBytes parses sizes like 0, 1048576, 500MB, 10GiB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a size (want e.g. 500MB or 10GiB)")
	}
	return int64(v * float64(mult)), nil
}
