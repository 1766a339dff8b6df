// Package capture runs one predict exchange: it detects the predict from the
// request headers, resolves the caller, looks up candidate collectors, keeps
// bounded copies of the bodies, and hands the finished exchange to background
// assemblers that parse, decide and emit capture records. Nothing here ever
// blocks or alters the predict.
package capture

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/workflow"
)

// DefaultMaxCaptureBytes is the default cap on body bytes kept per exchange.
const DefaultMaxCaptureBytes = 16 << 20

// Headers gives read access to one header map. Names are lowercase; Get
// returns the first value, or "" when the header is absent.
type Headers interface {
	Get(name string) string
}

// Sink receives capture records. Offer never blocks: it returns false when the
// record was dropped, and the sink counts the drop. Records of one predict
// may share messages (inputs, concepts, the capture time and the policy), so
// the sink must not modify a record.
type Sink interface {
	Offer(rec *capturepb.Record) bool
}

// CallerResolver finds the user a predict is made for. ok is false when the
// request names no caller, in which case nothing is captured.
type CallerResolver interface {
	ResolveCaller(ctx context.Context, req RequestInfo) (userID string, ok bool)
}

// CandidateFinder returns the active collectors that may match a caller and a
// model (see collector.Store.MatchCollectors for the matching rules).
type CandidateFinder interface {
	Candidates(ctx context.Context, callerUserID string, model collector.ModelRef) []collector.Collector
}

// RequestInfo is the part of a request known at the request headers phase.
type RequestInfo struct {
	Headers Headers
	// EndOfStream is true when the request has no body.
	EndOfStream bool
	// Metadata is the dynamic metadata Envoy forwarded (namespace to fields),
	// or nil.
	Metadata map[string]map[string]any
}

// Config sets the limits of the capture engine.
type Config struct {
	// MaxCaptureBytes caps the request plus response body bytes kept per
	// exchange; over it the capture is dropped and counted as too_large.
	MaxCaptureBytes int64
	// Assemblers is the number of background goroutines that parse finished
	// exchanges.
	Assemblers int
	// QueueSize bounds finished exchanges waiting for an assembler; a full
	// queue drops the capture and counts it.
	QueueSize int
	// MaxQueuedBytes bounds the body bytes of finished exchanges waiting for
	// an assembler, so that slow assemblers cannot keep QueueSize times
	// MaxCaptureBytes in memory. Over it the capture is dropped and counted.
	MaxQueuedBytes int64
}

// Deps are the collaborators of the engine.
type Deps struct {
	Callers    CallerResolver
	Collectors CandidateFinder
	Sink       Sink
	// Workflows finds the compiled pre-queue workflows that the assemblers
	// evaluate on a predict's outputs. Nil means that no collector names
	// one, so the inputs of a collector that does are counted as dropped.
	Workflows workflow.Finder
	Meter     metric.Meter
	Logger    *slog.Logger
	// Rand returns a uniform value in [0,1); nil uses math/rand/v2. The
	// engine serializes calls, so Rand need not be safe for concurrent use.
	Rand func() float64
	// Now returns the capture time of a record; nil uses time.Now.
	Now func() time.Time
}

// Plan lists the further parts of the exchange the engine needs.
// Request headers are always seen; everything else is opt-in so that Envoy
// sends no more than needed.
type Plan struct {
	RequestBody      bool
	RequestTrailers  bool
	ResponseHeaders  bool
	ResponseBody     bool
	ResponseTrailers bool
}
