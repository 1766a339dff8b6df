package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/predict"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// Defaults for the zero values of Config.
const (
	// DefaultQueueSize is the default number of finished exchanges that may
	// wait for an assembler.
	DefaultQueueSize = 256
	// DefaultMaxQueuedBytes is the default cap on body bytes held by finished
	// exchanges that wait for an assembler.
	DefaultMaxQueuedBytes = 64 << 20
)

// Engine starts exchanges and runs the background assemblers.
type Engine struct {
	cfg        Config
	callers    CallerResolver
	collectors CandidateFinder
	sink       Sink
	workflows  workflow.Finder
	logger     *slog.Logger
	metrics    *metrics
	now        func() time.Time

	// randMu serializes draws, because a seeded Rand is not safe for
	// concurrent use and several assemblers draw.
	randMu sync.Mutex
	rand   func() float64

	queue       chan *finished
	queuedBytes atomic.Int64

	// noWorkflowsOnce logs the first collector that names a pre-queue
	// workflow while Deps.Workflows is nil. Its drops are counted every time.
	noWorkflowsOnce sync.Once

	// mu orders hand-offs against Close: a hand-off holds it for reading, so
	// once Close has set closed, no exchange enters the queue.
	mu       sync.RWMutex
	started  bool
	closed   bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds an engine; call Start before the first Begin.
func New(cfg Config, deps Deps) (*Engine, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if deps.Callers == nil || deps.Collectors == nil || deps.Sink == nil {
		return nil, errors.New("capture engine: Deps.Callers, Deps.Collectors and Deps.Sink are required")
	}

	e := &Engine{
		cfg:        cfg,
		callers:    deps.Callers,
		collectors: deps.Collectors,
		sink:       deps.Sink,
		workflows:  deps.Workflows,
		logger:     deps.Logger,
		now:        deps.Now,
		rand:       deps.Rand,
		queue:      make(chan *finished, cfg.QueueSize),
		stop:       make(chan struct{}),
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.rand == nil {
		e.rand = rand.Float64
	}

	meter := deps.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("collectord/capture")
	}
	e.metrics, err = newMetrics(meter, func() int { return len(e.queue) })
	if err != nil {
		return nil, fmt.Errorf("capture engine: %w", err)
	}
	return e, nil
}

// withDefaults fills the zero fields of cfg and rejects negative ones.
func withDefaults(cfg Config) (Config, error) {
	if cfg.MaxCaptureBytes < 0 || cfg.Assemblers < 0 || cfg.QueueSize < 0 || cfg.MaxQueuedBytes < 0 {
		return cfg, fmt.Errorf("capture engine: invalid config %+v: limits must not be negative", cfg)
	}
	if cfg.MaxCaptureBytes == 0 {
		cfg.MaxCaptureBytes = DefaultMaxCaptureBytes
	}
	if cfg.Assemblers == 0 {
		cfg.Assemblers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxQueuedBytes == 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	return cfg, nil
}

// Start launches the background assemblers; they stop when Close is called
// or ctx ends. ctx also bounds their collector lookups.
func (e *Engine) Start(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.closed {
		return
	}
	e.started = true

	for range e.cfg.Assemblers {
		e.wg.Add(1)
		go e.runAssembler(ctx)
	}
}

// Close stops taking finished exchanges, lets the assemblers empty their
// queue into the sink, and returns when they are done or ctx ends.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.stopOnce.Do(func() { close(e.stop) })

	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("capture engine: close: %w", ctx.Err())
	}

	// Assemblers that were never started, or stopped by their context, leave
	// exchanges behind; assemble them here.
	e.drain(ctx)
	return ctx.Err()
}

// runAssembler takes finished exchanges off the queue until Close or ctx.
func (e *Engine) runAssembler(ctx context.Context) {
	defer e.wg.Done()
	for {
		select {
		case job := <-e.queue:
			e.assembleSafely(ctx, job)
		case <-e.stop:
			e.drain(ctx)
			return
		case <-ctx.Done():
			return
		}
	}
}

// drain assembles queued exchanges until the queue is empty or ctx ends.
func (e *Engine) drain(ctx context.Context) {
	for ctx.Err() == nil {
		select {
		case job := <-e.queue:
			e.assembleSafely(ctx, job)
		default:
			return
		}
	}
}

// handOff queues a finished exchange for the assemblers without blocking.
func (e *Engine) handOff(job *finished) {
	e.mu.RLock()
	defer e.mu.RUnlock()

	ctx := context.Background()
	if e.closed {
		e.metrics.captures.Add(ctx, telemetry.OutcomeDropped, reasonEngineClosed, 1)
		return
	}

	size := job.size()
	if e.queuedBytes.Add(size) > e.cfg.MaxQueuedBytes {
		e.queuedBytes.Add(-size)
		e.metrics.captures.Add(ctx, telemetry.OutcomeDropped, reasonAssemblerQueueFull, 1)
		return
	}
	select {
	case e.queue <- job:
	default:
		e.queuedBytes.Add(-size)
		e.metrics.captures.Add(ctx, telemetry.OutcomeDropped, reasonAssemblerQueueFull, 1)
	}
}

// draw returns one uniform value in [0,1).
func (e *Engine) draw() float64 {
	e.randMu.Lock()
	defer e.randMu.Unlock()
	return e.rand()
}

// Begin starts an exchange from the request headers. It returns nil on the
// fast path: not a predict, no body, no caller, no candidate collector, or a
// Content-Length over the capture cap. The caller must call Close on a
// non-nil exchange; the methods of a nil *Exchange do nothing.
func (e *Engine) Begin(ctx context.Context, req RequestInfo) *Exchange {
	headers := req.Headers
	if headers == nil {
		e.metrics.countExchange(exchangeNotPredict)
		return nil
	}
	route, ok := predict.Detect(headers.Get(":method"), headers.Get(":path"), headers.Get("content-type"))
	if !ok {
		e.metrics.countExchange(exchangeNotPredict)
		return nil
	}

	// A predict without a body carries no inputs, so there is nothing to copy.
	if req.EndOfStream {
		e.metrics.countExchange(exchangeEmptyBody)
		return nil
	}

	caller, ok := e.callers.ResolveCaller(ctx, req)
	if !ok || caller == "" {
		e.metrics.countExchange(exchangeNoCaller)
		return nil
	}

	model := collector.ModelRef{UserID: route.UserID, AppID: route.AppID, ModelID: route.ModelID, VersionID: route.VersionID}
	if model.UserID == "" {
		// Paths such as /v2/models/{model}/outputs leave the model's owner to
		// user_app_id in the body, so any collector of this caller may match
		// until the assembler reads it.
		model = collector.ModelRef{}
	}
	candidates := filterCandidates(e.collectors.Candidates(ctx, caller, model), caller, route.VersionID)
	if len(candidates) == 0 {
		e.metrics.countExchange(exchangeNoCollector)
		return nil
	}

	// Envoy enforces Content-Length, so a body declared over the cap would
	// only be dropped later; skip reading it at all.
	contentLength := parseContentLength(headers.Get("content-length"))
	if contentLength > e.cfg.MaxCaptureBytes {
		e.metrics.countExchange(exchangeTooLarge)
		e.metrics.captures.Add(ctx, telemetry.OutcomeTooLarge, "", 1)
		return nil
	}

	e.metrics.countExchange(exchangeCaptured)
	return newExchange(e, route, caller, candidates, headers, contentLength)
}

// filterCandidates drops collectors that cannot match whatever the body
// contains: paused ones, ones for another caller, and, when version is known,
// ones pinned to another version. It returns candidates itself when all
// pass, because the finder's slice may be shared and is never modified.
func filterCandidates(candidates []collector.Collector, caller, version string) []collector.Collector {
	keep := func(c *collector.Collector) bool {
		if c.Paused || (c.CallerUserID != "" && c.CallerUserID != caller) {
			return false
		}
		return c.Model.VersionID == "" || version == "" || c.Model.VersionID == version
	}

	all := true
	for i := range candidates {
		if !keep(&candidates[i]) {
			all = false
			break
		}
	}
	if all {
		return candidates
	}

	kept := make([]collector.Collector, 0, len(candidates))
	for i := range candidates {
		if keep(&candidates[i]) {
			kept = append(kept, candidates[i])
		}
	}
	return kept
}

// parseContentLength returns the value of a Content-Length header, or -1
// when it is absent or invalid.
func parseContentLength(value string) int64 {
	if value == "" || len(value) > 18 {
		return -1
	}
	var n int64
	for i := 0; i < len(value); i++ {
		digit := value[i]
		if digit < '0' || digit > '9' {
			return -1
		}
		n = n*10 + int64(digit-'0')
	}
	return n
}
