package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// newFlagSet returns a FlagSet for a subcommand that reports errors instead
// of exiting.
func newFlagSet(env *cmdEnv, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	// The flag package calls Usage on every parse error; parseFlags prints
	// the usage text only when help was asked for, so that a mistake gets a
	// one-line error.
	fs.Usage = func() {}
	usages[fs] = func() {
		fmt.Fprintf(env.stderr, "usage: mirrornet %s %s\n\nflags (each also as MIRRORNET_<FLAG>):\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// usages holds each FlagSet's help printer.
var usages = map[*flag.FlagSet]func(){}

// errHelp is returned when -h was given: the usage text is printed and the
// command exits 0.
var errHelp = errors.New("help requested")

// parseFlags parses args, then fills every flag not given on the command
// line from its MIRRORNET_* environment variable (FOO-BAR → MIRRORNET_FOO_BAR;
// repeatable flags take a comma-separated list). Positional arguments may
// come before or after flags. Errors are usage errors (exit code 2).
func parseFlags(fs *flag.FlagSet, env *cmdEnv, args []string) ([]string, error) {
	fs.SetOutput(discardUnlessHelp{env})
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(env.stderr)
				if u := usages[fs]; u != nil {
					u()
				}
				return nil, errHelp
			}
			return nil, usageErrorf("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		v := env.getenv(name)
		if v == "" {
			return
		}
		if _, ok := f.Value.(*listFlag); ok {
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					if e := f.Value.Set(item); e != nil {
						err = usageErrorf("%s: invalid %s %q: %v", fs.Name(), name, item, e)
						return
					}
				}
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = usageErrorf("%s: invalid %s %q: %v", fs.Name(), name, v, e)
		}
	})
	return positional, err
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "MIRRORNET_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

type discardUnlessHelp struct{ env *cmdEnv }

func (d discardUnlessHelp) Write(p []byte) (int, error) { return len(p), nil }

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// defaultDataDir is ~/.mirrornet.
func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".mirrornet"
	}
	return filepath.Join(home, ".mirrornet")
}

// dataFlag adds the --data flag every command that talks to a local node
// shares.
func dataFlag(fs *flag.FlagSet) *string {
	return fs.String("data", defaultDataDir(), "data directory of the node")
}
