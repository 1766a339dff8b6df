package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
)

// deadLetterEnv dead-letters three records through the workers (the local
// app "gone" does not exist), with a duplicate window short enough for a
// replay to pass it.
func deadLetterEnv(t *testing.T, window time.Duration) (*env, []*capturepb.Record) {
	t.Helper()
	env := openEnv(t, t.TempDir(), QueueConfig{DuplicateWindow: window})
	t.Cleanup(func() { env.close(t) })

	store := newMemInputs()
	store.apps = map[string]bool{"u1/a1": true}
	gone := newRecords("u1", "gone", "c1", 3)
	// One record a message, so that the capture stream remembers each
	// record's ID within the duplicate window.
	env.publishEach(t, append([]*capturepb.Record{newRecord("u1", "a1", "c1", 9)}, gone...))
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "three dead letters", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonAppNotFound) == 3
	})
	closeWithin(t, "workers", w.Close)
	return env, gone
}

func TestQueue_ListDeadLetters(t *testing.T) {
	env, gone := deadLetterEnv(t, time.Minute)

	attached, err := AttachQueue(context.Background(), env.embedded.Conn(), QueueConfig{})
	if err != nil {
		t.Fatalf("AttachQueue: %v", err)
	}
	letters, err := attached.ListDeadLetters(context.Background())
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	if len(letters) != len(gone) {
		t.Fatalf("listed %d dead letters, want %d", len(letters), len(gone))
	}
	want := map[string]bool{}
	for _, rec := range gone {
		want[rec.GetId()] = true
	}
	for i, d := range letters {
		if !want[d.RecordID] || d.AppID != "gone" || d.CollectorID != "c1" || d.UserID != "u1" {
			t.Errorf("dead letter %d = %+v, want one of the records of u1/gone/c1", i, d)
		}
		delete(want, d.RecordID)
		if d.Reason != ReasonAppNotFound || d.Attempts != 1 || d.FailedAt.IsZero() || d.Size == 0 {
			t.Errorf("dead letter %d: reason %q attempts %d failed at %v size %d, want %s, 1, a time and a size",
				i, d.Reason, d.Attempts, d.FailedAt, d.Size, ReasonAppNotFound)
		}
	}
}

func TestQueue_AttachMissingStreams(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	if _, err := AttachQueue(context.Background(), env.embedded.Conn(), QueueConfig{Prefix: "other"}); err == nil {
		t.Error("AttachQueue with a prefix no queue uses succeeded, want an error")
	}
}

func TestQueue_ReplayDeadLetters(t *testing.T) {
	const window = 500 * time.Millisecond
	env, gone := deadLetterEnv(t, window)
	ctx := context.Background()

	// Within the duplicate window the capture stream still remembers the
	// IDs: nothing is replayed and nothing leaves the dead-letter stream.
	res, err := env.queue.ReplayDeadLetters(ctx, nil)
	if err != nil {
		t.Fatalf("ReplayDeadLetters: %v", err)
	}
	if res.Replayed != 0 || res.Duplicates != 3 {
		t.Errorf("replay within the window = %+v, want 3 duplicates and none replayed", res)
	}
	if got := env.streamMsgs(t, env.queue.DeadLetterStreamName()); got != 3 {
		t.Errorf("dead-letter stream holds %d, want 3 kept", got)
	}

	time.Sleep(2 * window)
	res, err = env.queue.ReplayDeadLetters(ctx, []string{gone[1].GetId()})
	if err != nil {
		t.Fatalf("ReplayDeadLetters(one ID): %v", err)
	}
	if res.Replayed != 1 {
		t.Errorf("replay of one ID = %+v, want 1 replayed", res)
	}
	if got := env.streamMsgs(t, env.queue.DeadLetterStreamName()); got != 2 {
		t.Errorf("dead-letter stream holds %d after replaying one, want 2", got)
	}

	// The replayed record is back on the capture stream under its own ID
	// and reaches the app once it exists.
	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "replayed record delivered", func() bool { return store.count() == 1 })
	closeWithin(t, "workers", w.Close)
	if stored, _ := store.snapshot(); stored[gone[1].GetId()] != 1 {
		t.Errorf("stored = %v, want only %s", stored, gone[1].GetId())
	}

	if _, err := env.queue.ReplayDeadLetters(ctx, []string{"no-such-id"}); err == nil {
		t.Error("replay of an unknown ID succeeded, want an error naming it")
	}
}

func TestQueue_PurgeDeadLetters(t *testing.T) {
	env, gone := deadLetterEnv(t, time.Minute)
	ctx := context.Background()

	n, err := env.queue.PurgeDeadLetters(ctx, []string{gone[0].GetId()})
	if err != nil || n != 1 {
		t.Fatalf("PurgeDeadLetters(one ID) = %d, %v; want 1", n, err)
	}
	letters, err := env.queue.ListDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 2 || letters[0].RecordID == gone[0].GetId() || letters[1].RecordID == gone[0].GetId() {
		t.Errorf("after purging %s the list is %+v, want the other two", gone[0].GetId(), letters)
	}

	n, err = env.queue.PurgeDeadLetters(ctx, nil)
	if err != nil || n != 2 {
		t.Fatalf("PurgeDeadLetters(all) = %d, %v; want 2", n, err)
	}
	if got := env.streamMsgs(t, env.queue.DeadLetterStreamName()); got != 0 {
		t.Errorf("dead-letter stream holds %d after purge, want 0", got)
	}
}
