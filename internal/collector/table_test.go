package collector_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/store/storetest"
)

// The table is what the capture engine consults for candidates.
var _ capture.CandidateFinder = (*collector.Table)(nil)

var general = collector.ModelRef{UserID: "m", AppID: "main", ModelID: "general"}

// countingStore wraps a real store, counts MatchCollectors calls, and can
// fail them or hold them until released.
type countingStore struct {
	collector.Store

	matches atomic.Int64
	fail    atomic.Pointer[error]
	// gate, when set, is received from before each query runs.
	gate chan struct{}
}

func (s *countingStore) MatchCollectors(ctx context.Context, caller string, model collector.ModelRef) ([]collector.Collector, error) {
	s.matches.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := s.fail.Load(); err != nil {
		return nil, *err
	}
	return s.Store.MatchCollectors(ctx, caller, model)
}

type tableFixture struct {
	store  *countingStore
	table  *collector.Table
	reader *sdkmetric.ManualReader
	logs   *bytes.Buffer
}

func newTableFixture(t testing.TB) *tableFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	f := &tableFixture{
		store:  &countingStore{Store: db},
		reader: sdkmetric.NewManualReader(),
		logs:   &bytes.Buffer{},
	}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test")
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	f.table, err = collector.NewTable(f.store, collector.TableConfig{MaxEntries: 100}, collector.TableDeps{Logger: logger, Meter: meter})
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	t.Cleanup(f.table.Close)
	return f
}

func (f *tableFixture) insert(t testing.TB, c collector.Collector) {
	t.Helper()
	if err := f.store.InsertCollector(context.Background(), c); err != nil {
		t.Fatalf("InsertCollector %s: %v", c.ID, err)
	}
}

// lookups returns collectord_collector_lookups_total by result.
func (f *tableFixture) lookups(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "collectord_collector_lookups_total" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				result, _ := dp.Attributes.Value("result")
				out[result.AsString()] += dp.Value
			}
		}
	}
	return out
}

func candidateIDs(cs []collector.Collector) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestTable_CacheHit(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))

	first := f.table.Candidates(ctx, "alice", general)
	f.table.Wait()
	second := f.table.Candidates(ctx, "alice", general)

	if got := candidateIDs(first); len(got) != 1 || got[0] != "c1" {
		t.Errorf("first Candidates = %v, want [c1]", got)
	}
	if got := candidateIDs(second); len(got) != 1 || got[0] != "c1" {
		t.Errorf("second Candidates = %v, want [c1]", got)
	}
	if n := f.store.matches.Load(); n != 1 {
		t.Errorf("store queried %d times, want 1", n)
	}
	lookups := f.lookups(t)
	if lookups["miss"] != 1 || lookups["hit"] != 1 {
		t.Errorf("lookups = %v, want one miss and one hit", lookups)
	}
}

func TestTable_VersionNotInKey(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))

	v1, v2 := general, general
	v1.VersionID, v2.VersionID = "v1", "v2"
	f.table.Candidates(ctx, "alice", v1)
	f.table.Wait()
	got := f.table.Candidates(ctx, "alice", v2)

	if len(got) != 1 {
		t.Errorf("Candidates with another version = %v, want [c1]", candidateIDs(got))
	}
	if n := f.store.matches.Load(); n != 1 {
		t.Errorf("store queried %d times for two versions of one model, want 1", n)
	}
}

func TestTable_KeyedByCallerAndModel(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	mine := storetest.NewCollector("u1", "a1", "mine")
	mine.CallerUserID = "alice"
	f.insert(t, mine)

	alice := f.table.Candidates(ctx, "alice", general)
	f.table.Wait()
	bob := f.table.Candidates(ctx, "bob", general)
	other := f.table.Candidates(ctx, "alice", collector.ModelRef{UserID: "m", AppID: "main", ModelID: "other"})

	if len(alice) != 1 {
		t.Errorf("Candidates for alice = %v, want [mine]", candidateIDs(alice))
	}
	if len(bob) != 0 {
		t.Errorf("Candidates for bob = %v, want none: the cached result for alice leaked", candidateIDs(bob))
	}
	if len(other) != 0 {
		t.Errorf("Candidates for another model = %v, want none", candidateIDs(other))
	}
}

func TestTable_NegativeEntry(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()

	for i := 0; i < 5; i++ {
		if got := f.table.Candidates(ctx, "alice", general); len(got) != 0 {
			t.Fatalf("Candidates = %v, want none", candidateIDs(got))
		}
		f.table.Wait()
	}

	if n := f.store.matches.Load(); n != 1 {
		t.Errorf("store queried %d times for a model without collectors, want 1", n)
	}
}

func TestTable_InvalidatedOnInsert(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.table.Candidates(ctx, "alice", general)
	f.table.Wait()

	f.insert(t, storetest.NewCollector("u1", "a1", "new"))

	got := f.table.Candidates(ctx, "alice", general)
	if ids := candidateIDs(got); len(ids) != 1 || ids[0] != "new" {
		t.Errorf("Candidates after insert = %v, want [new]", ids)
	}
}

func TestTable_InvalidatedOnPause(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	c := storetest.NewCollector("u1", "a1", "c1")
	f.insert(t, c)
	if got := f.table.Candidates(ctx, "alice", general); len(got) != 1 {
		t.Fatalf("Candidates before pause = %v, want [c1]", candidateIDs(got))
	}
	f.table.Wait()

	c.Paused = true
	if err := f.store.UpdateCollector(ctx, c); err != nil {
		t.Fatalf("UpdateCollector: %v", err)
	}

	if got := f.table.Candidates(ctx, "alice", general); len(got) != 0 {
		t.Errorf("Candidates after pause = %v, want none", candidateIDs(got))
	}
}

func TestTable_InvalidatedOnDelete(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))
	f.insert(t, storetest.NewCollector("u1", "a2", "c2"))
	f.table.Candidates(ctx, "alice", general)
	f.table.Wait()

	if err := f.store.DeleteCollector(ctx, "u1", "a1", "c1"); err != nil {
		t.Fatalf("DeleteCollector: %v", err)
	}
	if ids := candidateIDs(f.table.Candidates(ctx, "alice", general)); len(ids) != 1 || ids[0] != "c2" {
		t.Errorf("Candidates after delete = %v, want [c2]", ids)
	}
	f.table.Wait()

	if _, err := f.store.DeleteAllCollectors(ctx, "u1", "a2"); err != nil {
		t.Fatalf("DeleteAllCollectors: %v", err)
	}
	if ids := candidateIDs(f.table.Candidates(ctx, "alice", general)); len(ids) != 0 {
		t.Errorf("Candidates after delete all = %v, want none", ids)
	}
}

func TestTable_StoreError(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))
	boom := errors.New("database is unavailable")
	f.store.fail.Store(&boom)

	for i := 0; i < 3; i++ {
		if got := f.table.Candidates(ctx, "alice", general); got != nil {
			t.Errorf("Candidates on store error = %v, want none", candidateIDs(got))
		}
		f.table.Wait()
	}

	// Errors are not cached: each lookup tried the store again.
	if n := f.store.matches.Load(); n != 3 {
		t.Errorf("store queried %d times, want 3", n)
	}
	if got := f.lookups(t)["error"]; got != 3 {
		t.Errorf("error lookups = %d, want 3", got)
	}
	if n := strings.Count(f.logs.String(), "collector lookup failed"); n != 1 {
		t.Errorf("logged the store error %d times in a row, want 1:\n%s", n, f.logs.String())
	}
	if !strings.Contains(f.logs.String(), boom.Error()) {
		t.Errorf("log does not name the error:\n%s", f.logs.String())
	}

	// Once the store recovers, the collector is found.
	f.store.fail.Store(nil)
	if got := f.table.Candidates(ctx, "alice", general); len(got) != 1 {
		t.Errorf("Candidates after recovery = %v, want [c1]", candidateIDs(got))
	}
}

func TestTable_NoSecretInLogs(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	c := storetest.NewCollector("u1", "a1", "c1")
	f.insert(t, c)
	boom := errors.New("database is unavailable")
	f.store.fail.Store(&boom)

	f.table.Candidates(ctx, "alice", general)

	if strings.Contains(f.logs.String(), c.PostInputsKey) {
		t.Errorf("log contains a post-inputs key:\n%s", f.logs.String())
	}
}

// TestTable_SingleFlight holds the store query until every goroutine asked
// for the same key, then checks that they shared one query.
func TestTable_SingleFlight(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))
	f.store.gate = make(chan struct{})

	const callers = 20
	var started, done sync.WaitGroup
	results := make([][]collector.Collector, callers)
	for i := 0; i < callers; i++ {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			results[i] = f.table.Candidates(ctx, "alice", general)
		}()
	}
	started.Wait()
	// The pause only gives the goroutines time to reach the shared query;
	// the assertions below hold for any interleaving in which they did.
	time.Sleep(50 * time.Millisecond)
	close(f.store.gate)
	done.Wait()

	if n := f.store.matches.Load(); n != 1 {
		t.Errorf("store queried %d times by %d concurrent misses, want 1", n, callers)
	}
	for i, r := range results {
		if len(r) != 1 {
			t.Errorf("caller %d got %v, want [c1]", i, candidateIDs(r))
		}
	}
}

func TestTable_CallerCanceled(t *testing.T) {
	f := newTableFixture(t)
	f.store.gate = make(chan struct{})
	defer close(f.store.gate)

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan []collector.Collector)
	go func() { result <- f.table.Candidates(ctx, "alice", general) }()
	cancel()

	if got := <-result; got != nil {
		t.Errorf("Candidates after cancel = %v, want none", candidateIDs(got))
	}
	if got := f.lookups(t)["canceled"]; got != 1 {
		t.Errorf("canceled lookups = %d, want 1", got)
	}
}

// TestTable_CloseDuringLookup closes the table while a store query runs. The
// late result must be dropped without a panic, and later lookups still read
// the store.
func TestTable_CloseDuringLookup(t *testing.T) {
	f := newTableFixture(t)
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))
	f.store.gate = make(chan struct{})

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan []collector.Collector)
	go func() { result <- f.table.Candidates(ctx, "alice", general) }()
	cancel()
	<-result

	f.table.Close()
	close(f.store.gate)

	// This call joins the query still in flight, or starts a new one once it
	// has finished. Either way, the late result has been handled by then.
	if got := f.table.Candidates(context.Background(), "alice", general); len(got) != 1 {
		t.Errorf("Candidates after Close = %v, want [c1]", candidateIDs(got))
	}
}

func TestTable_ResultIsACopy(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))

	first := f.table.Candidates(ctx, "alice", general)
	f.table.Wait()
	first[0].ID = "changed by the caller"

	if got := f.table.Candidates(ctx, "alice", general); got[0].ID != "c1" {
		t.Errorf("cached collector ID = %q after the caller changed its copy, want c1", got[0].ID)
	}
}

func TestTable_Close(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()
	f.table.Close()
	f.table.Close()

	// A closed table still reads the store, and the change notification of
	// the insert reaches it without harm.
	f.insert(t, storetest.NewCollector("u1", "a1", "c1"))
	f.table.Wait()
	if got := f.table.Candidates(ctx, "alice", general); len(got) != 1 {
		t.Errorf("Candidates after Close = %v, want [c1]", candidateIDs(got))
	}
}

// TestTable_ConcurrentChanges reads while another goroutine writes; once the
// writes stop, a lookup must see the final state. Run it with -race.
func TestTable_ConcurrentChanges(t *testing.T) {
	f := newTableFixture(t)
	ctx := context.Background()

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i := 0; i < 4; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
					f.table.Candidates(ctx, "alice", general)
				}
			}
		}()
	}

	for i := 0; i < 30; i++ {
		f.insert(t, storetest.NewCollector("u1", "a1", fmt.Sprintf("c%02d", i)))
	}
	close(stop)
	readers.Wait()
	f.table.Wait()

	if got := f.table.Candidates(ctx, "alice", general); len(got) != 30 {
		t.Errorf("Candidates after concurrent inserts = %d collectors, want 30", len(got))
	}
}

// lockedWriter serializes writes of concurrent loggers into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
