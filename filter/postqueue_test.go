package filter

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// remoteNode builds a remote-model node with the given params.
func remoteNode(t testing.TB, id string, params map[string]any, input string) *clarifaipb.WorkflowNode {
	t.Helper()

	return node(t, id, TypeRemoteModel, params, input)
}

func TestCompile_RemoteModelErrors(t *testing.T) {
	endpoints := map[string]*RemoteEndpoint{
		"vision": {BaseURL: "http://127.0.0.1:1", Key: testKey},
		"broken": {BaseURL: "ftp://127.0.0.1:1", Key: testKey},
	}

	tests := []struct {
		name   string
		params map[string]any
		parts  []string
	}{
		{"missing endpoint", map[string]any{"model_id": "general"}, []string{`"r"`, "output_info.params.endpoint:", "missing"}},
		{"unknown endpoint", map[string]any{"endpoint": "elsewhere", "model_id": "general"}, []string{`"r"`, "output_info.params.endpoint:", `"elsewhere"`, `"vision"`}},
		{"endpoint not a string", map[string]any{"endpoint": 3, "model_id": "general"}, []string{`"r"`, "output_info.params.endpoint:", "string"}},
		{"endpoint with bad base URL", map[string]any{"endpoint": "broken", "model_id": "general"}, []string{`"r"`, "output_info.params.endpoint:", `"broken"`, "http"}},
		{"missing model id", map[string]any{"endpoint": "vision"}, []string{`"r"`, "output_info.params.model_id:", "missing"}},
		{"empty model id", map[string]any{"endpoint": "vision", "model_id": ""}, []string{`"r"`, "output_info.params.model_id:"}},
		{"user without app", map[string]any{"endpoint": "vision", "model_id": "general", "user_id": "u"}, []string{`"r"`, "user_id", "app_id"}},
		{"app without user", map[string]any{"endpoint": "vision", "model_id": "general", "app_id": "a"}, []string{`"r"`, "user_id", "app_id"}},
		{"version not a string", map[string]any{"endpoint": "vision", "model_id": "general", "version_id": 2}, []string{`"r"`, "output_info.params.version_id:", "string"}},
		{"missing params", nil, []string{`"r"`, "output_info.params.endpoint:"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, err := Config{RemoteEndpoints: endpoints}.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{remoteNode(t, "r", tt.params, "")}})
			if err == nil {
				t.Fatalf("Compile = %v, want an error", wf)
			}

			requireErrorNames(t, err, tt.parts...)
		})
	}
}

func TestCompile_RemoteModelWithoutEndpoints(t *testing.T) {
	_, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		remoteNode(t, "r", map[string]any{"endpoint": "vision", "model_id": "general"}, ""),
	}})

	requireErrorNames(t, err, `"r"`, `"vision"`, "output_info.params.endpoint:", "no remote model endpoints are configured")
}

func TestCompile_RemoteModelParams(t *testing.T) {
	endpoint := &RemoteEndpoint{BaseURL: "http://127.0.0.1:1", Key: testKey}
	params := map[string]any{"endpoint": "vision", "model_id": "general", "user_id": "u", "app_id": "a", "version_id": "v1"}

	wf, err := Config{RemoteEndpoints: map[string]*RemoteEndpoint{"vision": endpoint}}.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{remoteNode(t, "r", params, "")}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	op, ok := wf.Nodes[0].Operator.(*RemoteModel)
	if !ok {
		t.Fatalf("operator is %T, want *RemoteModel", wf.Nodes[0].Operator)
	}

	want := RemoteModel{EndpointName: "vision", Endpoint: endpoint, UserID: "u", AppID: "a", ModelID: "general", VersionID: "v1"}
	if *op != want {
		t.Errorf("operator = %+v, want %+v", *op, want)
	}
}

// remoteChain compiles nodes with one endpoint "vision" at fake.
func remoteChain(t *testing.T, fake *fakeClarifai, nodes ...*clarifaipb.WorkflowNode) *Workflow {
	t.Helper()

	cfg := Config{RemoteEndpoints: map[string]*RemoteEndpoint{"vision": {BaseURL: fake.server.URL, Key: testKey}}}

	wf, err := cfg.Compile(&clarifaipb.Workflow{Nodes: nodes})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	return wf
}

func TestWorkflow_EvaluateInput(t *testing.T) {
	const predicted = `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000},
		"data": {"concepts": [{"id": "cat", "value": 0.6000000238418579}, {"id": "dog", "value": 0.3}]}}]}`
	const rejected = `{"status": {"code": 10010}, "outputs": [{"status": {"code": 30002, "description": "Input failed"}}]}`
	remoteParams := map[string]any{"endpoint": "vision", "model_id": "general"}
	atLeast := func(id, input string) *clarifaipb.WorkflowNode {
		n := thresholderNode(t, "GREATER_THAN_OR_EQUAL")
		n.Id = id
		if input != "" {
			n.NodeInputs = []*clarifaipb.NodeInput{{NodeId: input}}
		}
		return n
	}

	tests := []struct {
		name     string
		nodes    []*clarifaipb.WorkflowNode
		response string
		recorded []*clarifaipb.Concept
		keep     bool
		reason   string
		nodeID   string
		operator string
		want     []string
		// calls is how many requests the remote model must receive.
		calls int
	}{
		{
			name:     "remote first ignores recorded concepts",
			nodes:    []*clarifaipb.WorkflowNode{remoteNode(t, "remote", remoteParams, ""), atLeast("threshold", "remote")},
			response: predicted,
			recorded: concepts("bird", float32(0.99)),
			keep:     true, reason: ReasonKept, want: []string{"cat"}, calls: 1,
		},
		{
			name:     "remote first without recorded concepts",
			nodes:    []*clarifaipb.WorkflowNode{remoteNode(t, "remote", remoteParams, ""), atLeast("threshold", "remote")},
			response: predicted,
			keep:     true, reason: ReasonKept, want: []string{"cat"}, calls: 1,
		},
		{
			name:     "remote rejects the input",
			nodes:    []*clarifaipb.WorkflowNode{remoteNode(t, "remote", remoteParams, ""), atLeast("threshold", "remote")},
			response: rejected,
			recorded: concepts("cat", float32(0.9)),
			reason:   ReasonNodeDropped, nodeID: "remote", operator: TypeRemoteModel, want: []string{}, calls: 1,
		},
		{
			name:     "filter before remote drops without a call",
			nodes:    []*clarifaipb.WorkflowNode{atLeast("threshold", ""), remoteNode(t, "remote", remoteParams, "threshold")},
			response: predicted,
			recorded: concepts("cat", float32(0.1)),
			reason:   ReasonNodeDropped, nodeID: "threshold", operator: TypeConceptThresholder, want: []string{}, calls: 0,
		},
		{
			name:     "filter before remote passes",
			nodes:    []*clarifaipb.WorkflowNode{atLeast("threshold", ""), remoteNode(t, "remote", remoteParams, "threshold")},
			response: predicted,
			recorded: concepts("cat", float32(0.7)),
			keep:     true, reason: ReasonKept, want: []string{"cat", "dog"}, calls: 1,
		},
		{
			name:     "no recorded concepts reach a filter",
			nodes:    []*clarifaipb.WorkflowNode{atLeast("threshold", ""), remoteNode(t, "remote", remoteParams, "threshold")},
			response: predicted,
			reason:   ReasonNodeDropped, nodeID: "threshold", operator: TypeConceptThresholder, want: []string{}, calls: 0,
		},
		{
			name:     "remote output without concepts reaches a filter",
			nodes:    []*clarifaipb.WorkflowNode{remoteNode(t, "remote", remoteParams, ""), atLeast("threshold", "remote")},
			response: `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}, "data": {}}]}`,
			recorded: concepts("cat", float32(0.9)),
			reason:   ReasonNodeDropped, nodeID: "remote", operator: TypeRemoteModel, want: []string{}, calls: 1,
		},
		{
			name:     "no remote node",
			nodes:    []*clarifaipb.WorkflowNode{atLeast("threshold", "")},
			recorded: concepts("cat", float32(0.6)),
			keep:     true, reason: ReasonKept, want: []string{"cat"}, calls: 0,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeClarifai(t, respondJSON(200, tt.response))
			wf := remoteChain(t, fake, tt.nodes...)

			decision, err := wf.EvaluateInput(context.Background(), &Item{Input: remoteInput()}, tt.recorded)
			if err != nil {
				t.Fatalf("EvaluateInput: %v", err)
			}

			if decision.Keep != tt.keep {
				t.Errorf("Keep = %v, want %v", decision.Keep, tt.keep)
			}

			if decision.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q", decision.Reason, tt.reason)
			}

			if decision.NodeID != tt.nodeID {
				t.Errorf("NodeID = %q, want %q", decision.NodeID, tt.nodeID)
			}

			if decision.Operator != tt.operator {
				t.Errorf("Operator = %q, want %q", decision.Operator, tt.operator)
			}

			if ids := conceptIDs(decision.Concepts); !slices.Equal(ids, tt.want) {
				t.Errorf("concepts = %v, want %v", ids, tt.want)
			}

			if calls := fake.requestCount(); calls != tt.calls {
				t.Errorf("remote model received %d requests, want %d", calls, tt.calls)
			}
		})
	}
}

func TestWorkflow_EvaluateInputRemoteError(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(http.StatusServiceUnavailable, `{"status": {"code": 10030}}`, "Retry-After", "3"))
	wf := remoteChain(t, fake, remoteNode(t, "remote", map[string]any{"endpoint": "vision", "model_id": "general"}, ""))

	decision, err := wf.EvaluateInput(context.Background(), &Item{Input: remoteInput()}, nil)

	var remoteErr *RemoteError
	if !errors.As(err, &remoteErr) {
		t.Fatalf("EvaluateInput = %+v, %v; want a *RemoteError", decision, err)
	}

	requireErrorNames(t, err, `workflow node "remote"`, TypeRemoteModel)

	if remoteErr.HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("HTTPStatus = %d, want 503", remoteErr.HTTPStatus)
	}

	if decision.Keep {
		t.Errorf("Keep = true together with an error")
	}
}

func TestWorkflow_EvaluateInputCanceled(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}]}`))
	wf := remoteChain(t, fake, remoteNode(t, "remote", map[string]any{"endpoint": "vision", "model_id": "general"}, ""))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := wf.EvaluateInput(ctx, &Item{Input: remoteInput()}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("EvaluateInput error = %v, want context.Canceled", err)
	}
}

func TestWorkflow_EvaluateRejectsRemote(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}]}`))
	wf := remoteChain(t, fake,
		node(t, "sample", TypeRandomSample, map[string]any{"keep_fraction": 1}, ""),
		remoteNode(t, "remote", map[string]any{"endpoint": "vision", "model_id": "general"}, "sample"),
	)

	_, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("cat", float32(0.9)))})
	requireErrorNames(t, err, `"remote"`, TypeRemoteModel, "post-queue")

	if calls := fake.requestCount(); calls != 0 {
		t.Errorf("pre-queue evaluation sent %d requests to the remote model", calls)
	}
}

func TestWorkflow_RemoteNodes(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(200, `{}`))
	params := map[string]any{"endpoint": "vision", "model_id": "general"}

	tests := []struct {
		name  string
		nodes []*clarifaipb.WorkflowNode
		want  []string
	}{
		{"none", []*clarifaipb.WorkflowNode{node(t, "p", TypeMaxProbabilityBelow, map[string]any{"threshold": 0.5}, "")}, nil},
		{"one", []*clarifaipb.WorkflowNode{node(t, "p", TypeMaxProbabilityBelow, map[string]any{"threshold": 0.5}, ""), remoteNode(t, "r", params, "p")}, []string{"r"}},
		{"in chain order", []*clarifaipb.WorkflowNode{remoteNode(t, "second", params, "first"), remoteNode(t, "first", params, "")}, []string{"first", "second"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := remoteChain(t, fake, tt.nodes...)

			if got := wf.RemoteNodes(); !slices.Equal(got, tt.want) {
				t.Errorf("RemoteNodes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWorkflow_EvaluateOperator(t *testing.T) {
	// A pre-queue drop names the operator type of the dropping node.
	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "low", TypeMaxProbabilityBelow, map[string]any{"threshold": 0.8}, ""),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("cat", float32(0.9)))})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if decision.Operator != TypeMaxProbabilityBelow || decision.NodeID != "low" {
		t.Errorf("decision = %+v, want node low of type %s", decision, TypeMaxProbabilityBelow)
	}

	keptDecision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("cat", float32(0.5)))})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if keptDecision.Operator != "" {
		t.Errorf("kept decision has Operator %q, want none", keptDecision.Operator)
	}
}

func TestWorkflow_EvaluateInputSkipsEmpty(t *testing.T) {
	// A node that receives no concepts drops the input without running its operator,
	// so a random-sample node draws no number.
	var draws atomic.Int64
	cfg := Config{Float64: func() float64 {
		draws.Add(1)
		return 0
	}}

	wf, err := cfg.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "sample", TypeRandomSample, map[string]any{"keep_fraction": 1}, ""),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	decision, err := wf.EvaluateInput(context.Background(), &Item{Input: remoteInput()}, nil)
	if err != nil {
		t.Fatalf("EvaluateInput: %v", err)
	}

	if decision.Reason != ReasonNodeDropped || decision.Operator != TypeRandomSample {
		t.Errorf("decision = %+v, want a drop by the random-sample node", decision)
	}

	if n := draws.Load(); n != 0 {
		t.Errorf("random source called %d times, want 0", n)
	}
}
