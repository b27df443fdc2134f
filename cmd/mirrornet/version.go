package main

import (
	"context"
	"fmt"

	"github.com/mirrornet/mirrornet/node"
)

func runVersion(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlagSet(env, "version", "")
	if _, err := parseFlags(fs, env, args); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "mirrornet", node.Version)
	return nil
}
