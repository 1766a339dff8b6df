package ingest

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
)

const testKey = "post-inputs-key-0123456789"

func TestWorkers_DeliversEachRecordOnce(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())

	var recs []*capturepb.Record
	for _, app := range []string{"a1", "a2", "a3"} {
		recs = append(recs, newRecords("u1", app, "c1", 200)...)
	}
	env.publishAll(t, recs)
	waitFor(t, "600 inputs stored", func() bool { return store.count() == len(recs) })
	closeWithin(t, "workers", w.Close)

	stored, _ := store.snapshot()
	for _, rec := range recs {
		if got := stored[rec.GetId()]; got != 1 {
			t.Errorf("record %s stored %d times, want 1", rec.GetId(), got)
		}
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got != int64(len(recs)) {
		t.Errorf("delivered = %d, want %d", got, len(recs))
	}
	if got := env.metrics.captures(t, telemetry.OutcomeFailed, ""); got != 0 {
		t.Errorf("failed = %d, want 0", got)
	}
	// Acknowledged records leave the work-queue stream.
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
}

func TestWorkers_BatchesAtMostTheDestinationTakes(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	const n = 300
	env.publishAll(t, newRecords("u1", "a1", "c1", n))
	store := newMemInputs()
	// One worker fetches everything queued; two would share the records.
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	// A larger setting than the destination takes is lowered to its limit.
	cfg.MaxBatchInputs = 1000
	w := env.workers(t, limitedDestination{Destination: NewLocalDestination(store), limit: MaxInputsPerPost}, cfg)
	waitFor(t, "all inputs stored", func() bool { return store.count() == n })
	closeWithin(t, "workers", w.Close)

	_, batches := store.snapshot()
	largest, total := 0, 0
	for _, b := range batches {
		largest = max(largest, b)
		total += b
	}
	if largest > MaxInputsPerPost {
		t.Errorf("largest batch = %d, want at most %d", largest, MaxInputsPerPost)
	}
	if largest < 2 {
		t.Errorf("largest batch = %d: records queued together should be posted together", largest)
	}
	if total != n {
		t.Errorf("inputs posted = %d, want %d (no record posted twice)", total, n)
	}
	if got := env.metrics.sum(t, "collectord_delivery_batch_size"); got != int64(len(batches)) {
		t.Errorf("batch size histogram counted %d posts, want %d", got, len(batches))
	}
}

func TestWorkers_LocalDuplicateIsDelivered(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	store := newMemInputs()
	rec := newRecord("u1", "a1", "c1", 1)
	store.InsertInputs(context.Background(), "u1", "a1", []*clarifaipb.Input{InputFromRecord(rec)})

	env.publishAll(t, []*capturepb.Record{rec})
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "record delivered", func() bool { return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 1 })
	closeWithin(t, "workers", w.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeFailed, ""); got != 0 {
		t.Errorf("failed = %d, want 0: a duplicate ID of our own record counts as delivered", got)
	}
	if got := env.metrics.sum(t, "collectord_delivery_attempts_total", attribute.String("result", "duplicate")); got != 1 {
		t.Errorf("duplicate attempts = %d, want 1", got)
	}
}

func TestWorkers_LocalMissingAppDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	store := newMemInputs()
	store.apps = map[string]bool{"u1/a1": true}
	env.publishAll(t, []*capturepb.Record{newRecord("u1", "a1", "c1", 1), newRecord("u1", "gone", "c1", 2)})
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "one delivered, one failed", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 1 &&
			env.metrics.captures(t, telemetry.OutcomeFailed, ReasonAppNotFound) == 1
	})
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != 1 || dead[0].rec.GetAppId() != "gone" || dead[0].reason != ReasonAppNotFound {
		t.Fatalf("dead letters = %+v, want the record of app gone with reason %s", dead, ReasonAppNotFound)
	}
}

func TestWorkers_RetriesServerErrors(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.script = func(n int) (int, http.Header, bool) {
		return http.StatusServiceUnavailable, nil, n < 2
	}
	rec := newRecord("u1", "a1", "c1", 1)
	env.publishAll(t, []*capturepb.Record{rec})
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	waitFor(t, "record stored", func() bool { return fake.has("u1", "a1", rec.GetId()) })
	closeWithin(t, "workers", w.Close)

	reqs := fake.requestsFor(rec.GetId())
	if len(reqs) != 3 {
		t.Errorf("requests = %d, want 3 (two 503s, then success)", len(reqs))
	}
	if got := env.metrics.sum(t, "collectord_delivery_attempts_total", attribute.String("result", "retryable")); got != 2 {
		t.Errorf("retryable attempts = %d, want 2", got)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got != 1 {
		t.Errorf("delivered = %d, want 1", got)
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

func TestWorkers_HonoursRetryAfter(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.script = func(n int) (int, http.Header, bool) {
		return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, n == 0
	}
	rec := newRecord("u1", "a1", "c1", 1)
	env.publishAll(t, []*capturepb.Record{rec})
	// RetryBase of 10ms would retry long before the second asked for.
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	waitFor(t, "record stored", func() bool { return fake.has("u1", "a1", rec.GetId()) })
	closeWithin(t, "workers", w.Close)

	reqs := fake.requestsFor(rec.GetId())
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2 (429, then success)", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Errorf("retry came %s after the 429, want at least the Retry-After of 1s", gap)
	}
}

func TestWorkers_BadRequestDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.rejectText = "malformed"
	rec := newRecord("u1", "a1", "c1", 1)
	rec.Input.Data.Text.Raw = "malformed"
	env.publishAll(t, []*capturepb.Record{rec})
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	waitFor(t, "record failed", func() bool { return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonBadRequest) == 1 })
	closeWithin(t, "workers", w.Close)

	if got := len(fake.requestsFor(rec.GetId())); got != 1 {
		t.Errorf("requests = %d, want 1: a 400 is not retried", got)
	}
	dead := env.deadLetters(t)
	if len(dead) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dead))
	}
	if dead[0].rec.GetId() != rec.GetId() || dead[0].reason != ReasonBadRequest || dead[0].attempts != "1" {
		t.Errorf("dead letter = id %s reason %q attempts %q, want id %s reason %q attempts 1",
			dead[0].rec.GetId(), dead[0].reason, dead[0].attempts, rec.GetId(), ReasonBadRequest)
	}
	waitFor(t, "capture stream empty: the dead-lettered record is terminated", func() bool {
		return env.streamMsgs(t, env.queue.StreamName()) == 0
	})
}

func TestWorkers_SplitIsolatesBadRecord(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.rejectText = "malformed"
	recs := newRecords("u1", "a1", "c1", 10)
	recs[6].Input.Data.Text.Raw = "malformed"
	env.publishAll(t, recs)
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	waitFor(t, "9 delivered and 1 failed", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 9 &&
			env.metrics.captures(t, telemetry.OutcomeFailed, "") == 1
	})
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != 1 || dead[0].rec.GetId() != recs[6].GetId() || dead[0].reason != ReasonBadRequest {
		t.Fatalf("dead letters = %+v, want only %s with reason %s", dead, recs[6].GetId(), ReasonBadRequest)
	}
	if got := fake.stored(); got != 9 {
		t.Errorf("destination stored %d inputs, want 9", got)
	}
}

func TestWorkers_SplitsTooLargeBatch(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.maxBodyBytes = 100 << 10
	recs := newRecords("u1", "a1", "c1", 10)
	big := recs[3]
	big.Input.Data.Text.Raw = strings.Repeat("x", 200<<10)
	env.publishAll(t, recs)
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), cfg)
	waitFor(t, "9 delivered and 1 failed", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 9 &&
			env.metrics.captures(t, telemetry.OutcomeFailed, ReasonTooLarge) == 1
	})
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != 1 || dead[0].rec.GetId() != big.GetId() || dead[0].reason != ReasonTooLarge {
		t.Fatalf("dead letters = %+v, want only %s with reason %s", dead, big.GetId(), ReasonTooLarge)
	}
	for _, rec := range recs {
		if rec != big && !fake.has("u1", "a1", rec.GetId()) {
			t.Errorf("record %s not stored", rec.GetId())
		}
	}
	// The first request carried the whole batch: splitting is what isolated R.
	if first := fake.log()[0]; len(first.ids) != len(recs) || first.status != http.StatusRequestEntityTooLarge {
		t.Errorf("first request carried %d inputs with status %d, want %d inputs and 413", len(first.ids), first.status, len(recs))
	}
}

func TestWorkers_RemoteDuplicateIsDelivered(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	mixed := newRecords("u1", "mixed", "c1", 5)
	allDup := newRecords("u1", "alldup", "c1", 3)
	fake.preload("u1", "mixed", mixed[0].GetId(), mixed[2].GetId())
	for _, rec := range allDup {
		fake.preload("u1", "alldup", rec.GetId())
	}
	keys := staticKeys{"u1/mixed/c1": testKey, "u1/alldup/c1": testKey}

	env.publishAll(t, append(append([]*capturepb.Record(nil), mixed...), allDup...))
	w := env.workers(t, env.remote(t, fake, keys), fastWorkerConfig())
	waitFor(t, "all 8 delivered", func() bool { return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 8 })
	closeWithin(t, "workers", w.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeFailed, ""); got != 0 {
		t.Errorf("failed = %d, want 0", got)
	}
	if got := env.metrics.sum(t, "collectord_delivery_attempts_total", attribute.String("result", "duplicate")); got != 5 {
		t.Errorf("duplicate attempts = %d, want 5 (2 in the mixed batch, 3 in the all-duplicate one)", got)
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

func TestWorkers_UnauthorizedDeadLettersWithoutKey(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	const wrongKey = "wrong-key-secret-value"
	rec := newRecord("u1", "a1", "c1", 1)
	env.publishAll(t, []*capturepb.Record{rec})
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": wrongKey}), fastWorkerConfig())
	waitFor(t, "record failed", func() bool { return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonUnauthorized) == 1 })
	closeWithin(t, "workers", w.Close)

	if got := fake.log()[0].auth; got != "Key "+wrongKey {
		t.Errorf("Authorization = %q, want the collector's key", got)
	}
	dead := env.deadLetters(t)
	if len(dead) != 1 {
		t.Fatalf("dead letters = %d, want 1", len(dead))
	}
	if strings.Contains(dead[0].rec.String(), wrongKey) {
		t.Error("dead-lettered record contains the post-inputs key")
	}
}

func TestWorkers_MissingCollectorDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	env.publishAll(t, []*capturepb.Record{newRecord("u1", "a1", "deleted", 1)})
	w := env.workers(t, env.remote(t, fake, staticKeys{}), fastWorkerConfig())
	waitFor(t, "record failed", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonCollectorNotFound) == 1
	})
	closeWithin(t, "workers", w.Close)

	if got := len(fake.log()); got != 0 {
		t.Errorf("requests = %d, want 0: no key, no post", got)
	}
}

func TestWorkers_MaxDeliverDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 3})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	fake.script = func(int) (int, http.Header, bool) { return http.StatusBadGateway, nil, true }
	rec := newRecord("u1", "a1", "c1", 1)
	env.publishAll(t, []*capturepb.Record{rec})
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	waitFor(t, "record failed", func() bool { return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonMaxDeliver) == 1 })
	closeWithin(t, "workers", w.Close)

	if got := len(fake.requestsFor(rec.GetId())); got != 3 {
		t.Errorf("requests = %d, want 3 (MaxDeliver)", got)
	}
	dead := env.deadLetters(t)
	if len(dead) != 1 || dead[0].attempts != "3" {
		t.Fatalf("dead letters = %+v, want one with 3 attempts", dead)
	}
}

func TestWorkers_RestartDeliversQueued(t *testing.T) {
	dir := t.TempDir()
	recs := newRecords("u1", "a1", "c1", 200)

	first := openEnv(t, dir, QueueConfig{})
	first.publishAll(t, recs)
	first.close(t)

	second := openEnv(t, dir, QueueConfig{})
	defer second.close(t)
	if got := second.streamRecords(t, second.queue.StreamName()); got != uint64(len(recs)) {
		t.Fatalf("after restart the stream holds %d records, want %d", got, len(recs))
	}
	store := newMemInputs()
	w := second.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "all records delivered after restart", func() bool { return store.count() == len(recs) })
	closeWithin(t, "workers", w.Close)
}

func TestWorkers_QueueDepthGauge(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	// The destination requests an hour's pause, so the records stay pending.
	fake.script = func(int) (int, http.Header, bool) {
		return http.StatusTooManyRequests, http.Header{"Retry-After": {"3600"}}, true
	}
	env.publishEach(t, newRecords("u1", "a1", "c1", 5))
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), fastWorkerConfig())
	// A fetch may hold only some of the records: the rest are then deferred
	// by the open breaker without an attempt of their own.
	waitFor(t, "a retryable attempt", func() bool {
		return env.metrics.sum(t, "collectord_delivery_attempts_total", attribute.String("result", "retryable")) >= 1
	})
	waitFor(t, "queue depth 5: every record waiting for its retry", func() bool {
		return env.metrics.sum(t, "collectord_queue_depth") == 5
	})
	closeWithin(t, "workers", w.Close)
}

// TestWorkers_BacklogEndDoesNotWaitFetchWait checks the end of a backlog:
// the fetch after a full one returns the few records left after
// BacklogFetchWait. Waiting the whole FetchWait for a batch that will not
// fill would hold them for seconds.
func TestWorkers_BacklogEndDoesNotWaitFetchWait(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	env.publishEach(t, newRecords("u1", "a1", "c1", 15))
	store := newMemInputs()
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	cfg.FetchBatch = 10
	cfg.FetchWait = 4 * time.Second
	began := time.Now()
	w := env.workers(t, NewLocalDestination(store), cfg)
	defer closeWithin(t, "workers", w.Close)

	waitFor(t, "all inputs stored", func() bool { return store.count() == 15 })
	if took := time.Since(began); took >= cfg.FetchWait/2 {
		t.Errorf("the last 5 records took %s, want well under FetchWait %s", took, cfg.FetchWait)
	}
	_, batches := store.snapshot()
	if len(batches) != 2 || batches[0] != 10 || batches[1] != 5 {
		t.Errorf("batches = %v, want one full fetch of 10 and one of 5", batches)
	}
}

// TestWorkers_RecordOverFetchBytesDelivered queues a record larger than
// MaxFetchBytes among small ones. A byte-limited pull never returns it, so
// without a pull of its own it would stall every record behind it.
func TestWorkers_RecordOverFetchBytesDelivered(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 20)
	recs[5].Input.Data.Text.Raw = strings.Repeat("b", 200<<10)
	env.publishAll(t, recs)
	store := newMemInputs()
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	cfg.MaxFetchBytes = 64 << 10
	w := env.workers(t, NewLocalDestination(store), cfg)
	defer closeWithin(t, "workers", w.Close)

	waitFor(t, "all 20 inputs stored", func() bool { return store.count() == 20 })
	in, err := store.GetInput(context.Background(), "u1", "a1", recs[5].GetId())
	if err != nil {
		t.Fatalf("GetInput of the large record: %v", err)
	}
	if got := len(in.GetData().GetText().GetRaw()); got != 200<<10 {
		t.Errorf("large record stored with %d bytes of text, want %d", got, 200<<10)
	}
}

// limitedDestination takes at most limit records per post, as a remote API
// does.
type limitedDestination struct {
	Destination
	limit int
}

func (d limitedDestination) MaxPostInputs() int { return d.limit }

// gatedDestination holds every post until the gate opens.
type gatedDestination struct {
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
	inner   Destination
}

func (g *gatedDestination) MaxPostInputs() int { return g.inner.MaxPostInputs() }

func (g *gatedDestination) Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result {
	g.once.Do(func() { close(g.entered) })
	<-g.gate
	return g.inner.Post(ctx, dest, recs)
}

func TestWorkers_CloseFinishesInFlight(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	store := newMemInputs()
	dest := &gatedDestination{gate: make(chan struct{}), entered: make(chan struct{}), inner: NewLocalDestination(store)}
	recs := newRecords("u1", "a1", "c1", 50)
	env.publishAll(t, recs)
	w := env.workers(t, dest, WorkerConfig{Workers: 1, FetchWait: 50 * time.Millisecond})
	<-dest.entered

	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	close(dest.gate)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := store.count(); got != len(recs) {
		t.Errorf("stored %d inputs when Close returned, want %d: the batch in flight must finish", got, len(recs))
	}
}

func TestWorkers_CloseDeadlineReturnsRecords(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	fake := newFakeClarifai(t, testKey)
	release := make(chan struct{})
	defer close(release)
	hung := &gatedDestination{gate: release, entered: make(chan struct{}), inner: env.remote(t, fake, staticKeys{"u1/a1/c1": testKey})}
	env.publishAll(t, newRecords("u1", "a1", "c1", 3))
	w := env.workers(t, cancelAware{hung}, WorkerConfig{Workers: 1, FetchWait: 50 * time.Millisecond})
	<-hung.entered

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); err == nil {
		t.Error("Close with a hung post returned nil, want the deadline error")
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, "") + env.metrics.captures(t, telemetry.OutcomeFailed, ""); got != 0 {
		t.Errorf("settled %d records, want 0", got)
	}
	// The records went back to the stream for the next worker.
	if got := env.streamRecords(t, env.queue.StreamName()); got != 3 {
		t.Errorf("stream holds %d records, want 3", got)
	}
}

// cancelAware returns Retryable as soon as ctx ends, like a real HTTP post.
type cancelAware struct{ inner *gatedDestination }

func (c cancelAware) MaxPostInputs() int { return c.inner.MaxPostInputs() }

func (c cancelAware) Post(ctx context.Context, dest DestinationRef, recs []*capturepb.Record) []Result {
	done := make(chan []Result, 1)
	go func() { done <- c.inner.Post(ctx, dest, recs) }()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		return fill(len(recs), Result{Outcome: Retryable, Err: ctx.Err()})
	}
}

func TestWorkers_DecodeFailureDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	garbage := []byte{0xff, 0xff, 0xff, 0xff}
	if _, err := env.queue.JetStream().Publish(context.Background(), env.queue.Subject("u1", "a1"), garbage); err != nil {
		t.Fatalf("publish garbage: %v", err)
	}
	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "garbage failed", func() bool { return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonDecodeFailed) == 1 })
	closeWithin(t, "workers", w.Close)

	n := env.streamMsgs(t, env.queue.DeadLetterStreamName())
	if n != 1 {
		t.Fatalf("dead letters = %d, want 1", n)
	}
	s, _ := env.queue.JetStream().Stream(context.Background(), env.queue.DeadLetterStreamName())
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatalf("get dead letter: %v", err)
	}
	if !bytes.Equal(msg.Data, garbage) {
		t.Errorf("dead letter data = %x, want the original bytes %x", msg.Data, garbage)
	}
}
