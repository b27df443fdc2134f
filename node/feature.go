package node

import (
	"context"
	"net/http"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// A feature is an optional subsystem of the node (releases, retrieval
// probes, ...) that plugs into the composition root: its own gossip
// topics, HTTP routes, admin commands, sync statements and background
// work. Features register a constructor with registerFeature in an init
// function of their own file; New builds them in registration order after
// the core (host, gossip, store, replication) is up, and Close closes them
// in reverse order before the core stops.
type feature interface {
	// name labels the feature in logs and errors.
	name() string
	// topics are the gossip topics the feature validates. Each validator
	// maps its result to Accept, Reject or Ignore itself.
	topics() []topicSpec
	// routes registers handlers on the public, read-only HTTP mux.
	routes(mux *http.ServeMux)
	// wrapHTTP may wrap the whole public HTTP handler (gateway included),
	// e.g. to add headers to gateway answers. The default returns h.
	wrapHTTP(h http.Handler) http.Handler
	// adminRoutes registers handlers on the admin (Unix socket) mux.
	adminRoutes(mux *http.ServeMux)
	// statements returns the signed statements the feature holds, for sync
	// responses and the HTTP statements stream. The slices are shared.
	statements() [][]byte
	// applySynced is offered every statement of a sync response that the
	// core did not take; it verifies and applies it and reports whether it
	// was one of the feature's.
	applySynced(raw []byte) bool
	// run does the feature's background work until ctx is done. It runs
	// in its own goroutine, which New starts and Close waits for.
	run(ctx context.Context)
	// close releases what the feature holds; run has returned by then.
	close() error
}

// topicSpec is one gossip topic of a feature.
type topicSpec struct {
	topic    string
	validate pubsub.ValidatorEx
}

// featureCtors are the registered feature constructors, in order.
var featureCtors []func(n *Node) (feature, error)

// registerFeature adds a feature constructor. Call it from init only.
func registerFeature(ctor func(n *Node) (feature, error)) {
	featureCtors = append(featureCtors, ctor)
}

// baseFeature gives features no-op defaults to embed.
type baseFeature struct{}

func (baseFeature) topics() []topicSpec                  { return nil }
func (baseFeature) routes(*http.ServeMux)                {}
func (baseFeature) adminRoutes(*http.ServeMux)           {}
func (baseFeature) wrapHTTP(h http.Handler) http.Handler { return h }
func (baseFeature) statements() [][]byte                 { return nil }
func (baseFeature) applySynced([]byte) bool              { return false }
func (baseFeature) run(ctx context.Context)              { <-ctx.Done() }
func (baseFeature) close() error                         { return nil }

// publish publishes data on a topic joined by the core or a feature.
func (n *Node) publish(topic string, data []byte) error {
	t := n.topics[topic]
	if t == nil {
		return errUnknownTopic(topic)
	}
	return t.Publish(n.ctx, data)
}

type errUnknownTopic string

func (e errUnknownTopic) Error() string { return "node: topic " + string(e) + " not joined" }
