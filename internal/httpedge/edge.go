// Package httpedge is the hardened edge of a mirror's public HTTP server:
// timeouts that end slow-loris connections and stalled readers, a cap on
// requests in flight (in all and per client address) answered with 503 and
// Retry-After, and X-Forwarded-Host / X-Forwarded-Proto honoured only from
// configured reverse proxies.
//
// Cost bounds, per connection and in all:
//
//   - a client must send its request headers within ReadHeaderTimeout and
//     its body within ReadTimeout, with at most MaxHeaderBytes of headers;
//     a connection idle between requests is closed after IdleTimeout;
//   - every write of a response must make progress within WriteIdleTimeout
//     (a reader that stops reading loses its connection; one that reads
//     slowly but steadily is served, however large the response);
//   - at most MaxInFlight requests run at once, and at most MaxPerClient
//     from one client address (an IPv4 address or an IPv6 /64); beyond that
//     a request is answered at once with 503 and Retry-After, and counted in
//     mirrornet_http_rejected_total by reason ("busy", "client_busy").
//
// Use:
//
//	e, err := httpedge.New(httpedge.DefaultConfig(), httpedge.WithMetricsRegisterer(reg))
//	srv := e.Server(handler)
//	go srv.Serve(ln)
package httpedge

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrConfig is wrapped by every Validate error.
var ErrConfig = errors.New("httpedge: invalid config")

// Config bounds what one client, and all clients together, can make the
// server hold. The zero value is not valid; start from DefaultConfig.
type Config struct {
	// ReadHeaderTimeout bounds the time to read a request's headers:
	// slow-loris clients that trickle headers are cut off. Default 10 s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time to read a whole request, body included.
	// The public side takes no large bodies. Default 30 s.
	ReadTimeout time.Duration
	// WriteIdleTimeout bounds each write of a response: a client that
	// stops reading is disconnected, while a long download that keeps
	// moving is not. Default 30 s.
	WriteIdleTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle between requests.
	// Default 2 min.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 16 KiB: gateway
	// requests carry a short path and a few headers.
	MaxHeaderBytes int
	// MaxInFlight bounds requests being served at once. Default 512: each
	// in-flight CAR stream holds a few buffers (tens of KiB), so memory
	// stays in the tens of MiB.
	MaxInFlight int
	// MaxPerClient bounds requests in flight from one client address
	// (IPv4 address, IPv6 /64), so one client cannot take every slot.
	// Default 64, above any honest client's parallelism.
	MaxPerClient int
	// RetryAfter is the Retry-After of a 503. Default 2 s.
	RetryAfter time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-Host,
	// X-Forwarded-Proto and X-Forwarded-For headers are believed. From
	// anyone else those headers are removed before any handler sees them.
	// Default none.
	TrustedProxies []netip.Prefix
}

// DefaultConfig is the configuration a mirror runs with.
func DefaultConfig() Config {
	return Config{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteIdleTimeout:  30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		MaxInFlight:       512,
		MaxPerClient:      64,
		RetryAfter:        2 * time.Second,
	}
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ReadHeaderTimeout", c.ReadHeaderTimeout}, {"ReadTimeout", c.ReadTimeout}, {"WriteIdleTimeout", c.WriteIdleTimeout},
		{"IdleTimeout", c.IdleTimeout}, {"RetryAfter", c.RetryAfter}} {
		if d.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %v", ErrConfig, d.name, d.v)
		}
	}
	if c.MaxHeaderBytes <= 0 {
		return fmt.Errorf("%w: MaxHeaderBytes must be positive", ErrConfig)
	}
	if c.MaxInFlight <= 0 || c.MaxPerClient <= 0 {
		return fmt.Errorf("%w: MaxInFlight and MaxPerClient must be positive", ErrConfig)
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("%w: TrustedProxies has an invalid prefix", ErrConfig)
		}
	}
	return nil
}

// ParseCIDRs parses --trusted-proxy values: CIDRs (10.0.0.0/8) or single
// addresses (127.0.0.1, a /32 or /128).
func ParseCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is neither a CIDR (10.0.0.0/8) nor an IP address", ErrConfig, s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Option sets an optional dependency of New.
type Option func(*options)

type options struct {
	reg prometheus.Registerer
	now func() time.Time
}

// WithMetricsRegisterer registers the edge's metrics with reg (default: a
// private registry).
func WithMetricsRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// Edge wraps a handler with the limits of its Config. Safe for concurrent
// use; it starts no goroutines.
type Edge struct {
	cfg Config
	now func() time.Time

	mu       sync.Mutex
	inFlight int
	perKey   map[netip.Prefix]int

	rejected *prometheus.CounterVec
	gauge    prometheus.Gauge
}

// New builds an Edge.
func New(cfg Config, opts ...Option) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.reg == nil {
		o.reg = prometheus.NewRegistry()
	}
	e := &Edge{
		cfg: cfg, now: o.now, perKey: map[netip.Prefix]int{},
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirrornet_http_rejected_total",
			Help: "HTTP requests refused with 503 by the concurrency cap, by reason (busy: all slots taken; client_busy: the client's slots taken).",
		}, []string{"reason"}),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mirrornet_http_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	for _, c := range []prometheus.Collector{e.rejected, e.gauge} {
		if err := o.reg.Register(c); err != nil {
			return nil, fmt.Errorf("httpedge: register metrics: %w", err)
		}
	}
	return e, nil
}

// Server returns an http.Server that serves h behind the edge, with the
// configured timeouts. The caller starts and stops it.
func (e *Edge) Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           e.Handler(h),
		ReadHeaderTimeout: e.cfg.ReadHeaderTimeout,
		ReadTimeout:       e.cfg.ReadTimeout,
		IdleTimeout:       e.cfg.IdleTimeout,
		MaxHeaderBytes:    e.cfg.MaxHeaderBytes,
	}
}

// InFlight reports the requests being served.
func (e *Edge) InFlight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inFlight
}

// Handler applies the proxy-header policy, the concurrency caps and the
// write-progress timeout to next.
func (e *Edge) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote := remoteAddr(r)
		e.proxyHeaders(r, remote)
		key := clientKey(remote)
		// The server sets no write deadline of its own (a whole-response
		// timeout would cut long downloads), so set one before anything is
		// written, the 503 included.
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: e.cfg.WriteIdleTimeout, now: e.now}
		pw.extend()
		if reason := e.acquire(key); reason != "" {
			e.rejected.WithLabelValues(reason).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int((e.cfg.RetryAfter+time.Second-1)/time.Second)))
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Connection", "close")
			http.Error(w, "httpedge: server busy, retry later ("+reason+")", http.StatusServiceUnavailable)
			return
		}
		defer e.release(key)
		next.ServeHTTP(pw, r)
	})
}

// acquire takes a slot for key, or says why not.
func (e *Edge) acquire(key netip.Prefix) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inFlight >= e.cfg.MaxInFlight {
		return "busy"
	}
	if e.perKey[key] >= e.cfg.MaxPerClient {
		return "client_busy"
	}
	e.inFlight++
	e.perKey[key]++
	e.gauge.Set(float64(e.inFlight))
	return ""
}

func (e *Edge) release(key netip.Prefix) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inFlight--
	if e.perKey[key]--; e.perKey[key] <= 0 {
		delete(e.perKey, key)
	}
	e.gauge.Set(float64(e.inFlight))
}

// proxyHeaders keeps X-Forwarded-* only from a trusted proxy; there it makes
// X-Forwarded-Host the request's Host, so every handler below reads one
// Host and nothing else.
func (e *Edge) proxyHeaders(r *http.Request, remote netip.Addr) {
	if !e.trusted(remote) {
		r.Header.Del("X-Forwarded-Host")
		r.Header.Del("X-Forwarded-Proto")
		r.Header.Del("X-Forwarded-For")
		r.Header.Del("Forwarded")
		return
	}
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		r.Host = h
		r.Header.Del("X-Forwarded-Host")
	}
}

func (e *Edge) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range e.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr is the peer address of r's connection (invalid if unknown).
func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// clientKey groups addresses one client is likely to control: an IPv4
// address, or an IPv6 /64 (what one host or home network gets).
func clientKey(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// progressWriter pushes the connection's write deadline forward as the
// response makes progress, so WriteIdleTimeout bounds a stall, not a
// download. The deadline is moved at most every idle/4 to keep writes cheap.
type progressWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	idle     time.Duration
	now      func() time.Time
	extended time.Time
}

func (w *progressWriter) extend() {
	now := w.now()
	if now.Sub(w.extended) < w.idle/4 {
		return
	}
	w.extended = now
	_ = w.rc.SetWriteDeadline(now.Add(w.idle))
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// Flush forwards to the underlying writer (boxo flushes CAR streams).
func (w *progressWriter) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
