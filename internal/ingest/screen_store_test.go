package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/filter"
	admissions "github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/telemetry"
)

// The SQLite store is the ledger and preview store of the one-process mode.
var (
	_ admissions.Ledger       = (*store.SQLite)(nil)
	_ admissions.PreviewStore = (*store.SQLite)(nil)
)

func openScreenStore(t *testing.T) *store.SQLite {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestScreen_Admission(t *testing.T) {
	tests := []struct {
		name   string
		policy *clarifaipb.CollectorPolicy
		// hash and concept give record i its content hash and top concept.
		hash, concept func(i int) string
		records       int
		// key groups records that the policy limits together, and perKey is
		// the maximum number of stored records of one key.
		key    func(rec *capturepb.Record) string
		perKey int

		wantDelivered int
		outcome       string
		reason        string
	}{
		{
			name:    "hour budget",
			policy:  &clarifaipb.CollectorPolicy{MaxInputsPerHour: 10},
			hash:    func(i int) string { return fmt.Sprintf("hash-%d", i) },
			concept: func(int) string { return "cat" },
			records: 25,
			key:     func(*capturepb.Record) string { return "all" }, perKey: 10,
			wantDelivered: 10, outcome: telemetry.OutcomeOverBudget, reason: admissions.ReasonOverHourBudget,
		},
		{
			name:    "day budget",
			policy:  &clarifaipb.CollectorPolicy{MaxInputsPerHour: 20, MaxInputsPerDay: 7},
			hash:    func(i int) string { return fmt.Sprintf("hash-%d", i) },
			concept: func(int) string { return "cat" },
			records: 12,
			key:     func(*capturepb.Record) string { return "all" }, perKey: 7,
			wantDelivered: 7, outcome: telemetry.OutcomeOverBudget, reason: admissions.ReasonOverDayBudget,
		},
		{
			name:   "dedup",
			policy: &clarifaipb.CollectorPolicy{DedupWindowSeconds: 3600},
			// Three distinct contents among 12 records; a blank hash never
			// matches, so the last 3 records are all kept.
			hash: func(i int) string {
				if i >= 9 {
					return ""
				}
				return fmt.Sprintf("content-%d", i%3)
			},
			concept: func(int) string { return "cat" },
			records: 12,
			key: func(rec *capturepb.Record) string {
				if rec.GetContentHash() == "" {
					return rec.GetId()
				}
				return rec.GetContentHash()
			},
			perKey:        1,
			wantDelivered: 6, outcome: telemetry.OutcomeDeduplicated,
		},
		{
			name:   "class cap",
			policy: &clarifaipb.CollectorPolicy{MaxInputsPerConcept: 2, BalanceWindowSeconds: 3600},
			hash:   func(i int) string { return fmt.Sprintf("hash-%d", i) },
			// 6 cats, 1 dog and 3 without a top concept: 2 + 1 + 2 kept.
			concept: func(i int) string {
				switch {
				case i < 6:
					return "cat"
				case i == 6:
					return "dog"
				}
				return ""
			},
			records:       10,
			key:           func(rec *capturepb.Record) string { return rec.GetTopConceptId() },
			perKey:        2,
			wantDelivered: 5, outcome: telemetry.OutcomeClassCapped,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openScreenStore(t)
			env := openEnv(t, t.TempDir(), QueueConfig{})
			defer env.close(t)

			recs := newRecords("u1", "a1", "c1", tt.records)
			for i, rec := range recs {
				rec.Policy = tt.policy
				rec.ContentHash = tt.hash(i)
				rec.TopConceptId = tt.concept(i)
			}
			env.publishAll(t, recs)

			dest := newMemInputs()
			w := env.screenWorkers(t, NewLocalDestination(dest), fastWorkerConfig(), WorkerDeps{Ledger: db})
			waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
			closeWithin(t, "workers", w.Close)

			if got := dest.count(); got != tt.wantDelivered {
				t.Errorf("stored = %d, want %d", got, tt.wantDelivered)
			}
			stored, _ := dest.snapshot()
			perKey := map[string]int{}
			for _, rec := range recs {
				perKey[tt.key(rec)] += stored[rec.GetId()]
			}
			for key, n := range perKey {
				if n > tt.perKey {
					t.Errorf("key %q: %d records stored, want at most %d", key, n, tt.perKey)
				}
			}

			refused := int64(tt.records - tt.wantDelivered)
			var labels []attribute.KeyValue
			if tt.reason != "" {
				labels = append(labels, attribute.String("reason", tt.reason))
			}
			if got := env.collectorInputs(t, tt.outcome, labels...); got != refused {
				t.Errorf("collector inputs %s %s = %d, want %d", tt.outcome, tt.reason, got, refused)
			}
			if got := env.collectorInputs(t, telemetry.OutcomeDelivered, attribute.String("collector", "u1/a1/c1")); got != int64(tt.wantDelivered) {
				t.Errorf("delivered = %d, want %d", got, tt.wantDelivered)
			}
			if got := len(env.deadLetters(t)); got != 0 {
				t.Errorf("dead letters = %d, want 0", got)
			}
		})
	}
}

// flakyLedger and flakyPreviews fail their first calls and then pass every
// call to the real store, like a database that was briefly unreachable.
type flakyLedger struct {
	admissions.Ledger
	mu       sync.Mutex
	failures int
	calls    int
}

var errStoreDown = errors.New("database is unreachable")

func (l *flakyLedger) Admit(ctx context.Context, ref admissions.Ref, p collector.Policy, now time.Time, candidates []admissions.Candidate) ([]string, error) {
	l.mu.Lock()
	l.calls++
	fail := l.calls <= l.failures
	l.mu.Unlock()
	if fail {
		return nil, errStoreDown
	}
	return l.Ledger.Admit(ctx, ref, p, now, candidates)
}

type flakyPreviews struct {
	admissions.PreviewStore
	mu       sync.Mutex
	failures int
	calls    int
}

func (p *flakyPreviews) AddPreview(ctx context.Context, ref admissions.Ref, counts map[string]int64, records []*clarifaipb.PreviewRecord, keep int) error {
	p.mu.Lock()
	p.calls++
	fail := p.calls <= p.failures
	p.mu.Unlock()
	if fail {
		return errStoreDown
	}
	return p.PreviewStore.AddPreview(ctx, ref, counts, records, keep)
}

func TestScreen_LedgerErrorRetries(t *testing.T) {
	db := openScreenStore(t)
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 5})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 8)
	for i, rec := range recs {
		rec.Policy = &clarifaipb.CollectorPolicy{MaxInputsPerHour: 5}
		rec.ContentHash = fmt.Sprintf("hash-%d", i)
	}
	env.publishAll(t, recs)

	ledger := &flakyLedger{Ledger: db, failures: 2}
	dest := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(dest), fastWorkerConfig(), WorkerDeps{Ledger: ledger})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	if got := dest.count(); got != 5 {
		t.Errorf("stored = %d, want the budget of 5", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeOverBudget); got != 3 {
		t.Errorf("over budget = %d, want 3", got)
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0: a ledger error is retried", got)
	}
}

func TestScreen_LedgerDownDeadLetters(t *testing.T) {
	db := openScreenStore(t)
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 2})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 3)
	for _, rec := range recs {
		rec.Policy = &clarifaipb.CollectorPolicy{DedupWindowSeconds: 60}
	}
	env.publishAll(t, recs)

	ledger := &flakyLedger{Ledger: db, failures: 1 << 30}
	dest := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(dest), fastWorkerConfig(), WorkerDeps{Ledger: ledger})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != len(recs) {
		t.Fatalf("dead letters = %d, want %d", len(dead), len(recs))
	}
	for _, d := range dead {
		if d.reason != ReasonAdmissionFailed || d.attempts != "2" {
			t.Errorf("dead letter %s: reason %q after %s attempts, want %q after 2", d.rec.GetId(), d.reason, d.attempts, ReasonAdmissionFailed)
		}
	}
	if got := dest.count(); got != 0 {
		t.Errorf("stored = %d, want 0", got)
	}
}

func TestScreen_PreviewNeverPosts(t *testing.T) {
	db := openScreenStore(t)
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	finder := newStaticFinder()
	finder.put(t, "u1", "a1", "wf", filter.Config{}, keepTrueNode(t, "keep-true", ""))

	// 30 preview records: the workflow filters 6, and the budget of 22 per
	// hour refuses 2 of the other 24.
	policy := &clarifaipb.CollectorPolicy{Preview: true, MaxInputsPerHour: 22}
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var recs []*capturepb.Record
	for i := range 30 {
		rec := withMetadataKeep(t, newRecord("u1", "a1", "c1", i), i%5 != 0)
		rec.Preview = true
		rec.Policy = policy
		rec.PostQueueWorkflowId = "wf"
		rec.ContentHash = fmt.Sprintf("hash-%d", i)
		rec.CollectorVersion = 3
		rec.CallerUserId = "bob"
		rec.CapturedAt = timestamppb.New(start.Add(time.Duration(i) * time.Second))
		recs = append(recs, rec)
	}
	// Inputs the sidecar dropped for the preview arrive without their input.
	for i, reason := range []string{"sampled_out", "sampled_out", "sampled_out", "output_failed"} {
		recs = append(recs, &capturepb.Record{
			Id: fmt.Sprintf("drop-%d", i), UserId: "u1", AppId: "a1", CollectorId: "c1",
			Preview: true, Policy: policy, PreviewDropReason: reason,
		})
	}
	env.publishAll(t, recs)

	dest := newMemInputs()
	cfg := fastWorkerConfig()
	// With one worker, batches reach the preview in stream order, so the
	// stored records are the newest overall.
	cfg.Workers = 1
	w := env.screenWorkers(t, NewLocalDestination(dest), cfg, WorkerDeps{Workflows: finder, Ledger: db, Previews: db})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	if _, batches := dest.snapshot(); len(batches) != 0 {
		t.Errorf("posts = %v, want none: a preview collector ingests nothing", batches)
	}
	preview, err := db.GetPreview(context.Background(), admissions.Ref{UserID: "u1", AppID: "a1", CollectorID: "c1"})
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	counts := map[string]int64{}
	for _, c := range preview.GetCounts() {
		counts[c.GetOutcome()] = c.GetCount()
	}
	wantCounts := map[string]int64{
		PreviewOutcomeKept:              22,
		telemetry.OutcomeFiltered:       6,
		admissions.ReasonOverHourBudget: 2,
		"sampled_out":                   3,
		telemetry.OutcomeOutputFailed:   1,
	}
	for outcome, want := range wantCounts {
		if counts[outcome] != want {
			t.Errorf("preview count %s = %d, want %d", outcome, counts[outcome], want)
		}
	}
	if len(counts) != len(wantCounts) {
		t.Errorf("preview counts = %v, want exactly %v", counts, wantCounts)
	}

	records := preview.GetRecords()
	if len(records) != admissions.DefaultPreviewRecords {
		t.Fatalf("preview records = %d, want %d", len(records), admissions.DefaultPreviewRecords)
	}
	byID := map[string]*capturepb.Record{}
	for _, rec := range recs {
		byID[rec.GetId()] = rec
	}
	for i, r := range records {
		rec := byID[r.GetRecordId()]
		if rec == nil || rec.GetInput().GetData().GetMetadata().GetFields()["keep"].GetBoolValue() != true {
			t.Errorf("preview record %d is %q, want a record the workflow kept", i, r.GetRecordId())
			continue
		}
		if i > 0 && r.GetCapturedAt().AsTime().After(records[i-1].GetCapturedAt().AsTime()) {
			t.Errorf("preview record %d captured at %s after record %d, want newest first", i, r.GetCapturedAt().AsTime(), i-1)
		}
		if r.GetInput().GetId() != rec.GetId() || r.GetInput().GetData().GetText().GetRaw() != rec.GetInput().GetData().GetText().GetRaw() {
			t.Errorf("preview record %s input = %v, want it as InputFromRecord posts it", r.GetRecordId(), r.GetInput())
		}
		if r.GetCallerUserId() != "bob" || r.GetCollectorVersion() != 3 || r.GetRequestId() != rec.GetRequestId() || len(r.GetOutputConcepts()) != 1 {
			t.Errorf("preview record %s = %v, want caller, collector version, request id and concepts of the record", r.GetRecordId(), r)
		}
	}

	if got := env.collectorInputs(t, telemetry.OutcomePreviewed); got != 22 {
		t.Errorf("previewed = %d, want 22", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeFiltered, attribute.String("operator", filter.TypeMetadataFilter)); got != 6 {
		t.Errorf("filtered = %d, want 6", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeOverBudget, attribute.String("reason", admissions.ReasonOverHourBudget)); got != 2 {
		t.Errorf("over budget = %d, want 2", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeDelivered); got != 0 {
		t.Errorf("delivered = %d, want 0", got)
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

func TestScreen_PreviewStoreErrorRetries(t *testing.T) {
	db := openScreenStore(t)
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 5})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 6)
	for _, rec := range recs {
		rec.Preview = true
	}
	recs = append(recs, &capturepb.Record{Id: "drop-0", UserId: "u1", AppId: "a1", CollectorId: "c1", Preview: true, PreviewDropReason: "sampled_out"})
	env.publishAll(t, recs)

	previews := &flakyPreviews{PreviewStore: db, failures: 2}
	dest := newMemInputs()
	cfg := fastWorkerConfig()
	// One worker settles the whole batch per fetch, so the counts below do
	// not depend on how two workers would split it.
	cfg.Workers = 1
	w := env.screenWorkers(t, NewLocalDestination(dest), cfg, WorkerDeps{Previews: previews})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	preview, err := db.GetPreview(context.Background(), admissions.Ref{UserID: "u1", AppID: "a1", CollectorID: "c1"})
	if err != nil {
		t.Fatalf("GetPreview: %v", err)
	}
	counts := map[string]int64{}
	for _, c := range preview.GetCounts() {
		counts[c.GetOutcome()] = c.GetCount()
	}
	if counts[PreviewOutcomeKept] != 6 || counts["sampled_out"] != 1 {
		t.Errorf("preview counts = %v, want kept 6 and sampled_out 1, each record counted once", counts)
	}
	if got := len(preview.GetRecords()); got != 6 {
		t.Errorf("preview records = %d, want 6", got)
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0: a preview store error is retried", got)
	}
	if got := dest.count(); got != 0 {
		t.Errorf("stored = %d, want 0", got)
	}
}

// pruneRecorder passes every call to the real store and records prunes.
type pruneRecorder struct {
	admissions.Ledger
	mu      sync.Mutex
	before  []time.Time
	removed []int
}

func (p *pruneRecorder) PruneAdmissions(ctx context.Context, before time.Time) (int, error) {
	n, err := p.Ledger.PruneAdmissions(ctx, before)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.before = append(p.before, before)
		p.removed = append(p.removed, n)
	}
	return n, err
}

func (p *pruneRecorder) snapshot() ([]time.Time, []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.before...), append([]int(nil), p.removed...)
}

func TestWorkers_PruneAdmissions(t *testing.T) {
	db := openScreenStore(t)
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	// One admission older than any window, one still inside a 30-day window.
	ctx := context.Background()
	policy := collector.Policy{DedupWindow: 30 * 24 * time.Hour}
	for _, age := range []time.Duration{40 * 24 * time.Hour, 29 * 24 * time.Hour} {
		ref := admissions.Ref{UserID: "u1", AppID: "a1", CollectorID: fmt.Sprintf("c-%v", age)}
		if _, err := db.Admit(ctx, ref, policy, time.Now().Add(-age), []admissions.Candidate{{RecordID: "r1", ContentHash: "h"}}); err != nil {
			t.Fatalf("Admit: %v", err)
		}
	}

	ledger := &pruneRecorder{Ledger: db}
	cfg := fastWorkerConfig()
	cfg.PruneInterval = 10 * time.Millisecond
	started := time.Now()
	w := env.screenWorkers(t, NewLocalDestination(newMemInputs()), cfg, WorkerDeps{Ledger: ledger})
	waitFor(t, "two prunes", func() bool { before, _ := ledger.snapshot(); return len(before) >= 2 })
	closeWithin(t, "workers", w.Close)

	before, removed := ledger.snapshot()
	if removed[0] != 1 {
		t.Errorf("first prune removed %d admissions, want the one older than 31 days", removed[0])
	}
	if removed[1] != 0 {
		t.Errorf("second prune removed %d admissions, want 0", removed[1])
	}
	if oldest := started.Add(-admissionRetention); before[0].Before(oldest) {
		t.Errorf("prune before %s, want no earlier than %s (31 days before start)", before[0], oldest)
	}

	// The 29-day-old admission survived: the same content is still a duplicate.
	ref := admissions.Ref{UserID: "u1", AppID: "a1", CollectorID: fmt.Sprintf("c-%v", 29*24*time.Hour)}
	reasons, err := db.Admit(ctx, ref, policy, time.Now(), []admissions.Candidate{{RecordID: "r2", ContentHash: "h"}})
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	if reasons[0] != admissions.ReasonDuplicate {
		t.Errorf("admission after prune = %q, want %q: a 29-day-old admission must survive", reasons[0], admissions.ReasonDuplicate)
	}
}
