package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

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
		return commandError("keygen", err)
	}
	fmt.Fprintln(env.stdout, pub)
	return nil
}

// commandError words an error of an internal package as the command's
// own: "keygen: key file already exists", not "release: ...", since the
// user ran keygen. The original error stays wrapped for errors.Is.
func commandError(cmd string, err error) error {
	if err == nil {
		return nil
	}
	return &cmdError{cmd: cmd, err: err}
}

type cmdError struct {
	cmd string
	err error
}

func (e *cmdError) Error() string {
	msg := e.err.Error()
	for _, p := range []string{"release: ", "attest: ", "protocol: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return e.cmd + ": " + msg
}

func (e *cmdError) Unwrap() error { return e.err }
