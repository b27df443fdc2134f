package main

import (
	"context"
)

// statusBundle prints `mirrornet status --bundle CID`.
func statusBundle(ctx context.Context, env *cmdEnv, base, c string, asJSON bool) error {
	raw, err := getJSON(ctx, base, "/api/v1/bundle/"+c)
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(raw)
	return err
}
