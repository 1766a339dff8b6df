package ingest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// staticFinder is a workflow.Finder over workflows compiled with
// filter.Config.Compile, as the workflow table serves them.
type staticFinder struct {
	mu    sync.Mutex
	flows map[string]*workflow.Compiled // "user/app/id"
}

func newStaticFinder() *staticFinder {
	return &staticFinder{flows: map[string]*workflow.Compiled{}}
}

func (f *staticFinder) Find(_ context.Context, userID, appID, id string) (*workflow.Compiled, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	compiled, ok := f.flows[userID+"/"+appID+"/"+id]
	if !ok {
		return nil, fmt.Errorf("find workflow %s/%s/%s: %w", userID, appID, id, workflow.ErrNotFound)
	}
	return compiled, nil
}

// put compiles nodes with cfg and stores them as workflow id of the app.
func (f *staticFinder) put(t *testing.T, userID, appID, id string, cfg filter.Config, nodes ...*clarifaipb.WorkflowNode) {
	t.Helper()
	flow, err := cfg.Compile(&clarifaipb.Workflow{Id: id, Nodes: nodes})
	if err != nil {
		t.Fatalf("compile workflow %s: %v", id, err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows[userID+"/"+appID+"/"+id] = &workflow.Compiled{ID: id, Version: 1, Flow: flow}
}

// workflowNode builds a node with an operator type, its params and the node
// it reads ("" for the first node).
func workflowNode(t *testing.T, id, typeID string, params map[string]any, input string) *clarifaipb.WorkflowNode {
	t.Helper()
	n := &clarifaipb.WorkflowNode{Id: id, Model: &clarifaipb.Model{Id: id + "-model", ModelTypeId: typeID}}
	if params != nil {
		s, err := structpb.NewStruct(params)
		if err != nil {
			t.Fatalf("params of node %s: %v", id, err)
		}
		n.Model.OutputInfo = &clarifaipb.OutputInfo{Params: s}
	}
	if input != "" {
		n.NodeInputs = []*clarifaipb.NodeInput{{NodeId: input}}
	}
	return n
}

// keepTrueNode builds a metadata-filter node that keeps inputs whose
// metadata has "keep": true.
func keepTrueNode(t *testing.T, id, input string) *clarifaipb.WorkflowNode {
	return workflowNode(t, id, filter.TypeMetadataFilter, map[string]any{
		"conditions": []any{map[string]any{"path": "keep", "equals": true}},
	}, input)
}

// withMetadataKeep sets the input's metadata "keep" and gives the record the
// concepts the sidecar recorded, which post-queue nodes start from.
func withMetadataKeep(t *testing.T, rec *capturepb.Record, keep bool) *capturepb.Record {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"keep": keep})
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	rec.Input.Data.Metadata = md
	rec.OutputConcepts = []*clarifaipb.Concept{{Id: "cat", Value: 0.9}}
	return rec
}

func (e *env) screenWorkers(t *testing.T, dest Destination, cfg WorkerConfig, deps WorkerDeps) *Workers {
	t.Helper()
	deps.Meter = e.metrics.meterProvider().Meter("test")
	deps.Logger = e.logger
	w, err := StartWorkers(e.queue, dest, cfg, deps)
	if err != nil {
		t.Fatalf("StartWorkers: %v", err)
	}
	return w
}

// collectorInputs sums collectord_collector_inputs_total for one outcome
// and the given further labels.
func (e *env) collectorInputs(t *testing.T, outcome string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	return e.metrics.sum(t, "collectord_collector_inputs_total", append(attrs, attribute.String("outcome", outcome))...)
}

// fakeModel is a Clarifai-compatible model API for remote-model nodes. It
// serves POST .../models/{id}/outputs with one output per input, and its
// script picks each request's HTTP status by the request's number.
type fakeModel struct {
	server *httptest.Server

	mu     sync.Mutex
	script func(n int) int
	seen   []string // the text of each request's input, in order
}

func newFakeModel(t *testing.T, script func(n int) int) *fakeModel {
	t.Helper()
	m := &fakeModel{script: script}
	m.server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.server.Close)
	return m
}

func (m *fakeModel) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req clarifaipb.PostModelOutputsRequest
	if err := protojson.Unmarshal(body, &req); err != nil || len(req.GetInputs()) != 1 {
		m.reply(w, http.StatusBadRequest, &clarifaipb.MultiOutputResponse{
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_PREDICT_INVALID_REQUEST, Description: "Invalid request"},
		})
		return
	}

	m.mu.Lock()
	n := len(m.seen)
	m.seen = append(m.seen, req.GetInputs()[0].GetData().GetText().GetRaw())
	status := m.script(n)
	m.mu.Unlock()

	if status != http.StatusOK {
		// An error reply also carries a failed status in its body.
		m.reply(w, status, &clarifaipb.MultiOutputResponse{
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_FAILURE, Description: "Model is not available"},
		})
		return
	}
	m.reply(w, http.StatusOK, &clarifaipb.MultiOutputResponse{
		Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"},
		Outputs: []*clarifaipb.Output{{
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"},
			Input:  req.GetInputs()[0],
			Data:   &clarifaipb.Data{Concepts: []*clarifaipb.Concept{{Id: "remote-concept", Value: 0.8}}},
		}},
	})
}

func (m *fakeModel) reply(w http.ResponseWriter, status int, resp *clarifaipb.MultiOutputResponse) {
	raw, _ := protojson.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

func (m *fakeModel) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen)
}

// remoteConfig compiles remote-model nodes against m as endpoint "vision".
func (m *fakeModel) remoteConfig() filter.Config {
	return filter.Config{RemoteEndpoints: map[string]*filter.RemoteEndpoint{
		"vision": {BaseURL: m.server.URL, Key: "remote-model-key"},
	}}
}

func remoteNode(t *testing.T, id, input string) *clarifaipb.WorkflowNode {
	return workflowNode(t, id, filter.TypeRemoteModel, map[string]any{
		"endpoint": "vision", "user_id": "models", "app_id": "main", "model_id": "general",
	}, input)
}

func TestScreen_PostQueueMetadataFilter(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	finder := newStaticFinder()
	finder.put(t, "u1", "a1", "wf", filter.Config{}, keepTrueNode(t, "keep-true", ""))

	var recs []*capturepb.Record
	want := map[string]bool{}
	for i := range 20 {
		keep := i%3 == 0
		rec := withMetadataKeep(t, newRecord("u1", "a1", "c1", i), keep)
		rec.PostQueueWorkflowId = "wf"
		recs = append(recs, rec)
		if keep {
			want[rec.GetId()] = true
		}
	}
	// A collector without a post-queue workflow is not filtered.
	plain := newRecords("u1", "a1", "c2", 5)
	for _, rec := range plain {
		want[rec.GetId()] = true
	}
	env.publishAll(t, append(recs, plain...))

	store := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(store), fastWorkerConfig(), WorkerDeps{Workflows: finder})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	stored, _ := store.snapshot()
	for id := range want {
		if stored[id] != 1 {
			t.Errorf("record %s stored %d times, want 1", id, stored[id])
		}
	}
	for id := range stored {
		if !want[id] {
			t.Errorf("record %s stored, want it filtered", id)
		}
	}
	filtered := int64(len(recs) + len(plain) - len(want))
	if got := env.collectorInputs(t, telemetry.OutcomeFiltered, attribute.String("operator", filter.TypeMetadataFilter),
		attribute.String("collector", "u1/a1/c1")); got != filtered {
		t.Errorf("filtered by metadata-filter = %d, want %d", got, filtered)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeDelivered, attribute.String("collector", "u1/a1/c1")); got != int64(len(want)-len(plain)) {
		t.Errorf("delivered for collector c1 = %d, want %d", got, len(want)-len(plain))
	}
	if got := env.collectorInputs(t, telemetry.OutcomeDelivered, attribute.String("collector", "u1/a1/c2")); got != int64(len(plain)) {
		t.Errorf("delivered for collector c2 = %d, want %d", got, len(plain))
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
}

func TestScreen_RemoteModelRetriesThenDelivers(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 5})
	defer env.close(t)

	model := newFakeModel(t, func(n int) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	finder := newStaticFinder()
	finder.put(t, "u1", "a1", "remote", model.remoteConfig(),
		remoteNode(t, "predict", ""),
		workflowNode(t, "confident", filter.TypeMinProbabilityAbove, map[string]any{"threshold": 0.5}, "predict"))

	recs := newRecords("u1", "a1", "c1", 6)
	for _, rec := range recs {
		rec.PostQueueWorkflowId = "remote"
	}
	env.publishAll(t, recs)

	store := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(store), fastWorkerConfig(), WorkerDeps{Workflows: finder})
	waitFor(t, "all records stored", func() bool { return store.count() == len(recs) })
	closeWithin(t, "workers", w.Close)

	// Three responses were 503, so three records were evaluated twice.
	if got := len(model.requests()); got != len(recs)+3 {
		t.Errorf("model requests = %d, want %d (one per record, plus the three 503s)", got, len(recs)+3)
	}
	for _, rec := range recs {
		if !slices.Contains(model.requests(), rec.GetInput().GetData().GetText().GetRaw()) {
			t.Errorf("the model never received the input of record %s", rec.GetId())
		}
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeFiltered); got != 0 {
		t.Errorf("filtered = %d, want 0: a failed remote model never drops a record", got)
	}
	if got := env.collectorInputs(t, telemetry.OutcomeDelivered); got != int64(len(recs)) {
		t.Errorf("delivered = %d, want %d", got, len(recs))
	}
}

func TestScreen_RemoteModelDownDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 3})
	defer env.close(t)

	model := newFakeModel(t, func(int) int { return http.StatusServiceUnavailable })
	finder := newStaticFinder()
	// The metadata filter runs first, so records it drops never reach the
	// model.
	finder.put(t, "u1", "a1", "remote", model.remoteConfig(),
		keepTrueNode(t, "keep-true", ""), remoteNode(t, "predict", "keep-true"))

	var offered []*capturepb.Record
	for i := range 8 {
		rec := withMetadataKeep(t, newRecord("u1", "a1", "c1", i), i%2 == 0)
		rec.PostQueueWorkflowId = "remote"
		offered = append(offered, rec)
	}
	offered = append(offered, newRecords("u1", "a1", "c2", 3)...)
	env.publishAll(t, offered)

	store := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(store), fastWorkerConfig(), WorkerDeps{Workflows: finder})
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != 4 {
		t.Fatalf("dead letters = %d, want 4 (the records the metadata filter kept)", len(dead))
	}
	for _, d := range dead {
		if d.reason != ReasonPostQueueFailed || d.attempts != "3" {
			t.Errorf("dead letter %s: reason %q after %s attempts, want %q after 3", d.rec.GetId(), d.reason, d.attempts, ReasonPostQueueFailed)
		}
	}
	if got := len(model.requests()); got != 4*3 {
		t.Errorf("model requests = %d, want 12 (4 records, 3 deliveries each)", got)
	}

	delivered := env.collectorInputs(t, telemetry.OutcomeDelivered)
	filtered := env.collectorInputs(t, telemetry.OutcomeFiltered)
	failed := env.metrics.captures(t, telemetry.OutcomeFailed, ReasonPostQueueFailed)
	if delivered != 3 || filtered != 4 || failed != 4 {
		t.Errorf("delivered, filtered, failed = %d, %d, %d, want 3, 4, 4", delivered, filtered, failed)
	}
	if sum := delivered + filtered + int64(len(dead)); sum != int64(len(offered)) {
		t.Errorf("delivered + filtered + dead-lettered = %d, want the %d records offered", sum, len(offered))
	}
	if got := int64(store.count()); got != delivered {
		t.Errorf("stored = %d, want %d", got, delivered)
	}
}

func TestScreen_WorkflowMissingDeadLetters(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{MaxDeliver: 2})
	defer env.close(t)

	// The collector's workflow was deleted while its records were queued.
	finder := newStaticFinder()
	recs := newRecords("u1", "a1", "c1", 3)
	for _, rec := range recs {
		rec.PostQueueWorkflowId = "deleted"
	}
	env.publishAll(t, recs)

	store := newMemInputs()
	w := env.screenWorkers(t, NewLocalDestination(store), fastWorkerConfig(), WorkerDeps{Workflows: finder})
	waitFor(t, "records dead-lettered", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeFailed, ReasonWorkflowMissing) == int64(len(recs))
	})
	closeWithin(t, "workers", w.Close)

	dead := env.deadLetters(t)
	if len(dead) != len(recs) {
		t.Fatalf("dead letters = %d, want %d", len(dead), len(recs))
	}
	for _, d := range dead {
		if d.reason != ReasonWorkflowMissing || d.attempts != "2" {
			t.Errorf("dead letter %s: reason %q after %s attempts, want %q after 2", d.rec.GetId(), d.reason, d.attempts, ReasonWorkflowMissing)
		}
	}
	if got := store.count(); got != 0 {
		t.Errorf("stored = %d, want 0", got)
	}
}

func TestScreen_MissingCollaboratorDeadLetters(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*capturepb.Record)
		reason string
	}{
		{"workflow", func(r *capturepb.Record) { r.PostQueueWorkflowId = "wf" }, ReasonWorkflowsUnavailable},
		{"budget", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{MaxInputsPerHour: 10} }, ReasonAdmissionUnavailable},
		{"dedup", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{DedupWindowSeconds: 60} }, ReasonAdmissionUnavailable},
		{"preview", func(r *capturepb.Record) { r.Preview = true }, ReasonPreviewUnavailable},
		{"preview drop", func(r *capturepb.Record) { r.PreviewDropReason = "sampled_out"; r.Input = nil }, ReasonPreviewUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := openEnv(t, t.TempDir(), QueueConfig{})
			defer env.close(t)

			rec := newRecord("u1", "a1", "c1", 1)
			tt.modify(rec)
			plain := newRecord("u1", "a1", "c1", 2)
			env.publishAll(t, []*capturepb.Record{rec, plain})

			store := newMemInputs()
			w := env.screenWorkers(t, NewLocalDestination(store), fastWorkerConfig(), WorkerDeps{})
			waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, env.queue.StreamName()) == 0 })
			closeWithin(t, "workers", w.Close)

			dead := env.deadLetters(t)
			if len(dead) != 1 || dead[0].rec.GetId() != rec.GetId() {
				t.Fatalf("dead letters = %+v, want record %s", dead, rec.GetId())
			}
			if dead[0].reason != tt.reason || dead[0].attempts != "1" {
				t.Errorf("dead letter: reason %q after %s attempts, want %q after 1", dead[0].reason, dead[0].attempts, tt.reason)
			}
			stored, _ := store.snapshot()
			if len(stored) != 1 || stored[plain.GetId()] != 1 {
				t.Errorf("stored = %v, want only %s", stored, plain.GetId())
			}
		})
	}
}

func TestScreen_PlainGroupAllocatesNothing(t *testing.T) {
	w := &Workers{}
	items := make([]item, 64)
	for i := range items {
		items[i] = item{rec: newRecord("u1", "a1", "c1", i)}
	}
	// An empty policy sets no limit.
	items[3].rec.Policy = &clarifaipb.CollectorPolicy{}

	ref := DestinationRef{UserID: "u1", AppID: "a1", CollectorID: "c1"}
	var got []item
	allocs := testing.AllocsPerRun(100, func() { got = w.screen(context.Background(), ref, items) })
	if allocs != 0 {
		t.Errorf("screen of a plain group allocates %v times, want 0", allocs)
	}
	if len(got) != len(items) {
		t.Errorf("screen returned %d records, want all %d", len(got), len(items))
	}
}

func TestNeedsScreening(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*capturepb.Record)
		want   bool
	}{
		{"plain", func(*capturepb.Record) {}, false},
		{"empty policy", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{} }, false},
		{"half a class cap", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{MaxInputsPerConcept: 3} }, false},
		{"class cap", func(r *capturepb.Record) {
			r.Policy = &clarifaipb.CollectorPolicy{MaxInputsPerConcept: 3, BalanceWindowSeconds: 60}
		}, true},
		{"day budget", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{MaxInputsPerDay: 1} }, true},
		{"policy preview", func(r *capturepb.Record) { r.Policy = &clarifaipb.CollectorPolicy{Preview: true} }, true},
		{"record preview", func(r *capturepb.Record) { r.Preview = true }, true},
		{"drop reason", func(r *capturepb.Record) { r.PreviewDropReason = "filtered" }, true},
		{"post-queue workflow", func(r *capturepb.Record) { r.PostQueueWorkflowId = "wf" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecord("u1", "a1", "c1", 1)
			tt.modify(rec)
			if got := needsScreening(rec); got != tt.want {
				t.Errorf("needsScreening = %v, want %v", got, tt.want)
			}
		})
	}
}
