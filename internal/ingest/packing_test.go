package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
)

func TestPublisher_PacksRecordsPerCollector(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := append(newRecords("u1", "a1", "c1", 100), newRecords("u1", "a1", "c2", 30)...)
	env.publishWith(t, PublisherConfig{Publishers: 1, MessageRecords: 64}, recs)

	// One window takes all 130 records: c1 needs two messages of at most
	// 64 records and c2 one.
	if got := env.streamMsgs(t, env.queue.StreamName()); got != 3 {
		t.Errorf("stream holds %d messages, want 3", got)
	}
	if got := env.streamRecords(t, env.queue.StreamName()); got != 130 {
		t.Errorf("stream holds %d records, want 130", got)
	}
}

func TestPublisher_PackingRespectsMessageBytes(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 10)
	var size int
	for _, rec := range recs {
		data, _, _ := encodeRecord(rec)
		size = max(size, packedSize(len(data)))
	}
	// Room for two records per message.
	env.publishWith(t, PublisherConfig{Publishers: 1, MessageBytes: 2*size + 1}, recs)

	if got := env.streamMsgs(t, env.queue.StreamName()); got != 5 {
		t.Errorf("stream holds %d messages, want 5 of two records", got)
	}
}

func TestWorkers_DeliverPackedMessages(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 300)
	env.publishAll(t, recs)
	if msgs := env.streamMsgs(t, env.queue.StreamName()); msgs >= uint64(len(recs)) {
		t.Fatalf("stream holds %d messages for %d records, want them packed", msgs, len(recs))
	}

	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })

	stored, _ := store.snapshot()
	for _, rec := range recs {
		if n := stored[rec.GetId()]; n != 1 {
			t.Errorf("record %s stored %d times, want 1", rec.GetId(), n)
		}
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got != int64(len(recs)) {
		t.Errorf("delivered = %d, want %d", got, len(recs))
	}
}

// TestWorkers_PartialRetryPostsOthersOnce packs records of which the
// destination fails some once. The failed ones come back in a new message
// after their retry delay, and the ones it accepted are not posted again.
func TestWorkers_PartialRetryPostsOthersOnce(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 20)
	dest := newFlakyDestination(recs[3].GetId(), recs[11].GetId())
	env.publishAll(t, recs)
	if got := env.streamMsgs(t, env.queue.StreamName()); got != 1 {
		t.Fatalf("stream holds %d messages, want the 20 records packed in 1", got)
	}

	cfg := fastWorkerConfig()
	cfg.RetryBase, cfg.RetryMax = 300*time.Millisecond, 300*time.Millisecond
	w := env.workers(t, dest, cfg)
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "every record delivered", func() bool { return dest.delivered() == len(recs) })
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })

	posts, times := dest.snapshot()
	for _, rec := range recs {
		want := 1
		if dest.flaky[rec.GetId()] {
			want = 2
		}
		if posts[rec.GetId()] != want {
			t.Errorf("record %s posted %d times, want %d", rec.GetId(), posts[rec.GetId()], want)
		}
	}
	// The retry delay is at least half of RetryBase.
	for id := range dest.flaky {
		if gap := times[id][1].Sub(times[id][0]); gap < 150*time.Millisecond {
			t.Errorf("record %s posted again after %s, want its retry delay of at least 150ms", id, gap)
		}
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got != int64(len(recs)) {
		t.Errorf("delivered = %d, want %d: each record counted once", got, len(recs))
	}
}

// TestWorkers_KeepaliveKeepsNakDelay fetches two messages. The first is
// returned with a 6 s Retry-After while the post of the second takes long
// enough for in-progress acknowledgements. Those must skip the returned
// message (nats.go v1.56.0 sends none after a nak): JetStream restarts the
// ack wait on one, which would bring the record back after the 1 s ack wait
// instead.
func TestWorkers_KeepaliveKeepsNakDelay(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{AckWait: time.Second})
	defer env.close(t)

	retried, slow := newRecord("u1", "a1", "c1", 1), newRecord("u1", "a1", "c2", 2)
	dest := newFlakyDestination(retried.GetId())
	dest.retryAfter = 6 * time.Second
	dest.slowCollector, dest.slowFor = "c2", 1500*time.Millisecond
	env.publishAll(t, []*capturepb.Record{retried, slow})

	cfg := fastWorkerConfig()
	cfg.Workers = 1
	w := env.workers(t, dest, cfg)
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "both records delivered", func() bool { return dest.delivered() == 2 })

	_, times := dest.snapshot()
	if gap := times[retried.GetId()][1].Sub(times[retried.GetId()][0]); gap < 5*time.Second {
		t.Errorf("record posted again after %s, want the Retry-After of 6s", gap)
	}
}

func TestWorkers_PackedRecordDeadLetteredAlone(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 5)
	dest := newFlakyDestination()
	dest.permanent = map[string]bool{recs[2].GetId(): true}
	env.publishAll(t, recs)
	if got := env.streamMsgs(t, env.queue.StreamName()); got != 1 {
		t.Fatalf("stream holds %d messages, want the 5 records packed in 1", got)
	}

	w := env.workers(t, dest, fastWorkerConfig())
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })

	letters := env.deadLetters(t)
	if len(letters) != 1 || letters[0].rec.GetId() != recs[2].GetId() {
		t.Fatalf("dead letters = %v, want only %s", letters, recs[2].GetId())
	}
	posts, _ := dest.snapshot()
	for _, rec := range recs {
		if posts[rec.GetId()] != 1 {
			t.Errorf("record %s posted %d times, want 1", rec.GetId(), posts[rec.GetId()])
		}
	}
	if got := dest.delivered(); got != len(recs)-1 {
		t.Errorf("delivered %d records, want %d", got, len(recs)-1)
	}
}

func TestWorkers_PackedBadRecordDeadLetteredAlone(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	good := newRecords("u1", "a1", "c1", 3)
	var data []byte
	for i, rec := range good {
		encoded, _, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		data = appendPacked(data, encoded)
		if i < 2 {
			// Not a Record: its ID is not valid UTF-8.
			data = appendPacked(data, []byte{0x0a, 0x01, 0xff})
		}
	}
	publishRaw(t, env, data, "5")

	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })

	if got := store.count(); got != len(good) {
		t.Errorf("stored %d inputs, want the %d good records", got, len(good))
	}
	if got := env.metrics.captures(t, telemetry.OutcomeFailed, ReasonDecodeFailed); got != 2 {
		t.Errorf("dead-lettered as %s = %d, want 2", ReasonDecodeFailed, got)
	}
	// Each bad record keeps a dead letter of its own.
	if got := env.streamMsgs(t, env.queue.DeadLetterStreamName()); got != 2 {
		t.Errorf("dead-letter stream holds %d messages, want 2", got)
	}
}

func TestWorkers_MalformedPackedMessageDeadLetteredWhole(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	// Field 2 is not the records field.
	data := []byte{0x12, 0x01, 0x00}
	publishRaw(t, env, data, "1")

	w := env.workers(t, NewLocalDestination(newMemInputs()), fastWorkerConfig())
	defer closeWithin(t, "workers", w.Close)
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })

	letters, err := env.queue.ListDeadLetters(context.Background())
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	if len(letters) != 1 || letters[0].Reason != ReasonDecodeFailed || letters[0].Size != len(data) {
		t.Fatalf("dead letters = %+v, want the whole message as %s", letters, ReasonDecodeFailed)
	}
	if letters[0].records != "1" {
		t.Errorf("dead letter keeps %s %q, want %q so a replay restores the message", HeaderRecords, letters[0].records, "1")
	}
}

// TestWorkers_WaitingMessageDoesNotPause fetches a message that waits out
// its Not-Before time alone. The worker returns it to the stream and goes
// on: a record published meanwhile is not held up by MaxDeferredPause.
func TestWorkers_WaitingMessageDoesNotPause(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	waiting := newRecord("u1", "a1", "c1", 1)
	data, _, _ := encodeRecord(waiting)
	notBefore := time.Now().Add(500 * time.Millisecond)
	msg := nats.NewMsg(env.queue.Subject("u1", "a1"))
	msg.Data = data
	msg.Header.Set(HeaderNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
	if _, err := env.queue.JetStream().PublishMsg(context.Background(), msg); err != nil {
		t.Fatalf("publish: %v", err)
	}

	dest := newFlakyDestination()
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	cfg.MaxDeferredPause = time.Minute
	w := env.workers(t, dest, cfg)
	defer closeWithin(t, "workers", w.Close)

	// Let the worker fetch the waiting message alone, then queue another.
	time.Sleep(100 * time.Millisecond)
	env.publishAll(t, []*capturepb.Record{newRecord("u1", "a1", "c1", 2)})
	waitFor(t, "both records delivered", func() bool { return dest.delivered() == 2 })

	_, times := dest.snapshot()
	if at := times[waiting.GetId()][0]; at.Before(notBefore) {
		t.Errorf("waiting record posted %s before its Not-Before time", notBefore.Sub(at))
	}
	if took := time.Since(notBefore); took > 20*time.Second {
		t.Errorf("records delivered %s after the Not-Before time, want well under MaxDeferredPause %s", took, cfg.MaxDeferredPause)
	}
}

func TestUnpack(t *testing.T) {
	a, b := []byte("first"), []byte("second")
	records, err := unpack(appendPacked(appendPacked(nil, a), b))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if len(records) != 2 || string(records[0]) != "first" || string(records[1]) != "second" {
		t.Errorf("unpack = %q, want [first second]", records)
	}

	for name, data := range map[string][]byte{
		"empty":       nil,
		"other field": {0x12, 0x01, 0x00},
		"truncated":   {0x0a, 0x05, 0x00},
		"bad tag":     {0x80},
	} {
		if _, err := unpack(data); !errors.Is(err, errMalformedPacked) {
			t.Errorf("unpack(%s) error = %v, want errMalformedPacked", name, err)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	recs := newRecords("u1", "a1", "c1", 2)
	var packed []byte
	for _, rec := range recs {
		data, _, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		packed = appendPacked(packed, data)
	}
	header := nats.Header{HeaderRecords: {"2"}}

	got, err := DecodeMessage(header, packed)
	if err != nil {
		t.Fatalf("DecodeMessage(packed): %v", err)
	}
	if len(got) != 2 || got[0].GetId() != recs[0].GetId() || got[1].GetId() != recs[1].GetId() {
		t.Errorf("DecodeMessage(packed) = %v, want %s and %s", got, recs[0].GetId(), recs[1].GetId())
	}

	single, _, _ := encodeRecord(recs[0])
	got, err = DecodeMessage(nats.Header{}, single)
	if err != nil || len(got) != 1 || got[0].GetId() != recs[0].GetId() {
		t.Errorf("DecodeMessage(single) = %v, %v, want %s", got, err, recs[0].GetId())
	}

	if _, err := DecodeMessage(header, appendPacked(nil, []byte{0x0a, 0x01, 0xff})); err == nil {
		t.Error("DecodeMessage(invalid record) succeeded, want an error")
	}
}

// publishRaw publishes data as a packed message of the capture stream.
func publishRaw(t *testing.T, env *env, data []byte, records string) {
	t.Helper()
	msg := nats.NewMsg(env.queue.Subject("u1", "a1"))
	msg.Data = data
	msg.Header.Set(HeaderRecords, records)
	if _, err := env.queue.JetStream().PublishMsg(context.Background(), msg, jetstream.WithMsgID("raw")); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// flakyDestination accepts every record, except that the first post of each
// flaky record is retryable and every post of a permanent one is rejected.
// It records when each record was posted.
type flakyDestination struct {
	flaky     map[string]bool
	permanent map[string]bool
	// retryAfter is the Retry-After of a flaky record's failure.
	retryAfter time.Duration
	// Posts for slowCollector take slowFor.
	slowCollector string
	slowFor       time.Duration

	mu     sync.Mutex
	posted map[string][]time.Time
	stored map[string]bool
}

func newFlakyDestination(ids ...string) *flakyDestination {
	d := &flakyDestination{flaky: map[string]bool{}, posted: map[string][]time.Time{}, stored: map[string]bool{}}
	for _, id := range ids {
		d.flaky[id] = true
	}
	return d
}

func (d *flakyDestination) MaxPostInputs() int { return MaxLocalInputsPerPost }

func (d *flakyDestination) Post(_ context.Context, ref DestinationRef, recs []*capturepb.Record) []Result {
	if ref.CollectorID == d.slowCollector {
		time.Sleep(d.slowFor)
	}
	d.mu.Lock()
	defer d.mu.Unlock()

	results := make([]Result, len(recs))
	for i, rec := range recs {
		id := rec.GetId()
		d.posted[id] = append(d.posted[id], time.Now())
		if d.permanent[id] {
			results[i] = Result{Outcome: Permanent, Reason: ReasonBadRequest, Err: errors.New("rejected")}
			continue
		}
		if d.flaky[id] && len(d.posted[id]) == 1 {
			results[i] = Result{Outcome: Retryable, RetryAfter: d.retryAfter, Err: errors.New("flaky")}
			continue
		}
		d.stored[id] = true
		results[i] = Result{Outcome: Delivered}
	}
	return results
}

func (d *flakyDestination) delivered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.stored)
}

func (d *flakyDestination) snapshot() (posts map[string]int, times map[string][]time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	posts, times = map[string]int{}, map[string][]time.Time{}
	for id, at := range d.posted {
		posts[id] = len(at)
		times[id] = append([]time.Time(nil), at...)
	}
	return posts, times
}
