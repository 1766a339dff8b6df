package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	admissions "github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// Defaults of WorkerConfig.
const (
	DefaultWorkers    = 2
	DefaultFetchBatch = 1024
	DefaultFetchWait  = 250 * time.Millisecond

	DefaultBacklogFetchWait = 10 * time.Millisecond
	DefaultPostTimeout      = 2 * time.Minute

	DefaultMaxFetchBytes    = 4 << 20
	DefaultMaxBatchBytes    = 4 << 20
	DefaultMaxDeferredPause = 5 * time.Second
	DefaultRetryBase        = time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultMaxRetryAfter    = time.Hour

	DefaultPostQueueConcurrency = 8
	DefaultPruneInterval        = 5 * time.Minute
)

// WorkerConfig sizes the delivery workers.
type WorkerConfig struct {
	// Workers is the number of goroutines fetching and posting. Default 2.
	Workers int
	// FetchBatch is the maximum number of records per fetch. Default 1024.
	FetchBatch int
	// FetchWait is the longest a fetch waits to fill its batch: the added
	// latency at low traffic, and the wait of Close for an idle fetch.
	// Default 250ms.
	FetchWait time.Duration
	// BacklogFetchWait is the wait of a fetch that follows a full one. A
	// full fetch means a backlog, which fills the next fetch at once. When
	// the backlog ends within a fetch, the records already fetched go on
	// after this wait instead of FetchWait. Default 10ms.
	BacklogFetchWait time.Duration
	// MaxFetchBytes bounds the record bytes of one fetch, so a stalled
	// destination holds at most Workers times this much. A larger record
	// is fetched alone. Default 4 MiB.
	MaxFetchBytes int
	// MaxBatchBytes bounds the record bytes of one post. Default 4 MiB.
	MaxBatchBytes int
	// MaxDeferredPause bounds the wait of a worker after open breakers
	// deferred a whole fetch, up to the breaker's remaining open time.
	// The wait keeps a down destination's backlog from being read back
	// from disk again and again, which grows the in-process JetStream's
	// block cache.
	//
	// NOTE: records of other destinations behind such a fetch wait too,
	// because all destinations share one consumer. Default 5s.
	MaxDeferredPause time.Duration
	// MaxBatchInputs is the most records per post, at most (and by default)
	// the destination's MaxPostInputs.
	MaxBatchInputs int
	// PostTimeout bounds one Destination.Post, including the retries of a
	// split batch. Default 2m.
	PostTimeout time.Duration
	// RetryBase and RetryMax bound the exponential delay before a retryable
	// record is delivered again; the delay is jittered down to half. Defaults
	// 1s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxRetryAfter caps the Retry-After delay a destination requests.
	// Default 1h.
	MaxRetryAfter time.Duration

	// BreakerThreshold is the number of consecutive failed posts to one
	// destination (every record retryable) that opens its circuit breaker:
	// its records are then deferred without a post while other
	// destinations keep flowing. Default 5; a negative value turns the
	// breakers off.
	BreakerThreshold int
	// BreakerOpenBase and BreakerOpenMax bound how long a breaker stays open
	// before one trial post: BreakerOpenBase doubled at each reopening,
	// capped at BreakerOpenMax. Defaults 5s and 5m.
	BreakerOpenBase time.Duration
	BreakerOpenMax  time.Duration

	// PostQueueConcurrency is the maximum number of records of one fetched
	// batch whose post-queue workflows a worker evaluates at the same time.
	// Remote-model nodes make each evaluation a network call. Default 8.
	PostQueueConcurrency int
	// PruneInterval is the time between two removals of expired admissions
	// from the Ledger. Default 5m.
	PruneInterval time.Duration
}

func (c *WorkerConfig) setDefaults() {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = DefaultFetchBatch
	}
	if c.FetchWait <= 0 {
		c.FetchWait = DefaultFetchWait
	}
	if c.BacklogFetchWait <= 0 {
		c.BacklogFetchWait = min(DefaultBacklogFetchWait, c.FetchWait)
	}
	if c.MaxFetchBytes <= 0 {
		c.MaxFetchBytes = DefaultMaxFetchBytes
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxDeferredPause <= 0 {
		c.MaxDeferredPause = DefaultMaxDeferredPause
	}
	if c.PostTimeout <= 0 {
		c.PostTimeout = DefaultPostTimeout
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.BreakerThreshold == 0 {
		c.BreakerThreshold = DefaultBreakerThreshold
	}
	if c.BreakerOpenBase <= 0 {
		c.BreakerOpenBase = DefaultBreakerOpenBase
	}
	if c.BreakerOpenMax <= 0 {
		c.BreakerOpenMax = DefaultBreakerOpenMax
	}
	c.BreakerOpenMax = max(c.BreakerOpenMax, c.BreakerOpenBase)
	if c.PostQueueConcurrency <= 0 {
		c.PostQueueConcurrency = DefaultPostQueueConcurrency
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = DefaultPruneInterval
	}
}

func (c *WorkerConfig) breakerConfig() breakerConfig {
	return breakerConfig{threshold: max(c.BreakerThreshold, 0), openBase: c.BreakerOpenBase, openMax: c.BreakerOpenMax}
}

// WorkerDeps are the collaborators of the workers.
type WorkerDeps struct {
	Meter  metric.Meter
	Logger *slog.Logger

	// Workflows finds the post-queue workflows that records name. Nil turns
	// post-queue workflows off, and a record that names one is then
	// dead-lettered with ReasonWorkflowsUnavailable.
	Workflows workflow.Finder
	// Ledger applies the collectors' budgets, deduplication and class caps.
	// Nil turns them off, and a record whose policy has a limit is then
	// dead-lettered with ReasonAdmissionUnavailable.
	Ledger admissions.Ledger
	// Previews stores what preview collectors would have ingested. Nil
	// turns previews off, and a preview record is then dead-lettered with
	// ReasonPreviewUnavailable.
	Previews admissions.PreviewStore
}

// Workers fetch records from the capture stream in batches and post them to
// a Destination. A record is acknowledged only after the destination
// accepted it. A retryable record is delivered again after a delay, and a
// permanently rejected one goes to the dead-letter stream.
type Workers struct {
	q        *Queue
	dest     Destination
	cfg      WorkerConfig
	captures *telemetry.Captures
	metrics  *workerMetrics
	depth    metric.Registration
	breakers *breakers
	breakerM *breakerMetrics
	logger   *slog.Logger

	workflows workflow.Finder
	ledger    admissions.Ledger
	previews  admissions.PreviewStore
	// inputs counts records per collector: delivered, and every outcome of
	// the screening stage.
	inputs *telemetry.CollectorInputs

	stop      chan struct{}
	closeOnce sync.Once
	// runCtx is canceled when Close runs out of time, ending posts in flight.
	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
}

// StartWorkers starts cfg.Workers goroutines delivering from q to dest.
func StartWorkers(q *Queue, dest Destination, cfg WorkerConfig, deps WorkerDeps) (*Workers, error) {
	cfg.setDefaults()
	if limit := dest.MaxPostInputs(); cfg.MaxBatchInputs <= 0 || cfg.MaxBatchInputs > limit {
		cfg.MaxBatchInputs = limit
	}
	meter := meterOrNoop(deps.Meter)
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	captures, err := telemetry.NewCaptures(meter)
	if err != nil {
		return nil, fmt.Errorf("workers: register metrics: %w", err)
	}
	metrics, err := newWorkerMetrics(meter)
	if err != nil {
		return nil, fmt.Errorf("workers: register metrics: %w", err)
	}
	inputs, err := telemetry.NewCollectorInputs(meter)
	if err != nil {
		return nil, fmt.Errorf("workers: register metrics: %w", err)
	}
	depth, err := registerQueueDepth(meter, q)
	if err != nil {
		return nil, fmt.Errorf("workers: register queue depth: %w", err)
	}
	breakers := newBreakers(cfg.breakerConfig())
	breakerM, err := newBreakerMetrics(meter, breakers)
	if err != nil {
		_ = depth.Unregister()
		return nil, fmt.Errorf("workers: register breaker metrics: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	w := &Workers{
		q:         q,
		dest:      dest,
		cfg:       cfg,
		captures:  captures,
		metrics:   metrics,
		depth:     depth,
		breakers:  breakers,
		breakerM:  breakerM,
		logger:    logger.With("component", "ingest_worker"),
		workflows: deps.Workflows,
		ledger:    deps.Ledger,
		previews:  deps.Previews,
		inputs:    inputs,
		stop:      make(chan struct{}),
		runCtx:    runCtx,
		cancelRun: cancel,
	}
	for range cfg.Workers {
		w.wg.Add(1)
		go w.run()
	}
	if w.ledger != nil {
		w.wg.Add(1)
		go w.pruneAdmissions()
	}
	return w, nil
}

// Close stops fetching and waits for the batches in flight. When ctx ends
// first, posts in flight are canceled, their records are returned to the
// stream for another delivery, and ctx's error is returned.
func (w *Workers) Close(ctx context.Context) error {
	w.closeOnce.Do(func() { close(w.stop) })

	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()

	var err error
	select {
	case <-done:
	case <-ctx.Done():
		w.cancelRun()
		<-done
		err = fmt.Errorf("workers: close: %w", ctx.Err())
	}
	w.cancelRun()

	// Acks are sent without waiting for a reply; the flush makes sure they
	// left this process before the caller closes the connection.
	if ferr := w.q.nc.FlushTimeout(5 * time.Second); ferr != nil && err == nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		err = fmt.Errorf("workers: flush acknowledgements: %w", ferr)
	}
	if uerr := w.depth.Unregister(); uerr != nil && err == nil {
		err = fmt.Errorf("workers: unregister queue depth: %w", uerr)
	}
	if uerr := w.breakerM.state.Unregister(); uerr != nil && err == nil {
		err = fmt.Errorf("workers: unregister breaker state: %w", uerr)
	}
	return err
}

func (w *Workers) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

func (w *Workers) run() {
	defer w.wg.Done()

	wait := w.cfg.FetchWait
	for !w.stopping() {
		msgs, full, err := w.fetch(wait)
		if err != nil {
			w.logger.Warn("fetch from capture stream failed", "stream", w.q.StreamName(), "error", err)
			w.pause(w.cfg.FetchWait)
		}

		var deferredPause time.Duration
		if len(msgs) > 0 {
			deferredPause = w.process(w.runCtx, msgs)
		}
		// Only a backlog that is being delivered shortens the next wait.
		// Records deferred by open breakers come back as their delays
		// end, and a longer wait gathers them into fewer fetches.
		wait = w.cfg.FetchWait
		if full && deferredPause == 0 {
			wait = w.cfg.BacklogFetchWait
		}
		if deferredPause > 0 {
			w.pause(deferredPause)
		}
	}
}

// fetch returns up to FetchBatch records and MaxFetchBytes bytes, and
// whether the fetch was full: it reached one of the two limits. Each of its
// two pulls waits at most wait.
//
// The first record is pulled without a byte limit and the rest within what
// remains of it. JetStream ends a pull whose next record alone is over
// the limit with no record, and nats.go reports that as an empty batch, not
// an error. A record larger than MaxFetchBytes therefore comes only through
// an unlimited pull, and it must not stall the queue.
func (w *Workers) fetch(wait time.Duration) ([]jetstream.Msg, bool, error) {
	msgs, err := w.fetchBatch(1, jetstream.FetchMaxWait(wait))
	if err != nil || len(msgs) == 0 {
		return msgs, false, err
	}
	size, largest := len(msgs[0].Data()), len(msgs[0].Data())
	if w.cfg.FetchBatch == 1 || size >= w.cfg.MaxFetchBytes {
		return msgs, true, nil
	}

	rest, err := w.fetchBatch(w.cfg.FetchBatch-1, jetstream.FetchMaxWait(wait), jetstream.FetchMaxBytes(w.cfg.MaxFetchBytes-size))
	for _, msg := range rest {
		size += len(msg.Data())
		largest = max(largest, len(msg.Data()))
	}
	msgs = append(msgs, rest...)

	// A batch that ended within one record of the byte limit ended there.
	full := len(msgs) == w.cfg.FetchBatch || size+largest > w.cfg.MaxFetchBytes
	return msgs, full, err
}

func (w *Workers) fetchBatch(n int, opts ...jetstream.FetchOpt) ([]jetstream.Msg, error) {
	batch, err := w.q.consumer.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return msgs, err
	}
	return msgs, nil
}

func (w *Workers) pause(d time.Duration) {
	select {
	case <-time.After(d):
	case <-w.stop:
	}
}

// process groups a fetched batch by destination and collector, screens each
// group (post-queue workflow, admission, preview), posts what remains in
// chunks of at most MaxBatchInputs, and settles every record.
//
// It returns how long to wait before the next fetch: 0, unless open
// breakers deferred every record of the batch. Fetching again at once would
// only read more of the backlog from disk to defer it again. JetStream keeps
// the blocks it read in memory for a while, so a broken destination with a
// large backlog would grow the process.
func (w *Workers) process(ctx context.Context, msgs []jetstream.Msg) time.Duration {
	stopKeepalive := w.keepalive(msgs)
	defer stopKeepalive()

	groups := map[DestinationRef][]item{}
	var order []DestinationRef
	var deliveries []*delivery
	records := 0
	for _, msg := range msgs {
		items := w.decode(ctx, msg)
		if len(items) > 0 {
			deliveries = append(deliveries, items[0].d)
		}
		for _, it := range items {
			ref := DestinationRef{UserID: it.rec.GetUserId(), AppID: it.rec.GetAppId(), CollectorID: it.rec.GetCollectorId()}
			if _, seen := groups[ref]; !seen {
				order = append(order, ref)
			}
			groups[ref] = append(groups[ref], it)
			records++
		}
	}

	deferred, wait := 0, w.cfg.MaxDeferredPause
	for _, ref := range order {
		items := w.screen(ctx, ref, groups[ref])
		for len(items) > 0 {
			n := w.chunk(items)
			if openFor, ok := w.deliver(ctx, ref, items[:n]); !ok {
				deferred += n
				wait = min(wait, openFor)
			}
			items = items[n:]
		}
	}
	w.returnUnsettled(deliveries)

	if deferred == 0 || deferred < records {
		return 0
	}
	return wait
}

// returnUnsettled returns to the stream, at once, a message with a record
// that no stage settled. That is a bug, and without this the message would
// wait for the consumer's ack wait.
func (w *Workers) returnUnsettled(deliveries []*delivery) {
	for _, d := range deliveries {
		if d.pending > 0 {
			w.logger.Error("records left unsettled; the message is returned to the stream",
				"records", d.records, "unsettled", d.pending)
			d.pending = 0
			_ = d.msg.Nak()
		}
	}
}

// decode returns the records of a fetched message. A message that is to
// wait (HeaderNotBefore) is returned to the stream and yields none. A
// message whose data cannot be split into records is dead-lettered whole,
// and a record that cannot be decoded is dead-lettered alone.
func (w *Workers) decode(ctx context.Context, msg jetstream.Msg) []item {
	if w.waitNotBefore(msg) {
		return nil
	}

	parts, err := messageRecords(msg.Headers(), msg.Data())
	if err != nil {
		w.fail(ctx, item{d: newDelivery(msg, 1), data: msg.Data()}, ReasonDecodeFailed, err)
		return nil
	}

	d := newDelivery(msg, len(parts))
	items := make([]item, 0, len(parts))
	for i, data := range parts {
		rec := &capturepb.Record{}
		if err := proto.Unmarshal(data, rec); err != nil {
			w.fail(ctx, item{d: d, data: data, index: i}, ReasonDecodeFailed, err)
			continue
		}
		items = append(items, item{d: d, rec: rec, data: data, index: i})
	}
	return items
}

// chunk returns how many of items the next post takes: at most
// MaxBatchInputs records and MaxBatchBytes bytes, and at least one record.
func (w *Workers) chunk(items []item) int {
	size := 0
	for i, it := range items {
		size += len(it.data)
		if i == w.cfg.MaxBatchInputs || (i > 0 && size > w.cfg.MaxBatchBytes) {
			return i
		}
	}
	return len(items)
}

// keepalive sends in-progress acknowledgements for the fetched records, so
// that JetStream does not deliver a batch waiting behind slow posts a second
// time. Records already settled ignore them.
func (w *Workers) keepalive(msgs []jetstream.Msg) (stop func()) {
	interval := w.q.cfg.AckWait / 2
	if len(w.q.cfg.BackOff) > 0 {
		interval = w.q.cfg.BackOff[0] / 2
	}
	if interval <= 0 {
		interval = time.Second
	}
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				// nats.go sends none for a message already acked or
				// returned: JetStream would restart its ack wait, even
				// after a nak with a delay, and cut the delay short.
				for _, msg := range msgs {
					_ = msg.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// deliver posts one chunk of records for one destination, unless the
// destination's circuit breaker defers them, and settles every record.
//
// It returns false, with the time until the breaker half-opens, when the
// breaker deferred the records without a post.
func (w *Workers) deliver(ctx context.Context, ref DestinationRef, items []item) (time.Duration, bool) {
	adm := w.breakers.admit(ref)
	if !adm.post {
		w.deferAll(ctx, items, adm.wait)
		return adm.wait, false
	}

	recs := make([]*capturepb.Record, len(items))
	for i, it := range items {
		recs[i] = it.rec
	}

	postCtx, cancel := context.WithTimeout(ctx, w.cfg.PostTimeout)
	results := w.dest.Post(postCtx, ref, recs)
	cancel()
	w.metrics.batchSize.Record(ctx, int64(len(recs)))

	if len(results) != len(recs) {
		err := fmt.Errorf("destination returned %d results for %d records", len(results), len(recs))
		w.logger.Error("destination post failed", "user_id", ref.UserID, "app_id", ref.AppID, "error", err)
		results = fill(len(recs), Result{Outcome: Retryable, Err: err})
	}

	openFor := w.recordBreaker(ctx, ref, adm, results)

	var retried, delivered int
	var lastRetry Result
	// One delay for the whole post, for the reason deferAll gives.
	comeBack := jitterAbove(openFor)
	for i, it := range items {
		r := results[i]
		if r.Outcome == Delivered || r.Outcome == Duplicate {
			delivered++
		}
		if r.Outcome == Retryable || r.Outcome == 0 {
			retried++
			lastRetry = r
			if openFor > 0 {
				// Come back once the breaker half-opens, spread over a
				// quarter of the interval so the trial is not a stampede.
				r.RetryAfter = max(r.RetryAfter, comeBack)
			}
		}
		w.settle(ctx, it, r)
	}
	w.inputs.Add(ctx, ref.UserID, ref.AppID, ref.CollectorID, telemetry.OutcomeDelivered, "", "", delivered)
	if retried > 0 {
		w.logger.Warn("delivery failed, will retry",
			"user_id", ref.UserID, "app_id", ref.AppID, "collector_id", ref.CollectorID,
			"records", retried, "retry_after", lastRetry.RetryAfter, "error", lastRetry.Err)
	}
	return 0, true
}

// recordBreaker feeds a post's results to the destination's breaker. It
// returns the open interval when the breaker opened, or 0.
func (w *Workers) recordBreaker(ctx context.Context, ref DestinationRef, adm admission, results []Result) time.Duration {
	failed := true
	var retryAfter time.Duration
	for _, r := range results {
		if r.Outcome != Retryable && r.Outcome != 0 {
			failed = false
		}
		retryAfter = max(retryAfter, r.RetryAfter)
	}
	retryAfter = min(retryAfter, w.cfg.MaxRetryAfter)
	// A destination that asked for a pause (a 429 or 503 with Retry-After,
	// also on part of a split batch) gets it for all its records.
	if retryAfter > 0 {
		failed = true
	}

	tr := w.breakers.record(ref, adm, failed, retryAfter)
	switch {
	case tr.opened:
		w.breakerM.opens.Add(ctx, 1)
		w.logger.Warn("destination circuit breaker opened; its records wait without posts",
			"user_id", ref.UserID, "app_id", ref.AppID, "collector_id", ref.CollectorID,
			"open_for", tr.openFor, "trial", adm.trial)
		return tr.openFor
	case tr.closed:
		w.logger.Info("destination circuit breaker closed: the destination accepts posts again",
			"user_id", ref.UserID, "app_id", ref.AppID, "collector_id", ref.CollectorID)
	}
	return 0
}

// deferAll returns records to the stream without posting them, to be
// delivered again after wait (jittered up by a quarter). The records of one
// call share one delay, so they come back together and in stream order:
// JetStream then reads the blocks that hold them once, where a delay per
// record would scatter the reads over the whole backlog.
func (w *Workers) deferAll(ctx context.Context, items []item, wait time.Duration) {
	delay := jitterAbove(wait)
	for _, it := range items {
		w.retry(ctx, it, Result{Outcome: Retryable, RetryAfter: delay, Err: errBreakerOpen})
	}
}

// errBreakerOpen is the cause of records deferred by an open breaker.
var errBreakerOpen = errors.New("destination circuit breaker is open")

// jitterAbove returns d plus a random part of up to a quarter of d.
func jitterAbove(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + rand.N(d/4+1)
}

func (w *Workers) settle(ctx context.Context, it item, r Result) {
	switch r.Outcome {
	case Delivered, Duplicate:
		result := attemptDelivered
		if r.Outcome == Duplicate {
			result = attemptDuplicate
		}
		w.metrics.attempt(ctx, result, 1)
		w.captures.Add(ctx, telemetry.OutcomeDelivered, "", 1)
		w.done(ctx, it)
	case Permanent:
		w.metrics.attempt(ctx, attemptPermanent, 1)
		w.fail(ctx, it, r.Reason, r.Err)
	default:
		w.metrics.attempt(ctx, attemptRetryable, 1)
		w.retry(ctx, it, r)
	}
}

// retry returns a record to the stream for a later delivery, or
// dead-letters it at its last allowed delivery. The dead letter's reason is
// r.Reason when set (the screening stage names what kept failing), else
// ReasonMaxDeliver.
func (w *Workers) retry(ctx context.Context, it item, r Result) {
	attempts := it.d.attempts
	if maxDeliver := w.q.cfg.MaxDeliver; maxDeliver > 0 && attempts >= uint64(maxDeliver) {
		reason := ReasonMaxDeliver
		if r.Reason != "" {
			reason = r.Reason
		}
		w.fail(ctx, it, reason, r.Err)
		return
	}

	// A worker shutting down hands its records back at once, so the next
	// worker need not wait for the retry delay.
	if ctx.Err() != nil {
		w.deliverAgain(ctx, it, 0, true)
		return
	}
	w.deliverAgain(ctx, it, w.retryDelay(attempts, r.RetryAfter), false)
}

// retryDelay returns the destination's Retry-After, capped at
// MaxRetryAfter, or else RetryBase doubled per earlier delivery, capped at
// RetryMax and jittered to between half and all of it.
func (w *Workers) retryDelay(attempts uint64, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, w.cfg.MaxRetryAfter)
	}
	delay := w.cfg.RetryMax
	if shift := attempts - 1; attempts > 0 && shift < 32 {
		delay = min(w.cfg.RetryBase<<shift, w.cfg.RetryMax)
	}
	half := delay / 2
	return half + rand.N(half+1)
}

// fail publishes a record to the dead-letter stream with its reason and
// attempt count, and settles it. When the dead-letter publish fails, the
// record stays in the capture stream.
//
// A message that cannot be split into records is dead-lettered whole, with
// its HeaderRecords, so that a replay restores it as it was.
func (w *Workers) fail(ctx context.Context, it item, reason string, cause error) {
	attempts := it.d.attempts
	recordID := it.rec.GetId()
	if recordID == "" {
		// Each record of a packed message needs an ID of its own, or the
		// dead-letter stream would drop the second as a duplicate.
		if meta, err := it.d.msg.Metadata(); err == nil {
			recordID = "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
			if it.d.records > 1 {
				recordID += "." + strconv.Itoa(it.index)
			}
		}
	}

	dead := nats.NewMsg(w.q.DeadLetterSubject(it.rec.GetUserId(), it.rec.GetAppId()))
	dead.Data = it.data
	if it.rec == nil {
		// The record's destination is unknown, so its dead letter keeps the
		// subject of the message it came in.
		dead.Subject = w.q.deadLetterSubjectOf(it.d.msg.Subject())
		if n := it.d.msg.Headers().Get(HeaderRecords); n != "" && len(it.data) == len(it.d.msg.Data()) {
			dead.Header.Set(HeaderRecords, n)
		}
	}
	dead.Header.Set(HeaderReason, reason)
	dead.Header.Set(HeaderAttempts, strconv.FormatUint(attempts, 10))
	dead.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))

	// The dead letter must be stored even when shutdown canceled ctx.
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := w.q.js.PublishMsg(pubCtx, dead, jetstream.WithMsgID(recordID)); err != nil {
		w.logger.Error("dead-letter publish failed; the record stays queued",
			"record_id", recordID, "reason", reason, "error", err)
		w.deliverAgain(ctx, it, w.retryDelay(attempts, 0), false)
		return
	}

	w.captures.Add(ctx, telemetry.OutcomeFailed, reason, 1)
	w.logger.Warn("record dead-lettered",
		"record_id", recordID, "user_id", it.rec.GetUserId(), "app_id", it.rec.GetAppId(),
		"reason", reason, "attempts", attempts, "error", cause)
	w.deadLettered(ctx, it, reason)
}
