package main

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/mirrornet/mirrornet/internal/release"
)

// runKeygen makes a publisher (maintainer) or builder key file.
func runKeygen(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "keygen", "FILE\n\nMake an Ed25519 publisher key in FILE (mode 0600, never overwritten) and print its public key,\nthe form maintainer sets and build attestations name it by.")
	pos, err := parseFlags(fs, env, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("keygen: want exactly one FILE, got %d arguments", len(pos))
	}
	pub, err := release.GenerateKeyFile(pos[0], rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, pub)
	return nil
}
