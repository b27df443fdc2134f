// Package testnet runs a local mirrornet network as child processes on
// loopback: the topology of the repository's docker-compose.yml without
// Docker. Mirror 0 starts first; mirrors 1..N-1 bootstrap from the
// multiaddr in mirror 0's node.json. Every mirror is `mirrornet node` (the
// same binary, by default os.Executable()) with the local timer profile,
// TCP on a free loopback port, HTTP on a free (or chosen) loopback port,
// mDNS off (no multicast leaves the machine) and its own data directory
// DIR/mirror-I, logging to DIR/mirror-I.log.
//
// Start starts the network and returns once every mirror has written its
// node.json; if any mirror fails to start, Start stops every mirror it
// started, waits for them, and returns one error that names the mirror and
// what it said. Stop terminates every mirror (SIGTERM, then SIGKILL after
// Config.StopTimeout), waits for each, and removes the directory if Start
// created it. DIR/testnet.json records every mirror's PID, data directory
// and URLs while the network runs, for scripts and tests.
//
// Demo runs the disaster-recovery story end to end and returns each step's
// duration as data:
//
//	rep, err := testnet.Demo(ctx, testnet.DefaultConfig())
//	for _, s := range rep.Steps { fmt.Println(s.Name, s.Took) }
package testnet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mirrornet/mirrornet/node"
)

// Errors returned by this package; each is wrapped with details.
var (
	// ErrConfig: a Config field is out of range.
	ErrConfig = errors.New("testnet: invalid config")
	// ErrDir: the testnet directory cannot be created or written.
	ErrDir = errors.New("testnet: directory not usable")
	// ErrStart: a mirror exited or did not come up in time.
	ErrStart = errors.New("testnet: mirror failed to start")
	// ErrCommand: an admin request (publish, follow) to a mirror failed.
	ErrCommand = errors.New("testnet: command failed")
	// ErrTimeout: a condition was not reached within Config.Timeout.
	ErrTimeout = errors.New("testnet: timed out")
	// ErrVerify: the resolved app differs from the sample dapp.
	ErrVerify = errors.New("testnet: resolved app differs")
)

// RecordFile is the name of the JSON record in the testnet directory.
const RecordFile = "testnet.json"

// Config shapes a testnet. Build it with DefaultConfig and change fields.
type Config struct {
	// Nodes is the number of mirrors. Default 5, the compose file's count.
	Nodes int
	// Dir holds every mirror's data directory, logs and testnet.json. ""
	// makes a temporary directory that Stop removes; a given Dir is kept
	// (stale node.json files in it are removed before start).
	Dir string
	// Binary is the mirrornet executable. "" means os.Executable().
	Binary string
	// Profile is the node timer profile. Default "local": fast heartbeats
	// for processes on one machine.
	Profile string
	// HTTPPort, if non-zero, puts mirror I's HTTP side on
	// 127.0.0.1:HTTPPort+I (stable URLs, like the compose file's
	// 8081..8085). 0 picks free ports.
	HTTPPort int
	// Timeout bounds each wait (mirrors up, all alive, replicas held,
	// app resolved). Default 60 s: generous for a loaded 2-core machine,
	// where the whole demo takes seconds.
	Timeout time.Duration
	// StopTimeout is how long a mirror gets to leave after SIGTERM before
	// it is killed. Default 15 s (a node leaves within about a second).
	StopTimeout time.Duration
	// LogLevel of the mirrors' logs. Default "info".
	LogLevel string
	// Out gets one line per event, for people. nil discards.
	Out io.Writer
}

// DefaultConfig is five mirrors on free loopback ports in a temporary
// directory, running this executable.
func DefaultConfig() Config {
	return Config{
		Nodes:       5,
		Profile:     "local",
		Timeout:     60 * time.Second,
		StopTimeout: 15 * time.Second,
		LogLevel:    "info",
	}
}

// MaxNodes bounds Nodes: every mirror is a process on this machine.
const MaxNodes = 64

// Validate checks every field and names the one that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("%w: nodes: %d, need at least 1 mirror", ErrConfig, c.Nodes)
	case c.Nodes > MaxNodes:
		return fmt.Errorf("%w: nodes: %d, at most %d mirrors on one machine", ErrConfig, c.Nodes, MaxNodes)
	case c.HTTPPort < 0 || c.HTTPPort > 0 && c.HTTPPort+c.Nodes-1 > 65535:
		return fmt.Errorf("%w: http-port: %d..%d is not a port range", ErrConfig, c.HTTPPort, c.HTTPPort+c.Nodes-1)
	case c.Profile == "":
		return fmt.Errorf("%w: profile: empty", ErrConfig)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout: %s, must be positive", ErrConfig, c.Timeout)
	case c.StopTimeout <= 0:
		return fmt.Errorf("%w: stop-timeout: %s, must be positive", ErrConfig, c.StopTimeout)
	}
	return nil
}

// Mirror describes one mirror process; it is what testnet.json records.
type Mirror struct {
	Name    string   `json:"name"`
	PID     int      `json:"pid"`
	Data    string   `json:"data"`
	Log     string   `json:"log"`
	PeerID  string   `json:"peer_id,omitempty"`
	Addrs   []string `json:"addrs,omitempty"`
	HTTP    string   `json:"http,omitempty"`
	Stopped bool     `json:"stopped"`
}

// Record is the content of DIR/testnet.json.
type Record struct {
	PID     int      `json:"pid"` // the testnet process
	Dir     string   `json:"dir"`
	App     string   `json:"app,omitempty"` // published bundle CID
	Mirrors []Mirror `json:"mirrors"`
}

// proc is a running mirror.
type proc struct {
	m    Mirror
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has been waited for
	err  error         // Wait's result, valid after done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Testnet is a running local network. Its methods are safe for concurrent
// use.
type Testnet struct {
	cfg    Config
	dir    string
	ownDir bool
	env    []string

	mu    sync.Mutex
	procs []*proc
	app   string

	failed chan error // first mirror that exited without being stopped

	stopOnce sync.Once
	stopErr  error
}

// Start starts cfg.Nodes mirrors and returns once each has written its
// node.json. On error no mirror is left running.
func Start(ctx context.Context, cfg Config) (*Testnet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%w: binary: %v", ErrConfig, err)
		}
		cfg.Binary = exe
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	t := &Testnet{cfg: cfg, env: childEnv(), failed: make(chan error, 1)}
	if err := t.makeDir(); err != nil {
		return nil, err
	}
	fail := func(err error) (*Testnet, error) {
		if serr := t.Stop(); serr != nil {
			err = fmt.Errorf("%w (and stopping: %v)", err, serr)
		}
		return nil, err
	}
	if err := t.writeRecord(); err != nil {
		return fail(err)
	}
	// Mirror 0 first: the others bootstrap from its node.json.
	if err := t.spawn(0, ""); err != nil {
		return fail(err)
	}
	if err := t.waitInfo(ctx, 0); err != nil {
		return fail(err)
	}
	boot := t.procs[0].m.Addrs[0]
	for i := 1; i < cfg.Nodes; i++ {
		if err := t.spawn(i, boot); err != nil {
			return fail(err)
		}
	}
	if err := t.waitInfo(ctx, 1, cfg.Nodes-1); err != nil {
		return fail(err)
	}
	return t, nil
}

func (t *Testnet) makeDir() error {
	if t.cfg.Dir == "" {
		d, err := os.MkdirTemp("", "mirrornet-testnet-")
		if err != nil {
			return fmt.Errorf("%w: temporary directory: %v", ErrDir, err)
		}
		t.dir, t.ownDir = d, true
		return nil
	}
	d, err := filepath.Abs(t.cfg.Dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDir, t.cfg.Dir, err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDir, d, unwrapPathErr(err))
	}
	// An earlier testnet's state (keys, blocks, follows) would come back
	// silently and make this run something other than a fresh network.
	if _, err := os.Stat(filepath.Join(d, RecordFile)); err == nil {
		return fmt.Errorf("%w: %s holds an earlier testnet (%s): remove it or give another --dir", ErrDir, d, RecordFile)
	}
	f, err := os.CreateTemp(d, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %s is not writable: %v", ErrDir, d, unwrapPathErr(err))
	}
	f.Close()
	os.Remove(f.Name())
	t.dir = d
	return nil
}

// unwrapPathErr drops the path from a *PathError (the caller names it).
func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// childEnv is this process's environment without MIRRORNET_* variables, so
// that a user's settings cannot change the testnet's topology.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MIRRORNET_") {
			env = append(env, kv)
		}
	}
	return env
}

func (t *Testnet) spawn(i int, bootstrap string) error {
	name := fmt.Sprintf("mirror-%d", i)
	data := filepath.Join(t.dir, name)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDir, data, unwrapPathErr(err))
	}
	// A node.json left by an earlier run in a kept --dir would look like
	// this mirror is already up.
	if err := os.Remove(filepath.Join(data, "node.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %v", ErrDir, err)
	}
	logPath := filepath.Join(t.dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDir, logPath, unwrapPathErr(err))
	}
	httpAddr := "127.0.0.1:0"
	if t.cfg.HTTPPort > 0 {
		httpAddr = "127.0.0.1:" + strconv.Itoa(t.cfg.HTTPPort+i)
	}
	args := []string{"node", "--data", data,
		"--listen", "/ip4/127.0.0.1/tcp/0", "--http", httpAddr,
		"--profile", t.cfg.Profile, "--mdns=false", "--log-level", t.cfg.LogLevel}
	if bootstrap != "" {
		args = append(args, "--bootstrap", bootstrap)
	}
	cmd := exec.Command(t.cfg.Binary, args...)
	cmd.Env = t.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%w: %s: %v", ErrStart, name, err)
	}
	p := &proc{m: Mirror{Name: name, PID: cmd.Process.Pid, Data: data, Log: logPath}, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		logf.Close()
		t.mu.Lock()
		p.err = err
		stopped := p.m.Stopped
		t.mu.Unlock()
		close(p.done)
		if !stopped {
			select {
			case t.failed <- fmt.Errorf("%w: %s exited (%v): %s (log: %s)", ErrStart, p.m.Name, err, lastError(p.m.Log), p.m.Log):
			default:
			}
		}
	}()
	t.mu.Lock()
	t.procs = append(t.procs, p)
	t.mu.Unlock()
	return t.writeRecord()
}

// nodeInfo is the part of a node's DATA/node.json the testnet reads.
type nodeInfo struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	HTTP   string   `json:"http"`
}

// waitInfo waits until mirrors from..to have written node.json, failing
// as soon as one of them exits.
func (t *Testnet) waitInfo(ctx context.Context, from int, to ...int) error {
	last := from
	if len(to) > 0 {
		last = to[0]
	}
	pending := map[int]bool{}
	for i := from; i <= last; i++ {
		pending[i] = true
	}
	err := t.poll(ctx, "mirrors to start", func() (bool, string, error) {
		for i := range pending {
			p := t.proc(i)
			raw, err := os.ReadFile(filepath.Join(p.m.Data, "node.json"))
			if err == nil {
				var info nodeInfo
				if json.Unmarshal(raw, &info) == nil && info.PeerID != "" && len(info.Addrs) > 0 {
					t.mu.Lock()
					p.m.PeerID, p.m.Addrs, p.m.HTTP = info.PeerID, info.Addrs, info.HTTP
					t.mu.Unlock()
					delete(pending, i)
					fmt.Fprintf(t.cfg.Out, "%s up: peer %s, %s (pid %d)\n", p.m.Name, info.PeerID, info.HTTP, p.m.PID)
					continue
				}
			}
			if p.exited() {
				msg := lastError(p.m.Log)
				if strings.Contains(msg, "address already in use") && t.cfg.HTTPPort > 0 {
					msg += fmt.Sprintf(" (testnet: HTTP ports %d..%d must be free; choose another --http-port, or 0 for free ports)", t.cfg.HTTPPort, t.cfg.HTTPPort+t.cfg.Nodes-1)
				}
				return false, "", fmt.Errorf("%w: %s exited (%v): %s (log: %s)", ErrStart, p.m.Name, p.err, msg, p.m.Log)
			}
		}
		if len(pending) == 0 {
			return true, "", nil
		}
		var names []string
		for i := range pending {
			names = append(names, t.proc(i).m.Name)
		}
		slices.Sort(names)
		return false, "no node.json yet from " + strings.Join(names, ", "), nil
	})
	if err != nil {
		return err
	}
	return t.writeRecord()
}

// lastError is the most useful line of a mirror's log: the last one the
// command printed as its error ("mirrornet: ..."), else the last line.
func lastError(logPath string) string {
	raw, err := os.ReadFile(logPath)
	if err != nil {
		return "(no log)"
	}
	var last, lastErr string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		last = line
		if strings.HasPrefix(line, "mirrornet: ") {
			lastErr = strings.TrimPrefix(line, "mirrornet: ")
		}
	}
	if lastErr != "" {
		return lastErr
	}
	if last == "" {
		return "(empty log)"
	}
	return last
}

func (t *Testnet) proc(i int) *proc {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs[i]
}

// poll calls cond every 50 ms until it reports done or an error, the
// context ends, or Config.Timeout passes; the timeout error carries cond's
// last description of what it is still waiting for.
func (t *Testnet) poll(ctx context.Context, what string, cond func() (done bool, waiting string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, waiting, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: %s within %s: %s", ErrTimeout, what, t.cfg.Timeout, waiting)
			}
			return fmt.Errorf("testnet: waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// Failed receives an error when a mirror exits without StopMirror or Stop
// having been called for it (a crash, a kill from outside); only the first
// such exit is reported.
func (t *Testnet) Failed() <-chan error { return t.failed }

// Dir is the testnet directory.
func (t *Testnet) Dir() string { return t.dir }

// Mirrors returns a copy of every mirror's description, in order.
func (t *Testnet) Mirrors() []Mirror {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Mirror, len(t.procs))
	for i, p := range t.procs {
		out[i] = p.m
		out[i].Addrs = slices.Clone(p.m.Addrs)
	}
	return out
}

// AppURL is the subdomain-gateway URL of bundle cid on mirror i
// (http://CID.ipfs.localhost:PORT/), where browsers give the app its own
// origin.
func (t *Testnet) AppURL(i int, cid string) string {
	u, err := url.Parse(t.proc(i).m.HTTP)
	if err != nil || u.Port() == "" {
		return ""
	}
	return "http://" + cid + ".ipfs.localhost:" + u.Port() + "/"
}

// writeRecord rewrites DIR/testnet.json atomically.
func (t *Testnet) writeRecord() error {
	rec := Record{PID: os.Getpid(), Dir: t.dir, Mirrors: t.Mirrors()}
	t.mu.Lock()
	rec.App = t.app
	t.mu.Unlock()
	raw, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(t.dir, "."+RecordFile+".tmp")
	if err := os.WriteFile(tmp, append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrDir, unwrapPathErr(err))
	}
	if err := os.Rename(tmp, filepath.Join(t.dir, RecordFile)); err != nil {
		return fmt.Errorf("%w: %v", ErrDir, err)
	}
	return nil
}

// ReadRecord reads DIR/testnet.json.
func ReadRecord(dir string) (Record, error) {
	var rec Record
	raw, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return rec, err
	}
	err = json.Unmarshal(raw, &rec)
	return rec, err
}

// status is the part of a node's status JSON the testnet reads.
type status struct {
	Self struct {
		PeerID  string   `json:"peer_id"`
		Bundles []string `json:"bundles"` // held
	} `json:"self"`
	Mirrors []struct {
		PeerID string `json:"peer_id"`
		State  string `json:"state"`
	} `json:"mirrors"`
}

// statusPath is protocol.HTTPStatusPath (copied so that this package
// depends on the HTTP contract only).
const statusPath = "/api/v1/status"

var statusClient = &http.Client{Timeout: 5 * time.Second}

func fetchStatus(ctx context.Context, base string) (status, error) {
	var st status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+statusPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s answered %s", base, resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st)
	return st, err
}

// running returns the mirrors not stopped, failing if one exited on its own.
func (t *Testnet) running() ([]*proc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*proc
	for _, p := range t.procs {
		if p.m.Stopped {
			continue
		}
		if p.exited() {
			return nil, fmt.Errorf("%w: %s exited (%v): %s (log: %s)", ErrStart, p.m.Name, p.err, lastError(p.m.Log), p.m.Log)
		}
		out = append(out, p)
	}
	return out, nil
}

// WaitAlive waits until every running mirror sees every running mirror
// (itself included) alive in its status.
func (t *Testnet) WaitAlive(ctx context.Context) error {
	return t.poll(ctx, "all mirrors alive", func() (bool, string, error) {
		ps, err := t.running()
		if err != nil {
			return false, "", err
		}
		for _, p := range ps {
			st, err := fetchStatus(ctx, p.m.HTTP)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", p.m.Name, err), nil
			}
			alive := map[string]bool{}
			for _, m := range st.Mirrors {
				alive[m.PeerID] = m.State == "alive"
			}
			n := 0
			for _, q := range ps {
				if alive[q.m.PeerID] {
					n++
				}
			}
			if n < len(ps) {
				return false, fmt.Sprintf("%s sees %d of %d alive", p.m.Name, n, len(ps)), nil
			}
		}
		return true, "", nil
	})
}

// AliveSeenBy asks mirror i's status how many mirrors it sees alive,
// itself included.
func (t *Testnet) AliveSeenBy(ctx context.Context, i int) (int, error) {
	st, err := fetchStatus(ctx, t.proc(i).m.HTTP)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range st.Mirrors {
		if m.State == "alive" {
			n++
		}
	}
	return n, nil
}

// Publish imports path into mirror i through its admin socket (what
// `mirrornet publish` does) and returns the bundle's CID.
func (t *Testnet) Publish(ctx context.Context, i int, path string) (string, error) {
	p := t.proc(i)
	ac, err := node.DialAdmin(p.m.Data)
	if err != nil {
		return "", fmt.Errorf("%w: publish on %s: %v", ErrCommand, p.m.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	res, err := ac.Import(ctx, path, nil)
	if err != nil {
		return "", fmt.Errorf("%w: publish on %s: %v", ErrCommand, p.m.Name, err)
	}
	t.mu.Lock()
	t.app = res.CID
	t.mu.Unlock()
	return res.CID, t.writeRecord()
}

// Follow makes each of the given mirrors keep bundle cid, through their
// admin sockets (what `mirrornet follow` does), all at once.
func (t *Testnet) Follow(ctx context.Context, cid string, mirrors ...int) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	errs := make([]error, len(mirrors))
	var wg sync.WaitGroup
	for k, i := range mirrors {
		p := t.proc(i)
		wg.Go(func() {
			ac, err := node.DialAdmin(p.m.Data)
			if err == nil {
				err = ac.Follow(ctx, cid)
			}
			if err != nil {
				errs[k] = fmt.Errorf("%w: follow on %s: %v", ErrCommand, p.m.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// WaitHeld waits until each of the given mirrors reports bundle cid held
// (complete and verified) in its status.
func (t *Testnet) WaitHeld(ctx context.Context, cid string, mirrors ...int) error {
	return t.poll(ctx, "replicas held", func() (bool, string, error) {
		if _, err := t.running(); err != nil {
			return false, "", err
		}
		for _, i := range mirrors {
			p := t.proc(i)
			st, err := fetchStatus(ctx, p.m.HTTP)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", p.m.Name, err), nil
			}
			if !slices.Contains(st.Self.Bundles, cid) {
				return false, p.m.Name + " does not hold it yet", nil
			}
		}
		return true, "", nil
	})
}

// StopMirror stops mirror i gracefully (SIGTERM: it announces that it
// leaves) and waits for it to exit; it is killed after
// Config.StopTimeout.
func (t *Testnet) StopMirror(i int) error {
	p := t.proc(i)
	err := t.stopProc(p)
	if rerr := t.writeRecord(); err == nil {
		err = rerr
	}
	return err
}

func (t *Testnet) stopProc(p *proc) error {
	t.mu.Lock()
	already := p.m.Stopped
	p.m.Stopped = true
	t.mu.Unlock()
	if already {
		return nil
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(t.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("testnet: %s did not leave within %s after SIGTERM; killed", p.m.Name, t.cfg.StopTimeout)
	}
}

// Stop stops every mirror (all at once, each waited for) and removes the
// directory if Start created it. Safe to call more than once.
func (t *Testnet) Stop() error {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		procs := slices.Clone(t.procs)
		t.mu.Unlock()
		errs := make([]error, len(procs))
		var wg sync.WaitGroup
		for i, p := range procs {
			wg.Go(func() { errs[i] = t.stopProc(p) })
		}
		wg.Wait()
		err := errors.Join(errs...)
		if t.ownDir {
			if rerr := os.RemoveAll(t.dir); rerr != nil && err == nil {
				err = fmt.Errorf("testnet: remove %s: %w", t.dir, rerr)
			}
		} else if t.dir != "" {
			if werr := t.writeRecord(); werr != nil && err == nil {
				err = werr
			}
		}
		t.stopErr = err
	})
	return t.stopErr
}
