package ingest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/collectord/collectord/internal/telemetry"
)

func TestPublisher_CloseFlushes(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	const n = 1000
	p := env.publisher(t, PublisherConfig{HandoffSize: n})
	for _, rec := range newRecords("u1", "a1", "c1", n) {
		if !p.Offer(rec) {
			t.Fatalf("Offer(%s) = false with room in the hand-off", rec.GetId())
		}
	}
	closeWithin(t, "publisher", p.Close)

	if got := env.streamRecords(t, env.queue.StreamName()); got != n {
		t.Errorf("stream holds %d records after Close, want %d", got, n)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeEnqueued, ""); got != n {
		t.Errorf("enqueued = %d, want %d", got, n)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDropped, ""); got != 0 {
		t.Errorf("dropped = %d, want 0", got)
	}
}

func TestPublisher_DeduplicatesRecordID(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	rec := newRecord("u1", "a1", "c1", 1)
	env.publishEach(t, newRecords("u1", "a1", "c1", 2))
	// A second publisher, as after a restart, offers the first record again.
	p := env.publisher(t, PublisherConfig{})
	if !p.Offer(rec) {
		t.Fatal("Offer = false")
	}
	closeWithin(t, "publisher", p.Close)

	if got := env.streamRecords(t, env.queue.StreamName()); got != 2 {
		t.Errorf("stream holds %d records, want 2: the republished ID must be deduplicated", got)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeEnqueued, ""); got != 2 {
		t.Errorf("enqueued = %d, want 2: a duplicate is not enqueued again", got)
	}
}

func TestPublisher_DeduplicatesPackedMessage(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 5)
	env.publishAll(t, recs)
	if got := env.streamMsgs(t, env.queue.StreamName()); got != 1 {
		t.Fatalf("stream holds %d messages, want the 5 records packed in 1", got)
	}
	// The same records offered again pack into a message with the same ID.
	env.publishAll(t, recs)

	if got := env.streamRecords(t, env.queue.StreamName()); got != 5 {
		t.Errorf("stream holds %d records, want 5: the republished message must be deduplicated", got)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeEnqueued, ""); got != 5 {
		t.Errorf("enqueued = %d, want 5: a duplicate is not enqueued again", got)
	}
}

func TestPublisher_HandoffFullDrops(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	// Not started: nothing drains the hand-off while the test fills it.
	p, err := newPublisher(env.queue, PublisherConfig{HandoffSize: 4},
		PublisherDeps{Meter: env.metrics.meterProvider().Meter("test"), Logger: env.logger})
	if err != nil {
		t.Fatalf("newPublisher: %v", err)
	}
	accepted := 0
	for _, rec := range newRecords("u1", "a1", "c1", 10) {
		if p.Offer(rec) {
			accepted++
		}
	}
	if accepted != 4 {
		t.Errorf("accepted %d offers, want 4 (the hand-off size)", accepted)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDropped, DropHandoffFull); got != 6 {
		t.Errorf("dropped handoff_full = %d, want 6", got)
	}

	p.start()
	closeWithin(t, "publisher", p.Close)
	if got := env.streamRecords(t, env.queue.StreamName()); got != 4 {
		t.Errorf("stream holds %d records, want the 4 accepted", got)
	}
}

func TestPublisher_OfferAfterCloseDrops(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	p := env.publisher(t, PublisherConfig{})
	closeWithin(t, "publisher", p.Close)

	if p.Offer(newRecord("u1", "a1", "c1", 1)) {
		t.Error("Offer after Close = true, want false")
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDropped, DropClosed); got != 1 {
		t.Errorf("dropped closed = %d, want 1", got)
	}
}

func TestPublisher_MissingIDDrops(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	p := env.publisher(t, PublisherConfig{})
	rec := newRecord("u1", "a1", "c1", 1)
	rec.Id = ""
	p.Offer(rec)
	closeWithin(t, "publisher", p.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeDropped, DropMissingID); got != 1 {
		t.Errorf("dropped missing_id = %d, want 1", got)
	}
	if got := env.streamMsgs(t, env.queue.StreamName()); got != 0 {
		t.Errorf("stream holds %d records, want 0", got)
	}
}

func TestPublisher_FullStreamDrops(t *testing.T) {
	const maxBytes = 64 << 10
	env := openEnv(t, t.TempDir(), QueueConfig{MaxBytes: maxBytes})
	defer env.close(t)

	const n = 40
	p := env.publisher(t, PublisherConfig{HandoffSize: n})
	for i, rec := range newRecords("u1", "a1", "c1", n) {
		rec.Input.Data.Text.Raw = strings.Repeat("x", 4<<10) + rec.GetId()
		if !p.Offer(rec) {
			t.Fatalf("Offer %d = false with room in the hand-off", i)
		}
	}
	closeWithin(t, "publisher", p.Close)

	enqueued := env.metrics.captures(t, telemetry.OutcomeEnqueued, "")
	full := env.metrics.captures(t, telemetry.OutcomeDropped, DropQueueFull)
	if full == 0 {
		t.Errorf("dropped queue_full = 0, want some: %d records of 4 KiB exceed %d bytes", n, maxBytes)
	}
	if enqueued+full != n {
		t.Errorf("enqueued %d + dropped queue_full %d = %d, want %d", enqueued, full, enqueued+full, n)
	}
	if got := env.streamRecords(t, env.queue.StreamName()); int64(got) != enqueued {
		t.Errorf("stream holds %d records, want the %d enqueued", got, enqueued)
	}
}

func TestPublisher_CloseDeadlineDrops(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	p, err := newPublisher(env.queue, PublisherConfig{HandoffSize: 8},
		PublisherDeps{Meter: env.metrics.meterProvider().Meter("test"), Logger: env.logger})
	if err != nil {
		t.Fatalf("newPublisher: %v", err)
	}
	for _, rec := range newRecords("u1", "a1", "c1", 8) {
		p.Offer(rec)
	}
	p.start()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Close(ctx)

	enqueued := env.metrics.captures(t, telemetry.OutcomeEnqueued, "")
	closed := env.metrics.captures(t, telemetry.OutcomeDropped, DropClosed)
	if enqueued+closed != 8 {
		t.Errorf("enqueued %d + dropped closed %d, want 8 in all: every offered record is counted once", enqueued, closed)
	}
}

func TestPublisher_TooLargeDrops(t *testing.T) {
	e, err := OpenEmbedded(EmbeddedConfig{Dir: t.TempDir(), MaxStoreBytes: 64 << 20, MaxPayload: 64 << 10, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	defer e.Close()
	q, err := OpenQueue(context.Background(), e.Conn(), QueueConfig{MaxBytes: 16 << 20, DeadLetterMaxBytes: 8 << 20})
	if err != nil {
		t.Fatalf("OpenQueue: %v", err)
	}
	env := &env{embedded: e, queue: q, metrics: newMetricsHarness(t), logger: testLogger(t)}

	p := env.publisher(t, PublisherConfig{})
	big := newRecord("u1", "a1", "c1", 1)
	big.Input.Data.Text.Raw = strings.Repeat("x", 100<<10)
	p.Offer(big)
	p.Offer(newRecord("u1", "a1", "c1", 2))
	closeWithin(t, "publisher", p.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeDropped, DropTooLarge); got != 1 {
		t.Errorf("dropped too_large = %d, want 1", got)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeEnqueued, ""); got != 1 {
		t.Errorf("enqueued = %d, want 1: the small record still goes through", got)
	}
}

func TestPublisher_OfferDuringClose(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	p := env.publisher(t, PublisherConfig{HandoffSize: 64})
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p.Offer(newRecord("u1", "a1", fmt.Sprintf("c%d", g), i))
			}
		}()
	}
	closeWithin(t, "publisher", p.Close)
	wg.Wait()

	enqueued := env.metrics.captures(t, telemetry.OutcomeEnqueued, "")
	dropped := env.metrics.captures(t, telemetry.OutcomeDropped, "")
	if enqueued+dropped != goroutines*each {
		t.Errorf("enqueued %d + dropped %d = %d, want every one of %d offers counted once",
			enqueued, dropped, enqueued+dropped, goroutines*each)
	}
	if got := env.streamRecords(t, env.queue.StreamName()); int64(got) != enqueued {
		t.Errorf("stream holds %d records, want the %d enqueued", got, enqueued)
	}
}

// TestPublisher_WindowBoundsBytes checks that one batch holds at most
// WindowBytes of records, and that a record larger than that goes alone.
func TestPublisher_WindowBoundsBytes(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	// Not started: the test takes the batches itself.
	p, err := newPublisher(env.queue, PublisherConfig{HandoffSize: 16, Window: 16, WindowBytes: 2500},
		PublisherDeps{Meter: env.metrics.meterProvider().Meter("test"), Logger: env.logger})
	if err != nil {
		t.Fatalf("newPublisher: %v", err)
	}
	recs := ratioRecordsOfKiB(5)
	recs[3].Input.Data.Text.Raw = strings.Repeat("y", 8000)
	for _, rec := range recs {
		if !p.Offer(rec) {
			t.Fatalf("Offer dropped %s", rec.GetId())
		}
	}

	// Closing the hand-off lets take return the last batch instead of
	// waiting for more records.
	closeWithin(t, "publisher", p.Close)

	var sizes []int
	for open := true; open; {
		var batch []outgoing
		batch, open = p.take(make([]outgoing, 0, p.cfg.Window))
		if len(batch) > 0 {
			sizes = append(sizes, len(batch))
		}
	}
	// Three records of about 1 KiB pass 2500 bytes; the 8 KB record is over the
	// window alone and still goes.
	if want := []int{3, 1, 1}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes = %v, want %v", sizes, want)
	}
}
