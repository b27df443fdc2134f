package main

import (
	"context"
)

// statusApp prints `mirrornet status --app APP-ID`.
func statusApp(ctx context.Context, env *cmdEnv, base, app string, asJSON bool) error {
	raw, err := getJSON(ctx, base, "/api/v1/app/"+app)
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(raw)
	return err
}
