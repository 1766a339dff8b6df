package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// memStore is an in-memory workflow.Store that counts GetWorkflow calls and
// can fail them or hold them until released.
type memStore struct {
	mu        sync.Mutex
	workflows map[string]workflow.Workflow
	listeners []func()

	gets atomic.Int64
	fail atomic.Pointer[error]
	// gate, when set, is received from after each GetWorkflow has read the
	// store and before it returns, so a change can happen in between.
	gate chan struct{}
}

var _ workflow.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{workflows: map[string]workflow.Workflow{}}
}

func storeKey(userID, appID, id string) string {
	return fmt.Sprintf("%q/%q/%q", userID, appID, id)
}

func (s *memStore) InsertWorkflow(_ context.Context, w workflow.Workflow) error {
	s.mu.Lock()
	key := storeKey(w.UserID, w.AppID, w.ID)
	if _, exists := s.workflows[key]; exists {
		s.mu.Unlock()
		return workflow.ErrAlreadyExists
	}
	w.Version = 1
	s.workflows[key] = w
	s.mu.Unlock()

	s.changed()
	return nil
}

func (s *memStore) UpdateWorkflow(_ context.Context, w workflow.Workflow) error {
	s.mu.Lock()
	key := storeKey(w.UserID, w.AppID, w.ID)
	old, exists := s.workflows[key]
	if !exists {
		s.mu.Unlock()
		return workflow.ErrNotFound
	}
	w.Version = old.Version + 1
	s.workflows[key] = w
	s.mu.Unlock()

	s.changed()
	return nil
}

func (s *memStore) GetWorkflow(ctx context.Context, userID, appID, id string) (workflow.Workflow, error) {
	s.gets.Add(1)

	s.mu.Lock()
	w, exists := s.workflows[storeKey(userID, appID, id)]
	s.mu.Unlock()

	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return workflow.Workflow{}, ctx.Err()
		}
	}

	if err := s.fail.Load(); err != nil {
		return workflow.Workflow{}, *err
	}

	if !exists {
		return workflow.Workflow{}, workflow.ErrNotFound
	}

	return w, nil
}

func (s *memStore) ListWorkflows(_ context.Context, userID, appID string, offset, limit int) ([]workflow.Workflow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var found []workflow.Workflow
	for _, w := range s.workflows {
		if w.UserID == userID && w.AppID == appID {
			found = append(found, w)
		}
	}
	slices.SortFunc(found, func(a, b workflow.Workflow) int { return a.CreatedAt.Compare(b.CreatedAt) })

	return found[min(offset, len(found)):min(offset+limit, len(found))], nil
}

func (s *memStore) DeleteWorkflow(_ context.Context, userID, appID, id string) error {
	s.mu.Lock()
	key := storeKey(userID, appID, id)
	if _, exists := s.workflows[key]; !exists {
		s.mu.Unlock()
		return workflow.ErrNotFound
	}
	delete(s.workflows, key)
	s.mu.Unlock()

	s.changed()
	return nil
}

func (s *memStore) OnWorkflowChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.listeners = append(s.listeners, fn)
}

func (s *memStore) changed() {
	s.mu.Lock()
	listeners := slices.Clone(s.listeners)
	s.mu.Unlock()

	for _, fn := range listeners {
		fn()
	}
}

// thresholdWorkflow is a workflow of app u1/a1 that keeps concepts above
// threshold.
func thresholdWorkflow(t testing.TB, id string, threshold float64) workflow.Workflow {
	t.Helper()

	params, err := structpb.NewStruct(map[string]any{"threshold": threshold})
	if err != nil {
		t.Fatal(err)
	}

	return workflow.Workflow{
		UserID: "u1",
		AppID:  "a1",
		ID:     id,
		Nodes: []*clarifaipb.WorkflowNode{{
			Id:    "above",
			Model: &clarifaipb.Model{ModelTypeId: filter.TypeMinProbabilityAbove, OutputInfo: &clarifaipb.OutputInfo{Params: params}},
		}},
	}
}

type tableFixture struct {
	store  *memStore
	table  *workflow.Table
	reader *sdkmetric.ManualReader
}

func newTableFixture(t testing.TB, filters filter.Config) *tableFixture {
	t.Helper()

	f := &tableFixture{store: newMemStore(), reader: sdkmetric.NewManualReader()}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test")

	table, err := workflow.NewTable(f.store, filters, workflow.TableConfig{}, workflow.TableDeps{Meter: meter})
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	t.Cleanup(table.Close)
	f.table = table

	return f
}

func (f *tableFixture) insert(t testing.TB, w workflow.Workflow) {
	t.Helper()

	if err := f.store.InsertWorkflow(context.Background(), w); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}
}

// find looks up workflow id of app u1/a1 and waits until the cache contains
// the result.
func (f *tableFixture) find(t testing.TB, id string) (*workflow.Compiled, error) {
	t.Helper()

	compiled, err := f.table.Find(context.Background(), "u1", "a1", id)
	f.table.Wait()

	return compiled, err
}

// lookups returns collectord_workflow_lookups_total by result.
func (f *tableFixture) lookups(t testing.TB) map[string]int64 {
	t.Helper()

	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}

	counts := map[string]int64{}
	for _, scope := range rm.ScopeMetrics {
		for _, m := range scope.Metrics {
			if m.Name != "collectord_workflow_lookups_total" {
				continue
			}
			for _, point := range m.Data.(metricdata.Sum[int64]).DataPoints {
				result, _ := point.Attributes.Value("result")
				counts[result.AsString()] = point.Value
			}
		}
	}

	return counts
}

// keeps reports whether flow keeps an input whose only concept has value.
func keeps(t testing.TB, flow *filter.Workflow, value float32) bool {
	t.Helper()

	output := &clarifaipb.Output{
		Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
		Data:   &clarifaipb.Data{Concepts: []*clarifaipb.Concept{{Id: "cat", Value: value}}},
	}

	decision, err := flow.Evaluate(context.Background(), &filter.Item{Output: output})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	return decision.Keep
}

func TestTable_FindCompiles(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	compiled, err := f.find(t, "wf")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}

	if compiled.ID != "wf" || compiled.Version != 1 {
		t.Errorf("Find = %s version %d, want wf version 1", compiled.ID, compiled.Version)
	}

	if !keeps(t, compiled.Flow, 0.7) || keeps(t, compiled.Flow, 0.3) {
		t.Errorf("the compiled workflow does not apply its threshold of 0.5")
	}
}

func TestTable_CacheHit(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	first, err := f.find(t, "wf")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}

	second, err := f.find(t, "wf")
	if err != nil {
		t.Fatalf("second Find: %v", err)
	}

	if n := f.store.gets.Load(); n != 1 {
		t.Errorf("store queried %d times for two lookups, want 1", n)
	}

	if first != second {
		t.Errorf("the second lookup compiled the workflow again")
	}

	if got := f.lookups(t); got["hit"] != 1 || got["miss"] != 1 {
		t.Errorf("lookups = %v, want 1 hit and 1 miss", got)
	}
}

func TestTable_NegativeEntry(t *testing.T) {
	f := newTableFixture(t, filter.Config{})

	for range 2 {
		compiled, err := f.find(t, "missing")
		if !errors.Is(err, workflow.ErrNotFound) {
			t.Fatalf("Find = %v, %v; want ErrNotFound", compiled, err)
		}

		if compiled != nil {
			t.Errorf("Find returned %v together with ErrNotFound", compiled)
		}
	}

	if n := f.store.gets.Load(); n != 1 {
		t.Errorf("store queried %d times for two lookups of a missing workflow, want 1", n)
	}

	// Creating the workflow clears the negative entry.
	f.insert(t, thresholdWorkflow(t, "missing", 0.5))
	if _, err := f.find(t, "missing"); err != nil {
		t.Errorf("Find after insert: %v", err)
	}
}

func TestTable_InvalidatedOnUpdate(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	if _, err := f.find(t, "wf"); err != nil {
		t.Fatalf("Find: %v", err)
	}

	if err := f.store.UpdateWorkflow(context.Background(), thresholdWorkflow(t, "wf", 0.9)); err != nil {
		t.Fatalf("UpdateWorkflow: %v", err)
	}

	compiled, err := f.find(t, "wf")
	if err != nil {
		t.Fatalf("Find after update: %v", err)
	}

	if compiled.Version != 2 {
		t.Errorf("Version = %d after update, want 2", compiled.Version)
	}

	if keeps(t, compiled.Flow, 0.7) {
		t.Errorf("the workflow still keeps 0.7 after its threshold changed to 0.9")
	}
}

func TestTable_InvalidatedOnDelete(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	if _, err := f.find(t, "wf"); err != nil {
		t.Fatalf("Find: %v", err)
	}

	if err := f.store.DeleteWorkflow(context.Background(), "u1", "a1", "wf"); err != nil {
		t.Fatalf("DeleteWorkflow: %v", err)
	}

	if _, err := f.find(t, "wf"); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("Find after delete = %v, want ErrNotFound", err)
	}
}

func TestTable_KeyedByAppAndID(t *testing.T) {
	f := newTableFixture(t, filter.Config{})

	// With plain concatenation these three lookups would share one key.
	for _, ids := range [][3]string{{"u1", "a1|x", "wf"}, {"u1", "a1", "x|wf"}, {"u1|a1", "x", "wf"}} {
		w := thresholdWorkflow(t, ids[2], 0.5)
		w.UserID, w.AppID = ids[0], ids[1]
		w.Description = ids[0] + " " + ids[1]
		f.insert(t, w)
	}

	for _, ids := range [][3]string{{"u1", "a1|x", "wf"}, {"u1", "a1", "x|wf"}, {"u1|a1", "x", "wf"}} {
		compiled, err := f.table.Find(context.Background(), ids[0], ids[1], ids[2])
		f.table.Wait()
		if err != nil {
			t.Fatalf("Find(%q): %v", ids, err)
		}

		if compiled.ID != ids[2] {
			t.Errorf("Find(%q) returned workflow %q", ids, compiled.ID)
		}
	}

	if n := f.store.gets.Load(); n != 3 {
		t.Errorf("store queried %d times for 3 distinct workflows, want 3", n)
	}

	if _, err := f.table.Find(context.Background(), "u2", "a1", "wf"); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("Find of another user's workflow = %v, want ErrNotFound", err)
	}
}

func TestTable_StoreErrorNotCached(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	broken := errors.New("database is locked")
	f.store.fail.Store(&broken)

	_, err := f.find(t, "wf")
	if !errors.Is(err, broken) {
		t.Fatalf("Find = %v, want the store error", err)
	}

	if errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("a store error reads as ErrNotFound: %v", err)
	}

	f.store.fail.Store(nil)

	if _, err := f.find(t, "wf"); err != nil {
		t.Errorf("Find after the store recovered: %v", err)
	}

	if n := f.store.gets.Load(); n != 2 {
		t.Errorf("store queried %d times, want 2 because the error is not cached", n)
	}

	if got := f.lookups(t); got["error"] != 1 || got["miss"] != 1 {
		t.Errorf("lookups = %v, want 1 error and 1 miss", got)
	}
}

func TestTable_CompileErrorCached(t *testing.T) {
	// The stored workflow names a remote endpoint that this Config lacks, for
	// example because the operator removed it from the configuration.
	f := newTableFixture(t, filter.Config{})
	f.insert(t, remoteWorkflow(t))

	for range 2 {
		compiled, err := f.find(t, "remote")
		if err == nil {
			t.Fatalf("Find = %v, want a compile error", compiled)
		}

		for _, part := range []string{`"remote"`, "version 1", `workflow node "predict"`, `"vision"`} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not contain %q", err, part)
			}
		}

		if errors.Is(err, workflow.ErrNotFound) {
			t.Errorf("a compile error reads as ErrNotFound: %v", err)
		}
	}

	if n := f.store.gets.Load(); n != 1 {
		t.Errorf("store queried %d times, want 1 because the compile error is cached", n)
	}
}

func TestTable_UsesFilterConfig(t *testing.T) {
	endpoint := &filter.RemoteEndpoint{BaseURL: "http://127.0.0.1:1", Key: "k"}
	cfg := filter.Config{
		RemoteEndpoints: map[string]*filter.RemoteEndpoint{"vision": endpoint},
		Float64:         func() float64 { return 0.99 },
	}
	f := newTableFixture(t, cfg)
	f.insert(t, remoteWorkflow(t))

	compiled, err := f.find(t, "remote")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}

	if got := compiled.Flow.RemoteNodes(); !slices.Equal(got, []string{"predict"}) {
		t.Errorf("RemoteNodes = %v, want [predict]", got)
	}

	remote, ok := compiled.Flow.Nodes[1].Operator.(*filter.RemoteModel)
	if !ok {
		t.Fatalf("node 1 is %T, want *filter.RemoteModel", compiled.Flow.Nodes[1].Operator)
	}

	if remote.Endpoint != endpoint {
		t.Errorf("the remote node does not use the configured endpoint")
	}

	// The random source of the Config decides: 0.99 is not below keep_fraction
	// 0.5, so the sample node drops the input before the remote call.
	decision, err := compiled.Flow.EvaluateInput(context.Background(), &filter.Item{Input: &clarifaipb.Input{Id: "i"}},
		[]*clarifaipb.Concept{{Id: "cat", Value: 0.9}})
	if err != nil {
		t.Fatalf("EvaluateInput: %v", err)
	}

	if decision.Keep || decision.NodeID != "sample" {
		t.Errorf("decision = %+v, want a drop by node sample", decision)
	}
}

// remoteWorkflow is a workflow of app u1/a1 with a random-sample node
// followed by a remote-model node on endpoint "vision".
func remoteWorkflow(t testing.TB) workflow.Workflow {
	t.Helper()

	sample, err := structpb.NewStruct(map[string]any{"keep_fraction": 0.5})
	if err != nil {
		t.Fatal(err)
	}

	remote, err := structpb.NewStruct(map[string]any{"endpoint": "vision", "model_id": "general"})
	if err != nil {
		t.Fatal(err)
	}

	return workflow.Workflow{
		UserID: "u1",
		AppID:  "a1",
		ID:     "remote",
		Nodes: []*clarifaipb.WorkflowNode{
			{Id: "sample", Model: &clarifaipb.Model{ModelTypeId: filter.TypeRandomSample, OutputInfo: &clarifaipb.OutputInfo{Params: sample}}},
			{Id: "predict", NodeInputs: []*clarifaipb.NodeInput{{NodeId: "sample"}}, Model: &clarifaipb.Model{ModelTypeId: filter.TypeRemoteModel, OutputInfo: &clarifaipb.OutputInfo{Params: remote}}},
		},
	}
}

func TestTable_SingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newTableFixture(t, filter.Config{})
		f.insert(t, thresholdWorkflow(t, "wf", 0.5))
		f.store.gate = make(chan struct{})

		const callers = 20
		var done sync.WaitGroup
		results := make([]*workflow.Compiled, callers)
		errs := make([]error, callers)
		for i := range callers {
			done.Go(func() {
				results[i], errs[i] = f.table.Find(context.Background(), "u1", "a1", "wf")
			})
		}

		// Every caller is now waiting: one in the store query, the others
		// on its result.
		synctest.Wait()
		if n := f.store.gets.Load(); n != 1 {
			t.Errorf("store queried %d times by %d concurrent misses, want 1", n, callers)
		}

		close(f.store.gate)
		done.Wait()

		for i := range callers {
			if errs[i] != nil || results[i] != results[0] {
				t.Errorf("caller %d got %v, %v; want the shared compiled workflow", i, results[i], errs[i])
			}
		}

		f.table.Close()
	})
}

func TestTable_CallerCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newTableFixture(t, filter.Config{})
		f.insert(t, thresholdWorkflow(t, "wf", 0.5))
		f.store.gate = make(chan struct{})

		ctx, cancel := context.WithCancel(context.Background())
		result := make(chan error)
		go func() {
			_, err := f.table.Find(ctx, "u1", "a1", "wf")
			result <- err
		}()

		synctest.Wait()
		cancel()

		if err := <-result; !errors.Is(err, context.Canceled) {
			t.Errorf("Find after cancel = %v, want context.Canceled", err)
		}

		// The shared query runs on for later callers and fills the cache.
		close(f.store.gate)
		synctest.Wait()
		f.table.Wait()

		if _, err := f.table.Find(context.Background(), "u1", "a1", "wf"); err != nil {
			t.Errorf("Find after the query finished: %v", err)
		}

		if n := f.store.gets.Load(); n != 1 {
			t.Errorf("store queried %d times, want 1", n)
		}

		if got := f.lookups(t); got["canceled"] != 1 || got["hit"] != 1 {
			t.Errorf("lookups = %v, want 1 canceled and 1 hit", got)
		}

		f.table.Close()
	})
}

func TestTable_ChangeDuringLookup(t *testing.T) {
	// A lookup that read version 1 finishes after the update to version 2.
	// Its result must not be served to later lookups.
	synctest.Test(t, func(t *testing.T) {
		f := newTableFixture(t, filter.Config{})
		f.insert(t, thresholdWorkflow(t, "wf", 0.5))
		f.store.gate = make(chan struct{})

		first := make(chan *workflow.Compiled)
		go func() {
			compiled, _ := f.table.Find(context.Background(), "u1", "a1", "wf")
			first <- compiled
		}()

		synctest.Wait()
		if err := f.store.UpdateWorkflow(context.Background(), thresholdWorkflow(t, "wf", 0.9)); err != nil {
			t.Fatalf("UpdateWorkflow: %v", err)
		}

		close(f.store.gate)
		if got := <-first; got == nil || got.Version != 1 {
			t.Fatalf("the lookup that started first returned %v, want version 1", got)
		}
		f.table.Wait()

		compiled, err := f.table.Find(context.Background(), "u1", "a1", "wf")
		if err != nil {
			t.Fatalf("Find after update: %v", err)
		}

		if compiled.Version != 2 {
			t.Errorf("Find after update returned version %d, want 2", compiled.Version)
		}

		f.table.Close()
	})
}

func TestTable_Close(t *testing.T) {
	f := newTableFixture(t, filter.Config{})
	f.table.Close()
	f.table.Close()

	// A closed table still reads the store, and the change notification of
	// the insert reaches it without harm.
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))
	for range 2 {
		if _, err := f.find(t, "wf"); err != nil {
			t.Errorf("Find after Close: %v", err)
		}
	}

	if n := f.store.gets.Load(); n != 2 {
		t.Errorf("store queried %d times after Close, want 2 because nothing is cached", n)
	}
}

func TestTable_ConcurrentChanges(t *testing.T) {
	// Readers run while another goroutine updates. Once the updates stop, a
	// lookup must see the last version. Run it with -race.
	f := newTableFixture(t, filter.Config{})
	f.insert(t, thresholdWorkflow(t, "wf", 0.5))

	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = f.table.Find(context.Background(), "u1", "a1", "wf")
				}
			}
		})
	}

	for range 30 {
		if err := f.store.UpdateWorkflow(context.Background(), thresholdWorkflow(t, "wf", 0.5)); err != nil {
			t.Fatalf("UpdateWorkflow: %v", err)
		}
	}
	close(stop)
	readers.Wait()
	f.table.Wait()

	compiled, err := f.table.Find(context.Background(), "u1", "a1", "wf")
	if err != nil {
		t.Fatalf("Find: %v", err)
	}

	if compiled.Version != 31 {
		t.Errorf("Version = %d after 30 updates, want 31", compiled.Version)
	}
}

func TestNewTable_NilStore(t *testing.T) {
	if _, err := workflow.NewTable(nil, filter.Config{}, workflow.TableConfig{}, workflow.TableDeps{}); err == nil {
		t.Errorf("NewTable(nil) succeeded, want an error")
	}
}
