// Package debugprof serves the Go runtime's profiles in pprof format, for
// `go tool pprof`. Register it on the admin mux only (a Unix socket only
// the node's user can open): a profile shows what the process is doing
// and a CPU profile costs CPU, so the public HTTP port never serves it.
//
// It writes profiles with runtime/pprof and runtime/trace directly rather
// than importing net/http/pprof, whose init registers the same routes on
// http.DefaultServeMux for any server in the process that uses it.
//
//	GET /debug/pprof/                      index of the profiles
//	GET /debug/pprof/profile?seconds=N     CPU profile (default 30 s, at most 300)
//	GET /debug/pprof/trace?seconds=N       execution trace (default 1 s, at most 60)
//	GET /debug/pprof/{name}?debug=N&gc=1   heap, goroutine, allocs, block, mutex, threadcreate
package debugprof

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"time"
)

// Path is the prefix of every route.
const Path = "/debug/pprof/"

// Limits on how long one request may profile.
const (
	MaxCPUSeconds   = 300
	MaxTraceSeconds = 60
)

// ErrBusy means another CPU profile or trace is being taken.
var ErrBusy = errors.New("debugprof: a CPU profile or trace is already running")

// Register adds the routes to mux.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path+"{$}", index)
	mux.HandleFunc("GET "+Path+"profile", cpu)
	mux.HandleFunc("GET "+Path+"trace", traceHandler)
	mux.HandleFunc("GET "+Path+"{name}", named)
}

func seconds(r *http.Request, def, max int) (time.Duration, error) {
	s := r.URL.Query().Get("seconds")
	if s == "" {
		return time.Duration(def) * time.Second, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("debugprof: seconds must be a whole number from 1 to %d, got %q", max, s)
	}
	return time.Duration(n) * time.Second, nil
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Del("Content-Disposition")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Go-Pprof", "1")
	w.WriteHeader(code)
	fmt.Fprintln(w, err)
}

// wait sleeps for d or until the client goes away.
func wait(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func cpu(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, 30, MaxCPUSeconds)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	if err := pprof.StartCPUProfile(w); err != nil {
		fail(w, http.StatusConflict, fmt.Errorf("%w: %v", ErrBusy, err))
		return
	}
	wait(r, d)
	pprof.StopCPUProfile()
}

func traceHandler(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, 1, MaxTraceSeconds)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="trace"`)
	if err := trace.Start(w); err != nil {
		fail(w, http.StatusConflict, fmt.Errorf("%w: %v", ErrBusy, err))
		return
	}
	wait(r, d)
	trace.Stop()
}

func named(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil {
		fail(w, http.StatusNotFound, fmt.Errorf("debugprof: no profile %q (see %s)", name, Path))
		return
	}
	debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
	if name == "heap" && r.URL.Query().Get("gc") != "" {
		runtime.GC()
	}
	if debug != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q`, name))
	}
	_ = p.WriteTo(w, debug)
}

func index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var names []string
	for _, p := range pprof.Profiles() {
		names = append(names, fmt.Sprintf("%s (%d)", p.Name(), p.Count()))
	}
	sort.Strings(names)
	fmt.Fprintf(w, "profiles under %s (go tool pprof reads each; debug=1 for text):\n", Path)
	fmt.Fprintln(w, "  profile?seconds=N (CPU)")
	fmt.Fprintln(w, "  trace?seconds=N (go tool trace)")
	for _, n := range names {
		fmt.Fprintln(w, " ", n)
	}
}
