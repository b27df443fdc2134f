package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/client"
	sampledapp "github.com/mirrornet/mirrornet/examples/sample-dapp"
)

// Step names, in the order Demo runs them.
const (
	StepStart     = "start"       // spawn N mirrors until each sees all N alive
	StepPublish   = "publish"     // import the sample dapp into mirror 0
	StepReplicate = "replicate"   // mirrors 1..N-1 follow it until each holds it
	StepStop      = "stop-origin" // SIGTERM mirror 0 until it has exited
	StepResolve   = "resolve"     // light client fetches from the survivors, verified
)

// Step is one timed step of the demo.
type Step struct {
	Name   string        `json:"name"`
	Took   time.Duration `json:"took_ns"`
	OK     bool          `json:"ok"`
	Detail string        `json:"detail"`
}

// Report is what Demo did. Steps holds every step attempted, the failed
// one last.
type Report struct {
	Nodes int    `json:"nodes"`
	Dir   string `json:"dir"`
	CID   string `json:"cid,omitempty"`
	// Survivors are the HTTP URLs the light client was given.
	Survivors []string `json:"survivors,omitempty"`
	// Files are the verified files of the resolved app.
	Files []string `json:"files,omitempty"`
	Steps []Step   `json:"steps"`
	// Total runs from the first step until every mirror has stopped.
	Total time.Duration `json:"total_ns"`
}

// Step returns the named step, if it ran.
func (r Report) Step(name string) (Step, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Demo runs the disaster-recovery story: start cfg.Nodes mirrors, publish
// the sample dapp on mirror 0, have the others follow it until they hold
// it, stop mirror 0, then fetch the app with the light client from the
// survivors only and byte-compare every file with the sample dapp. It
// narrates to cfg.Out, stops every mirror before it returns, and returns
// nil only if every step succeeded.
func Demo(ctx context.Context, cfg Config) (rep Report, err error) {
	rep.Nodes = cfg.Nodes
	if cfg.Nodes < 2 {
		return rep, fmt.Errorf("%w: nodes: %d, the demo needs an origin and at least one survivor (2 or more)", ErrConfig, cfg.Nodes)
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	begin := time.Now()
	var tn *Testnet
	defer func() {
		if tn != nil {
			if serr := tn.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
		rep.Total = time.Since(begin)
	}()
	step := func(name, intro string, do func() (string, error)) error {
		fmt.Fprintf(out, "==> %s\n", intro)
		t0 := time.Now()
		detail, err := do()
		s := Step{Name: name, Took: time.Since(t0), OK: err == nil, Detail: detail}
		if err != nil {
			s.Detail = err.Error()
		}
		rep.Steps = append(rep.Steps, s)
		if err != nil {
			fmt.Fprintf(out, "    FAILED after %s: %v\n", round(s.Took), err)
			return err
		}
		fmt.Fprintf(out, "    %s (%s)\n", detail, round(s.Took))
		return nil
	}

	if err := step(StepStart, fmt.Sprintf("starting %d mirrors on loopback (mirror-1..%d bootstrap from mirror-0's node.json)", cfg.Nodes, cfg.Nodes-1), func() (string, error) {
		var err error
		if tn, err = Start(ctx, cfg); err != nil {
			return "", err
		}
		rep.Dir = tn.Dir()
		if err := tn.WaitAlive(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("all %d mirrors up, each sees all %d alive", cfg.Nodes, cfg.Nodes), nil
	}); err != nil {
		return rep, err
	}

	appDir := filepath.Join(tn.Dir(), "sample-dapp")
	if err := step(StepPublish, "publishing the sample dapp on mirror-0 (the origin)", func() (string, error) {
		if err := os.RemoveAll(appDir); err != nil {
			return "", fmt.Errorf("%w: %v", ErrDir, err)
		}
		if err := sampledapp.WriteTo(appDir); err != nil {
			return "", fmt.Errorf("%w: %v", ErrDir, err)
		}
		c, err := tn.Publish(ctx, 0, appDir)
		if err != nil {
			return "", err
		}
		rep.CID = c
		return "app CID " + c + ", at " + tn.AppURL(0, c), nil
	}); err != nil {
		return rep, err
	}

	followers := make([]int, 0, cfg.Nodes-1)
	for i := 1; i < cfg.Nodes; i++ {
		followers = append(followers, i)
	}
	if err := step(StepReplicate, fmt.Sprintf("mirror-1..%d follow the app", cfg.Nodes-1), func() (string, error) {
		if err := tn.Follow(ctx, rep.CID, followers...); err != nil {
			return "", err
		}
		if err := tn.WaitHeld(ctx, rep.CID, followers...); err != nil {
			return "", err
		}
		return fmt.Sprintf("held (complete, verified) by %d replicas", len(followers)), nil
	}); err != nil {
		return rep, err
	}

	if err := step(StepStop, "taking the origin down: SIGTERM to mirror-0", func() (string, error) {
		if err := tn.StopMirror(0); err != nil {
			return "", err
		}
		return fmt.Sprintf("mirror-0 (pid %d) has exited", tn.Mirrors()[0].PID), nil
	}); err != nil {
		return rep, err
	}

	for _, i := range followers {
		rep.Survivors = append(rep.Survivors, tn.Mirrors()[i].HTTP)
	}
	if err := step(StepResolve, "resolving the app with the light client from the survivors only", func() (string, error) {
		root, err := cid.Decode(rep.CID)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrCommand, err)
		}
		gctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		res, err := client.Get(gctx, root, client.Options{Bootstrap: rep.Survivors})
		if err != nil {
			return "", err
		}
		got := filepath.Join(tn.Dir(), "resolved")
		if err := os.RemoveAll(got); err != nil {
			return "", fmt.Errorf("%w: %v", ErrDir, err)
		}
		if err := res.WriteDir(got); err != nil {
			return "", err
		}
		files, err := VerifyDir(got, sampledapp.FS)
		if err != nil {
			return "", err
		}
		rep.Files = files
		// What a browser gets: the app on its own origin from a survivor.
		appURL := tn.AppURL(followers[0], rep.CID)
		if err := checkServed(gctx, appURL, "index.html"); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d files, %d blocks, %d bytes, every block verified against the CID and every file identical to the sample dapp; %d mirror(s) served it; %s serves index.html",
			len(files), res.Blocks, res.Bytes, len(res.PerMirror), appURL), nil
	}); err != nil {
		return rep, err
	}
	fmt.Fprintf(out, "==> the app outlived its origin. Steps: %s\n", summary(rep.Steps))
	return rep, nil
}

// checkServed fetches appURL (http://CID.ipfs.localhost:PORT/) from
// 127.0.0.1:PORT with its subdomain Host header, as a browser would, and
// compares the body with the sample dapp's file name.
func checkServed(ctx context.Context, appURL, name string) error {
	u, err := url.Parse(appURL)
	if err != nil || u.Port() == "" {
		return fmt.Errorf("%w: app URL %q", ErrVerify, appURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+u.Port()+"/", nil)
	if err != nil {
		return err
	}
	req.Host = u.Host
	resp, err := statusClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrVerify, appURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrVerify, appURL, err)
	}
	want, err := fs.ReadFile(sampledapp.FS, name)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		return fmt.Errorf("%w: %s answered %s with %d bytes, not the app's %s", ErrVerify, appURL, resp.Status, len(body), name)
	}
	return nil
}

// VerifyDir checks that dir holds exactly the files of want, byte for
// byte, and returns their paths in order.
func VerifyDir(dir string, want fs.FS) ([]string, error) {
	var wantFiles []string
	err := fs.WalkDir(want, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			wantFiles = append(wantFiles, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var gotFiles []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			gotFiles = append(gotFiles, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	slices.Sort(wantFiles)
	slices.Sort(gotFiles)
	for _, f := range gotFiles {
		if !slices.Contains(wantFiles, f) {
			return nil, fmt.Errorf("%w: unexpected file %s", ErrVerify, f)
		}
	}
	for _, f := range wantFiles {
		w, err := fs.ReadFile(want, f)
		if err != nil {
			return nil, err
		}
		g, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is missing", ErrVerify, f)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrVerify, err)
		}
		if !bytes.Equal(w, g) {
			return nil, fmt.Errorf("%w: %s has %d bytes that differ from the original's %d", ErrVerify, f, len(g), len(w))
		}
	}
	return wantFiles, nil
}

func summary(steps []Step) string {
	var b bytes.Buffer
	for i, s := range steps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", s.Name, round(s.Took))
	}
	return b.String()
}

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
