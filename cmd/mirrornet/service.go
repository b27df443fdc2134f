package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mirrornet/mirrornet/internal/atomicfile"
	"github.com/mirrornet/mirrornet/internal/backup"
)

const serviceSynopsis = "install [--follow CID|APP-ID]... [--bootstrap MULTIADDR]... [--public-url URL] [--data DIR] [--unit FILE] [--binary PATH] [--print]"

// ErrService reports a `service` command that cannot be carried out.
var ErrService = errors.New("service")

// runService writes a systemd unit that runs this binary as a mirror:
// `mirrornet service install --follow APP-ID --bootstrap ADDR`, then
// `systemctl daemon-reload && systemctl enable --now mirrornet`.
func runService(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "service", serviceSynopsis)
	var follow, bootstrap listFlag
	fs.Var(&follow, "follow", "bundle CID or APP-ID the mirror keeps (repeatable)")
	fs.Var(&bootstrap, "bootstrap", "multiaddr of a mirror to join through, ending in /p2p/PEER-ID (repeatable)")
	publicURL := fs.String("public-url", "", "URL others reach the mirror at, e.g. https://mirror.example.org (default: the address peers observe)")
	profile := fs.String("profile", "wan", "timer profile: local, lan, wan")
	region := fs.String("region", "", "self-declared region label")
	maxStorage := fs.String("max-storage", "", "storage limit for bundles, e.g. 10GiB")
	data := fs.String("data", "/var/lib/mirrornet", "data directory of the service")
	unit := fs.String("unit", "/etc/systemd/system/mirrornet.service", "unit file to write")
	binary := fs.String("binary", "", "mirrornet binary the unit runs (default: this one)")
	printOnly := fs.Bool("print", false, "print the unit instead of writing it")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "install" {
		return usageErrorf("service: want 'mirrornet service install [flags]' (got %q)", strings.Join(pos, " "))
	}
	if err := backup.CheckPublicURL(*publicURL); err != nil {
		return usageErrorf("service: --public-url: %v", err)
	}
	for _, b := range bootstrap {
		if !strings.Contains(b, "/p2p/") {
			return usageErrorf("service: --bootstrap %q must end in /p2p/PEER-ID", b)
		}
	}
	if !filepath.IsAbs(*data) {
		return usageErrorf("service: --data %q must be an absolute path", *data)
	}
	bin := *binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("%w: find this binary (give --binary): %v", ErrService, err)
		}
	}
	if !filepath.IsAbs(bin) {
		return usageErrorf("service: --binary %q must be an absolute path", bin)
	}
	cfg := backup.UnitConfig{Binary: bin, DataDir: *data}
	add := func(k, v string) {
		if v != "" {
			cfg.Env = append(cfg.Env, [2]string{k, v})
		}
	}
	add("MIRRORNET_FOLLOW", strings.Join(follow, ","))
	add("MIRRORNET_BOOTSTRAP", strings.Join(bootstrap, ","))
	add("MIRRORNET_PUBLIC_URL", *publicURL)
	add("MIRRORNET_PROFILE", *profile)
	add("MIRRORNET_REGION", *region)
	add("MIRRORNET_MAX_STORAGE", *maxStorage)
	text := backup.Unit(cfg)
	if *printOnly {
		_, err := fmt.Fprint(env.stdout, text)
		return err
	}
	if err := atomicfile.WriteFile(*unit, []byte(text), 0o644); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%w: write %s: permission denied (run it with sudo, or give --unit)", ErrService, *unit)
		}
		return fmt.Errorf("%w: write %s: %v", ErrService, *unit, err)
	}
	name := strings.TrimSuffix(filepath.Base(*unit), ".service")
	fmt.Fprintf(env.stdout, "wrote %s\nstart it now and at every boot: systemctl daemon-reload && systemctl enable --now %s\n", *unit, name)
	return nil
}
