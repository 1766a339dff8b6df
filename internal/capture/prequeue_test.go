package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

var _ workflow.Finder = (*workflowFinder)(nil)

// workflowFinder serves compiled workflows by "user/app/id", as the
// workflow table does, and returns ErrNotFound for other IDs.
type workflowFinder struct {
	mu        sync.Mutex
	workflows map[string]*workflow.Compiled
	err       error
	calls     int
}

func (f *workflowFinder) Find(_ context.Context, userID, appID, id string) (*workflow.Compiled, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++

	if f.err != nil {
		return nil, f.err
	}
	compiled, ok := f.workflows[userID+"/"+appID+"/"+id]
	if !ok {
		return nil, fmt.Errorf("workflow %s/%s/%s: %w", userID, appID, id, workflow.ErrNotFound)
	}
	return compiled, nil
}

func (f *workflowFinder) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// finderFor compiles one workflow of owner/dest named id with cfg.
func finderFor(t testing.TB, cfg filter.Config, id string, version int64, nodes ...*clarifaipb.WorkflowNode) *workflowFinder {
	t.Helper()
	flow, err := cfg.Compile(&clarifaipb.Workflow{Id: id, Nodes: nodes})
	if err != nil {
		t.Fatalf("compile workflow %s: %v", id, err)
	}
	return &workflowFinder{workflows: map[string]*workflow.Compiled{
		"owner/dest/" + id: {ID: id, Version: version, Flow: flow},
	}}
}

// workflowNode builds a node of operator typeID with output_info params,
// reading the node named input ("" for the first node).
func workflowNode(t testing.TB, id, typeID string, params map[string]any, input string) *clarifaipb.WorkflowNode {
	t.Helper()
	node := &clarifaipb.WorkflowNode{Id: id, Model: &clarifaipb.Model{Id: id + "-model", ModelTypeId: typeID}}
	if params != nil {
		s, err := structpb.NewStruct(params)
		if err != nil {
			t.Fatalf("params of node %s: %v", id, err)
		}
		node.Model.OutputInfo = &clarifaipb.OutputInfo{Params: s}
	}
	if input != "" {
		node.NodeInputs = []*clarifaipb.NodeInput{{NodeId: input}}
	}
	return node
}

// uncertain is a workflow that keeps inputs whose highest concept value is
// below 0.6.
func uncertain(t testing.TB) *workflowFinder {
	t.Helper()
	return finderFor(t, filter.Config{}, "uncertain", 3,
		workflowNode(t, "below", filter.TypeMaxProbabilityBelow, map[string]any{"threshold": 0.6}, ""))
}

// workflowCollector returns a collector of generalModel with pre-queue
// workflow id.
func workflowCollector(id, workflowID string) collector.Collector {
	c := newCollector(id)
	c.PreQueueWorkflowID = workflowID
	return c
}

// predicted is one output of a test response: its status and concepts.
type predicted struct {
	code     clarifaipb.StatusCode
	concepts []*clarifaipb.Concept
}

func ok(concepts ...*clarifaipb.Concept) predicted {
	return predicted{code: clarifaipb.StatusCode_SUCCESS, concepts: concepts}
}

func concept(id string, value float32) *clarifaipb.Concept {
	return &clarifaipb.Concept{Id: id, Name: id, Value: value}
}

// conceptResponse returns a response with one output per entry of outputs,
// in input order. Inputs past the outputs get no output.
func conceptResponse(code clarifaipb.StatusCode, inputs []*clarifaipb.Input, outputs ...predicted) *clarifaipb.MultiOutputResponse {
	resp := &clarifaipb.MultiOutputResponse{Status: &clarifaipb.Status{Code: code}}
	for i, out := range outputs {
		resp.Outputs = append(resp.Outputs, &clarifaipb.Output{
			Id:     fmt.Sprintf("out-%d", i),
			Status: &clarifaipb.Status{Code: out.code},
			Model: &clarifaipb.Model{
				Id: "general", UserId: "clarifai", AppId: "main",
				ModelVersion: &clarifaipb.ModelVersion{Id: "v1"},
			},
			Input: &clarifaipb.Input{Id: inputs[i].GetId()},
			Data:  &clarifaipb.Data{Concepts: out.concepts},
		})
	}
	return resp
}

// runREST plays one REST predict of inputs whose response is response.
func (h *harness) runREST(t testing.TB, requestID string, inputs []*clarifaipb.Input, response *clarifaipb.MultiOutputResponse) {
	t.Helper()
	h.run(exchange{
		path: generalPath, contentType: "application/json", caller: "bob", requestID: requestID,
		requestBody: restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs}),
		status:      "200", responseBody: restJSON(t, response),
	})
}

func inputIDs(records []*capturepb.Record) []string {
	ids := []string{}
	for _, rec := range records {
		ids = append(ids, rec.GetInput().GetId())
	}
	return ids
}

// inputsOf counts collectord_collector_inputs_total of collector owner/dest/id
// for outcome and further labels.
func (h *harness) inputsOf(t testing.TB, id, outcome string, labels ...string) int64 {
	t.Helper()
	labels = append([]string{"collector=owner/dest/" + id, "outcome=" + outcome}, labels...)
	return h.counter(t, "collectord_collector_inputs_total", labels...)
}

func TestExchange_PlanForWorkflowsAndPolicy(t *testing.T) {
	withWorkflow := workflowCollector("pre", "uncertain")
	postOnly := newCollector("post")
	postOnly.PostQueueWorkflowID = "later"
	balanced := newCollector("balanced")
	balanced.Policy = collector.Policy{MaxPerConcept: 5, BalanceWindow: time.Hour}
	limited := newCollector("limited")
	limited.Policy = collector.Policy{MaxPerHour: 10, MaxPerDay: 100, DedupWindow: time.Minute, Preview: true}

	inputsOnly := Plan{RequestBody: true, ResponseHeaders: true}
	outputs := Plan{RequestBody: true, ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true}
	tests := []struct {
		name      string
		collector collector.Collector
		want      Plan
	}{
		{name: "pre-queue workflow reads the outputs", collector: withWorkflow, want: outputs},
		{name: "class balance reads the top concept", collector: balanced, want: outputs},
		{name: "post-queue workflow only", collector: postOnly, want: inputsOnly},
		{name: "budgets, dedup and preview", collector: limited, want: inputsOnly},
		{name: "no workflow", collector: newCollector("plain"), want: inputsOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, Deps{Workflows: uncertain(t)}, tt.collector)
			x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{
				":method": "POST", ":path": generalPath, "content-type": "application/json", "x-test-caller": "bob",
			}})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}
			defer x.Close()
			if got := x.Plan(); got != tt.want {
				t.Errorf("Plan() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEngine_PreQueueMaxProbabilityBelow(t *testing.T) {
	// A known mix: the workflow keeps exactly the inputs whose every
	// concept is below 0.6.
	mix := []struct {
		output predicted
		keep   bool
	}{
		{output: ok(concept("cat", 0.30), concept("dog", 0.20)), keep: true},
		{output: ok(concept("cat", 0.5999)), keep: true},
		{output: ok(concept("cat", 0.60)), keep: false},
		{output: ok(concept("cat", 0.10), concept("dog", 0.95)), keep: false},
		{output: ok(concept("cat", 0.99)), keep: false},
		{output: ok(concept("bird", 0.01)), keep: true},
	}
	var inputs []*clarifaipb.Input
	var outputs []predicted
	var want []string
	for i, m := range mix {
		input := textInput(fmt.Sprintf("in-%d", i), fmt.Sprintf("text %d", i))
		inputs = append(inputs, input)
		outputs = append(outputs, m.output)
		if m.keep {
			want = append(want, input.GetId())
		}
	}
	response := conceptResponse(clarifaipb.StatusCode_SUCCESS, inputs, outputs...)
	grpcRequest := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general",
		Inputs:    inputs,
	}

	tests := []struct {
		name string
		ex   exchange
	}{
		{name: "rest", ex: exchange{
			path: generalPath, contentType: "application/json",
			requestBody:  restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs}),
			responseBody: restJSON(t, response),
		}},
		{name: "grpc", ex: exchange{
			path: "/clarifai.api.V2/PostModelOutputs", contentType: "application/grpc",
			requestBody:  grpcFrame(t, grpcRequest, false),
			responseBody: grpcFrame(t, response, true), grpcStatus: "0",
			responseHeaders: headers{"grpc-encoding": "gzip"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			finder := uncertain(t)
			h := newHarness(t, Config{}, Deps{Workflows: finder}, workflowCollector("c1", "uncertain"))
			tt.ex.caller, tt.ex.status, tt.ex.chunkSize = "bob", "200", 64
			h.run(tt.ex)

			records := h.finish(t)
			if got := inputIDs(records); !slices.Equal(got, want) {
				t.Errorf("kept inputs %v, want %v", got, want)
			}
			if finder.callCount() != 1 {
				t.Errorf("Find called %d times, want once per predict and collector", finder.callCount())
			}
			filtered := int64(len(mix) - len(want))
			if got := h.inputsOf(t, "c1", telemetry.OutcomeFiltered, "operator="+filter.TypeMaxProbabilityBelow); got != filtered {
				t.Errorf("collector inputs filtered by %s = %d, want %d", filter.TypeMaxProbabilityBelow, got, filtered)
			}
			if got := h.inputsOf(t, "c1", telemetry.OutcomeMatched); got != int64(len(mix)) {
				t.Errorf("collector inputs matched = %d, want %d", got, len(mix))
			}
			if got := h.captures(t, telemetry.OutcomeFiltered); got != filtered {
				t.Errorf("captures filtered = %d, want %d", got, filtered)
			}
		})
	}
}

func TestEngine_PreQueueMixedStatus(t *testing.T) {
	inputs := []*clarifaipb.Input{
		textInput("low", "1"), textInput("failed", "2"), textInput("high", "3"),
		textInput("empty", "4"), textInput("missing", "5"),
	}
	response := conceptResponse(clarifaipb.StatusCode_MIXED_STATUS, inputs,
		ok(concept("cat", 0.2)),
		predicted{code: clarifaipb.StatusCode_INPUT_FAILED},
		ok(concept("cat", 0.9)),
		ok(),
	)

	h := newHarness(t, Config{}, Deps{Workflows: uncertain(t)}, workflowCollector("c1", "uncertain"))
	h.runREST(t, "mixed", inputs, response)

	records := h.finish(t)
	if got := inputIDs(records); !slices.Equal(got, []string{"low"}) {
		t.Errorf("kept inputs %v, want [low]", got)
	}
	counts := []struct {
		outcome string
		labels  []string
		want    int64
	}{
		{outcome: telemetry.OutcomeMatched, want: 5},
		{outcome: telemetry.OutcomeOutputFailed, want: 2},
		{outcome: telemetry.OutcomeFiltered, labels: []string{"operator=" + filter.TypeMaxProbabilityBelow, "reason="}, want: 1},
		{outcome: telemetry.OutcomeFiltered, labels: []string{"operator=", "reason=" + filter.ReasonNoConcepts}, want: 1},
	}
	for _, c := range counts {
		if got := h.inputsOf(t, "c1", c.outcome, c.labels...); got != c.want {
			t.Errorf("collector inputs %s %v = %d, want %d", c.outcome, c.labels, got, c.want)
		}
	}
	if got := h.captures(t, telemetry.OutcomeOutputFailed); got != 2 {
		t.Errorf("captures output_failed = %d, want 2", got)
	}
}

func TestEngine_PreQueueOutputConcepts(t *testing.T) {
	synonyms := filter.Config{Synonyms: map[string][]string{"cat": {"kitten"}, "dog": {"puppy"}}}
	mapper := finderFor(t, synonyms, "rename", 2,
		workflowNode(t, "map", filter.TypeConceptSynonymMapper, nil, ""))
	inputs := []*clarifaipb.Input{textInput("a", "x")}
	response := conceptResponse(clarifaipb.StatusCode_SUCCESS, inputs,
		ok(concept("bird", 0.1), concept("cat", 0.8), concept("dog", 0.3)))

	tests := []struct {
		name           string
		collectOutputs bool
		want           []string
	}{
		{name: "collect outputs posts the workflow's concepts", collectOutputs: true, want: []string{"kitten", "puppy"}},
		{name: "without collect outputs the model's concepts", collectOutputs: false, want: []string{"bird", "cat", "dog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := workflowCollector("c1", "rename")
			c.CollectOutputs = tt.collectOutputs
			h := newHarness(t, Config{}, Deps{Workflows: mapper}, c)
			h.runREST(t, "r1", inputs, response)

			records := h.finish(t)
			if len(records) != 1 {
				t.Fatalf("got %d records, want 1", len(records))
			}
			var got []string
			for _, concept := range records[0].GetOutputConcepts() {
				got = append(got, concept.GetId())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("output_concepts = %v, want %v", got, tt.want)
			}
			if records[0].GetCollectOutputs() != tt.collectOutputs {
				t.Errorf("collect_outputs = %v, want %v", records[0].GetCollectOutputs(), tt.collectOutputs)
			}
			// Class balance counts the model's prediction, not the renamed one.
			if got := records[0].GetTopConceptId(); got != "cat" {
				t.Errorf("top_concept_id = %q, want cat", got)
			}
		})
	}
}

func TestEngine_PreviewDropRecords(t *testing.T) {
	inputs := []*clarifaipb.Input{textInput("low", "1"), textInput("high", "2"), textInput("failed", "3")}
	response := conceptResponse(clarifaipb.StatusCode_MIXED_STATUS, inputs,
		ok(concept("cat", 0.2)),
		ok(concept("cat", 0.9)),
		predicted{code: clarifaipb.StatusCode_INPUT_FAILED},
	)

	type outcome struct{ input, reason string }
	tests := []struct {
		name     string
		sample   float32
		workflow string
		want     []outcome // per record, in order; input "" is a drop record
	}{
		{
			name: "workflow", workflow: "uncertain",
			want: []outcome{{input: "low"}, {reason: "filtered"}, {reason: "output_failed"}},
		},
		{
			name: "sampled out", sample: 0.5, workflow: "uncertain",
			want: []outcome{{reason: "sampled_out"}, {reason: "sampled_out"}, {reason: "sampled_out"}},
		},
		{
			name: "missing workflow", workflow: "deleted",
			want: []outcome{{reason: "dropped"}, {reason: "dropped"}, {reason: "dropped"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := workflowCollector("c1", tt.workflow)
			c.RandomSample = tt.sample
			c.Policy.Preview = true
			c.Version = 4
			// The draw of 0.75 is over any sample below it.
			h := newHarness(t, Config{}, Deps{Workflows: uncertain(t), Rand: func() float64 { return 0.75 }}, c)
			h.runREST(t, "preview-1", inputs, response)

			records := h.finish(t)
			if len(records) != len(tt.want) {
				t.Fatalf("got %d records, want %d", len(records), len(tt.want))
			}
			for i, rec := range records {
				want := tt.want[i]
				if !rec.GetPreview() {
					t.Errorf("record %d: preview not set", i)
				}
				if rec.GetInputIndex() != uint32(i) || rec.GetId() != RecordID("owner", "dest", "c1", "preview-1", i) {
					t.Errorf("record %d: index %d id %s, want the input's own", i, rec.GetInputIndex(), rec.GetId())
				}
				if rec.GetCollectorVersion() != 4 {
					t.Errorf("record %d: collector_version = %d, want 4", i, rec.GetCollectorVersion())
				}
				if rec.GetPreviewDropReason() != want.reason {
					t.Errorf("record %d: preview_drop_reason = %q, want %q", i, rec.GetPreviewDropReason(), want.reason)
				}
				if rec.GetInput().GetId() != want.input {
					t.Errorf("record %d: input %q, want %q", i, rec.GetInput().GetId(), want.input)
				}
				if want.reason != "" && (rec.GetInput() != nil || len(rec.GetOutputConcepts()) != 0 || rec.GetContentHash() != "") {
					t.Errorf("drop record %d carries the input or its concepts: %v", i, rec)
				}
			}
		})
	}
}

func TestEngine_NoPreviewNoDropRecords(t *testing.T) {
	inputs := []*clarifaipb.Input{textInput("high", "1"), textInput("low", "2")}
	response := conceptResponse(clarifaipb.StatusCode_SUCCESS, inputs, ok(concept("cat", 0.9)), ok(concept("cat", 0.1)))
	h := newHarness(t, Config{}, Deps{Workflows: uncertain(t)}, workflowCollector("c1", "uncertain"))
	h.runREST(t, "r1", inputs, response)

	records := h.finish(t)
	if len(records) != 1 || records[0].GetPreview() || records[0].GetPreviewDropReason() != "" {
		t.Errorf("records = %v, want only the kept input, without preview fields", records)
	}
}

func TestContentHash(t *testing.T) {
	sum := func(b []byte) string {
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	image := []byte{0x89, 'P', 'N', 'G', 0, 1, 2}

	tests := []struct {
		name  string
		input *clarifaipb.Input
		want  string
	}{
		{name: "image bytes", input: &clarifaipb.Input{Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image, Url: "https://images.example/a.png"}}}, want: sum(image)},
		{name: "video bytes", input: &clarifaipb.Input{Data: &clarifaipb.Data{Video: &clarifaipb.Video{Base64: []byte("video")}}}, want: sum([]byte("video"))},
		{name: "audio bytes", input: &clarifaipb.Input{Data: &clarifaipb.Data{Audio: &clarifaipb.Audio{Base64: []byte("audio")}}}, want: sum([]byte("audio"))},
		{name: "text", input: textInput("t", "a cat on a mat"), want: sum([]byte("a cat on a mat"))},
		{name: "image url", input: &clarifaipb.Input{Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://images.example/a.png"}}}, want: sum([]byte("https://images.example/a.png"))},
		{name: "text url", input: &clarifaipb.Input{Data: &clarifaipb.Data{Text: &clarifaipb.Text{Url: "https://texts.example/a.txt"}}}, want: sum([]byte("https://texts.example/a.txt"))},
		{name: "no content", input: &clarifaipb.Input{Id: "bare"}, want: ""},
		{name: "nil input", input: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := contentHash(tt.input); got != tt.want {
				t.Errorf("contentHash = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTopConceptID(t *testing.T) {
	tests := []struct {
		name     string
		concepts []*clarifaipb.Concept
		want     string
	}{
		{name: "none", want: ""},
		{name: "one", concepts: []*clarifaipb.Concept{concept("cat", 0.1)}, want: "cat"},
		{name: "highest", concepts: []*clarifaipb.Concept{concept("cat", 0.1), concept("dog", 0.7), concept("bird", 0.3)}, want: "dog"},
		{name: "ties keep the first", concepts: []*clarifaipb.Concept{concept("cat", 0.2), concept("dog", 0.5), concept("bird", 0.5)}, want: "dog"},
		{name: "zero values", concepts: []*clarifaipb.Concept{concept("cat", 0), concept("dog", 0)}, want: "cat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := topConceptID(tt.concepts); got != tt.want {
				t.Errorf("topConceptID = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEngine_RecordFields(t *testing.T) {
	image := testImage(t)
	inputs := []*clarifaipb.Input{
		{Id: "img", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}},
		{Id: "url", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://images.example/cat.jpg"}}},
	}
	response := conceptResponse(clarifaipb.StatusCode_SUCCESS, inputs,
		ok(concept("cat", 0.3), concept("dog", 0.5)),
		ok(concept("bird", 0.4)))

	c := workflowCollector("c1", "uncertain")
	c.PostQueueWorkflowID = "review"
	c.Version = 9
	c.Policy = collector.Policy{
		MaxPerHour: 10, MaxPerDay: 100, DedupWindow: 90 * time.Second,
		MaxPerConcept: 3, BalanceWindow: 1500 * time.Millisecond,
	}
	h := newHarness(t, Config{}, Deps{Workflows: uncertain(t)}, c)
	h.runREST(t, "r1", inputs, response)

	records := h.finish(t)
	if len(records) != 2 {
		t.Fatalf("got %d records, want 2", len(records))
	}
	wantPolicy := &clarifaipb.CollectorPolicy{
		MaxInputsPerHour: 10, MaxInputsPerDay: 100, DedupWindowSeconds: 90,
		MaxInputsPerConcept: 3, BalanceWindowSeconds: 2,
	}
	imageSum := sha256.Sum256(image)
	urlSum := sha256.Sum256([]byte("https://images.example/cat.jpg"))
	wantHash := []string{hex.EncodeToString(imageSum[:]), hex.EncodeToString(urlSum[:])}
	wantTop := []string{"dog", "bird"}
	for i, rec := range records {
		if rec.GetCollectorVersion() != 9 {
			t.Errorf("record %d collector_version = %d, want 9", i, rec.GetCollectorVersion())
		}
		if rec.GetPreQueueWorkflowId() != "uncertain" || rec.GetPreQueueWorkflowVersion() != 3 {
			t.Errorf("record %d pre-queue workflow = %s v%d, want uncertain v3", i, rec.GetPreQueueWorkflowId(), rec.GetPreQueueWorkflowVersion())
		}
		if rec.GetPostQueueWorkflowId() != "review" {
			t.Errorf("record %d post_queue_workflow_id = %q, want review", i, rec.GetPostQueueWorkflowId())
		}
		if !proto.Equal(rec.GetPolicy(), wantPolicy) {
			t.Errorf("record %d policy = %v, want %v", i, rec.GetPolicy(), wantPolicy)
		}
		if rec.GetContentHash() != wantHash[i] {
			t.Errorf("record %d content_hash = %q, want %q", i, rec.GetContentHash(), wantHash[i])
		}
		if rec.GetTopConceptId() != wantTop[i] {
			t.Errorf("record %d top_concept_id = %q, want %q", i, rec.GetTopConceptId(), wantTop[i])
		}
		if rec.GetPreview() || rec.GetPreviewDropReason() != "" {
			t.Errorf("record %d has preview fields for a collector that does not preview", i)
		}
		if len(rec.GetOutputConcepts()) == 0 || rec.GetCollectOutputs() {
			t.Errorf("record %d: output_concepts %v with collect_outputs %v, want the read output without collect_outputs",
				i, rec.GetOutputConcepts(), rec.GetCollectOutputs())
		}
	}
}

func TestEngine_RecordFieldsWithoutResponse(t *testing.T) {
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	inputs := []*clarifaipb.Input{textInput("a", "x")}
	h.run(exchange{
		path: generalPath, caller: "bob", status: "200",
		requestBody: restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs}),
	})

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	rec := records[0]
	if rec.GetTopConceptId() != "" || len(rec.GetOutputConcepts()) != 0 {
		t.Errorf("top concept %q, concepts %v without a read response", rec.GetTopConceptId(), rec.GetOutputConcepts())
	}
	if rec.GetPolicy() != nil || rec.GetPreQueueWorkflowId() != "" || rec.GetPreQueueWorkflowVersion() != 0 {
		t.Errorf("record has policy %v, workflow %q v%d; want none", rec.GetPolicy(), rec.GetPreQueueWorkflowId(), rec.GetPreQueueWorkflowVersion())
	}
	if rec.GetCollectorVersion() != 1 || rec.GetContentHash() != "" {
		t.Errorf("collector_version %d, content_hash %q; want 1 and no hash for a collector that does not deduplicate", rec.GetCollectorVersion(), rec.GetContentHash())
	}
}

// failingOperator fails every Apply, as an operator that lost its backend
// would.
type failingOperator struct{}

func (failingOperator) Type() string { return filter.TypeMetadataFilter }

func (failingOperator) Apply(context.Context, *filter.Item, []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	return nil, errors.New("operator backend unavailable")
}

func TestEngine_WorkflowUnavailable(t *testing.T) {
	broken := &workflowFinder{workflows: map[string]*workflow.Compiled{
		"owner/dest/failing": {ID: "failing", Version: 1, Flow: &filter.Workflow{Nodes: []filter.Node{{ID: "gate", Operator: failingOperator{}}}}},
		"owner/dest/empty":   {ID: "empty", Version: 1},
	}}

	tests := []struct {
		name     string
		finder   workflow.Finder // nil leaves Deps.Workflows nil
		workflow string
		reason   string
		logs     int // warning lines naming the workflow
	}{
		{name: "not found", finder: uncertain(t), workflow: "deleted", reason: reasonWorkflowMissing, logs: 2},
		{name: "does not compile", finder: &workflowFinder{err: errors.New("remote endpoint gone")}, workflow: "uncertain", reason: reasonWorkflowError, logs: 2},
		{name: "operator fails", finder: broken, workflow: "failing", reason: reasonWorkflowError, logs: 2},
		{name: "finder returns nothing", finder: broken, workflow: "empty", reason: reasonWorkflowError, logs: 2},
		{name: "no finder", workflow: "uncertain", reason: reasonWorkflowsUnavailable, logs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			deps := Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if tt.finder != nil {
				deps.Workflows = tt.finder
			}
			h := newHarness(t, Config{Assemblers: 1}, deps, workflowCollector("c1", tt.workflow))
			inputs := []*clarifaipb.Input{textInput("a", "secret body text"), textInput("b", "more text")}
			response := conceptResponse(clarifaipb.StatusCode_SUCCESS, inputs, ok(concept("cat", 0.1)), ok(concept("dog", 0.1)))
			h.runREST(t, "r1", inputs, response)
			h.runREST(t, "r2", inputs, response)

			if records := h.finish(t); len(records) != 0 {
				t.Errorf("got %d records, want none", len(records))
			}
			if got := h.captures(t, telemetry.OutcomeDropped, tt.reason); got != 4 {
				t.Errorf("captures dropped/%s = %d, want 4", tt.reason, got)
			}
			if got := h.inputsOf(t, "c1", telemetry.OutcomeDropped, "reason="+tt.reason); got != 4 {
				t.Errorf("collector inputs dropped/%s = %d, want 4", tt.reason, got)
			}

			text := logs.String()
			if got := strings.Count(text, "workflow_id="+tt.workflow); got != tt.logs {
				t.Errorf("%d log lines name the workflow, want %d:\n%s", got, tt.logs, text)
			}
			if !strings.Contains(text, "collector_id=c1") {
				t.Errorf("logs do not name the collector:\n%s", text)
			}
			if strings.Contains(text, "secret body text") {
				t.Errorf("logs quote the request body:\n%s", text)
			}
		})
	}
}

func TestExchange_AbortedBeforeResponseWithWorkflow(t *testing.T) {
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})

	tests := []struct {
		name  string
		drive func(x *Exchange)
	}{
		{name: "before the response headers", drive: func(x *Exchange) { x.RequestBody(body, true) }},
		{name: "before the response body ended", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.ResponseHeaders(headers{":status": "200"}, false)
			x.ResponseBody([]byte(`{"status":{"code":10000},"outp`), false)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			finder := uncertain(t)
			h := newHarness(t, Config{}, Deps{Workflows: finder}, workflowCollector("c1", "uncertain"))
			x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}
			tt.drive(x)
			if !bytes.Equal(x.job.requestBody, body) {
				t.Fatal("the request body is not kept while the response is due")
			}
			x.Close()

			if x.job.requestBody != nil || x.job.responseBody != nil {
				t.Error("Close before the response ended kept the body buffers")
			}
			if records := h.finish(t); len(records) != 0 {
				t.Errorf("got %d records from an aborted exchange", len(records))
			}
			if got := h.captures(t, telemetry.OutcomeAborted, reasonResponseIncomplete); got != 1 {
				t.Errorf("aborted/%s = %d, want 1", reasonResponseIncomplete, got)
			}
			if finder.callCount() != 0 {
				t.Errorf("Find called %d times for an aborted exchange", finder.callCount())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
