// Command mirrornet runs a mirror of decentralised apps, publishes and
// resolves app bundles, and starts local testnets. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGHUP (the terminal closed) stops as gracefully as Ctrl-C: a mirror
	// signs its leaving statement, a testnet stops its mirrors and removes
	// its temporary directory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(os.Stderr, "mirrornet:", err)
		os.Exit(exitCode(err))
	}
}

// command is one subcommand: it parses its own flags from args.
type command struct {
	name, summary string
	run           func(ctx context.Context, env *cmdEnv, args []string) error
}

// commands is the subcommand table, in the order `mirrornet help` lists it.
var commands = []command{
	{"node", "run a mirror", runNode},
	{"status", "show the mirrors this node knows and their state", runStatus},
	{"publish", "import a directory or file into the local node and print its CID", runPublish},
	{"follow", "keep a bundle on the local node (fetched from other mirrors)", runFollow},
	{"unfollow", "stop keeping a bundle", runUnfollow},
	{"ls", "list the bundles the local node keeps", runLs},
	{"gc", "free the blocks no followed bundle needs (refused or interrupted publishes, unfollowed bundles)", runGc},
	{"release", "publish a bundle as a signed release of an app (see docs/RELEASES.md)", runRelease},
	{"keygen", "make a publisher or builder key file", runKeygen},
	{"verify", "rebuild a bundle from source and check its CID", runVerify},
	{"fund", "sign a fund that pays an app's mirrors (see docs/PAYOUTS.md)", runFund},
	{"ledger", "compute, verify or approve an epoch's payout table", runLedger},
	{"evidence", "export a fund epoch's evidence as a CAR", runEvidence},
	{"get", "download an app by CID or app ID from mirrors, verified (light client)", runGet},
	{"testnet", "run a local mirror network; --demo: publish, take the origin down, resolve from the survivors", runTestnet},
	{"service", "install a systemd unit that runs a mirror ('service install --follow APP-ID')", runService},
	{"debug", "diagnose a running node: 'debug pprof' writes a profile for go tool pprof", runDebug},
	{"version", "print the version", runVersion},
}

// cmdEnv is what every subcommand gets from the process.
type cmdEnv struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &cmdEnv{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return usageErrorf("no command given")
		}
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			stop, err := startProfiles(getenv)
			if err != nil {
				return err
			}
			defer stop()
			return c.run(ctx, env, args[1:])
		}
	}
	return usageErrorf("unknown command %q (run 'mirrornet help')", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mirrornet COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'mirrornet COMMAND -h' for a command's flags. Every flag FOO-BAR can also be set as MIRRORNET_FOO_BAR.")
}

// usageError marks errors in how the command was called: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}

// exitCode is 2 for usage errors, 1 for everything else.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
