package filter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestCompile_Errors(t *testing.T) {
	thresholder := func(id, input string) *clarifaipb.WorkflowNode {
		n := thresholderNode(t, "GREATER_THAN")
		n.Id = id
		if input != "" {
			n.NodeInputs = []*clarifaipb.NodeInput{{NodeId: input}}
		}
		return n
	}
	noThresholds := thresholderNode(t, "GREATER_THAN")
	noThresholds.Model.OutputInfo.Data = nil
	unnamedThreshold := thresholderNode(t, "GREATER_THAN")
	unnamedThreshold.Model.OutputInfo.Data.Concepts[0].Id = ""
	noModel := &clarifaipb.WorkflowNode{Id: "bare"}
	twoInputs := thresholder("b", "a")
	twoInputs.NodeInputs = append(twoInputs.NodeInputs, &clarifaipb.NodeInput{NodeId: "a"})

	tests := []struct {
		name  string
		nodes []*clarifaipb.WorkflowNode
		parts []string
	}{
		{"no nodes", nil, []string{"no nodes"}},
		{"missing id", []*clarifaipb.WorkflowNode{{Model: &clarifaipb.Model{ModelTypeId: TypeRandomSample}}}, []string{"index 0", "id:"}},
		{"duplicate id", []*clarifaipb.WorkflowNode{thresholder("a", ""), thresholder("a", "")}, []string{`"a"`, "duplicate"}},
		{"missing model", []*clarifaipb.WorkflowNode{noModel}, []string{`"bare"`, "model.model_type_id:", "missing"}},
		{"unknown operator", []*clarifaipb.WorkflowNode{node(t, "x", "face-detector", nil, "")}, []string{`"x"`, "model.model_type_id:", `"face-detector"`}},
		{"missing keep fraction", []*clarifaipb.WorkflowNode{node(t, "r", TypeRandomSample, map[string]any{}, "")}, []string{`"r"`, "output_info.params.keep_fraction:", "missing"}},
		{"keep fraction zero", []*clarifaipb.WorkflowNode{node(t, "r", TypeRandomSample, map[string]any{"keep_fraction": 0}, "")}, []string{`"r"`, "keep_fraction:", "(0, 1]"}},
		{"keep fraction above one", []*clarifaipb.WorkflowNode{node(t, "r", TypeRandomSample, map[string]any{"keep_fraction": 1.5}, "")}, []string{`"r"`, "keep_fraction:"}},
		{"keep fraction string", []*clarifaipb.WorkflowNode{node(t, "r", TypeRandomSample, map[string]any{"keep_fraction": "0.5"}, "")}, []string{`"r"`, "keep_fraction:", "number"}},
		{"missing comparator", []*clarifaipb.WorkflowNode{node(t, "c", TypeConceptThresholder, map[string]any{}, "")}, []string{`"c"`, "concept_threshold_type:", "missing"}},
		{"bad comparator", []*clarifaipb.WorkflowNode{thresholderNode(t, "ABOVE")}, []string{`"threshold"`, "concept_threshold_type:", `"ABOVE"`}},
		{"bad comparator number", []*clarifaipb.WorkflowNode{thresholderNode(t, 9)}, []string{`"threshold"`, "concept_threshold_type:", "9"}},
		{"missing thresholds", []*clarifaipb.WorkflowNode{noThresholds}, []string{`"threshold"`, "output_info.data.concepts:"}},
		{"threshold without id", []*clarifaipb.WorkflowNode{unnamedThreshold}, []string{`"threshold"`, "output_info.data.concepts[0].id:"}},
		{"missing probability", []*clarifaipb.WorkflowNode{node(t, "p", TypeMaxProbabilityBelow, nil, "")}, []string{`"p"`, "output_info.params.threshold:", "missing"}},
		{"probability above one", []*clarifaipb.WorkflowNode{node(t, "p", TypeMinProbabilityAbove, map[string]any{"threshold": 2}, "")}, []string{`"p"`, "output_info.params.threshold:", "[0, 1]"}},
		{"mapper without table", []*clarifaipb.WorkflowNode{node(t, "m", TypeConceptSynonymMapper, nil, "")}, []string{`"m"`, "mapping table"}},
		{"misspelled parameter", []*clarifaipb.WorkflowNode{node(t, "s", TypeRandomSample, map[string]any{"keep_fraction": 0.5, "keep_fration": 0.1}, "")}, []string{`"s"`, "output_info.params.keep_fration:", "unknown parameter", "keep_fraction"}},
		{"unknown input node", []*clarifaipb.WorkflowNode{thresholder("a", ""), thresholder("b", "ghost")}, []string{`"b"`, "node_inputs[0].node_id:", `"ghost"`}},
		{"two inputs", []*clarifaipb.WorkflowNode{thresholder("a", ""), twoInputs}, []string{`"b"`, "node_inputs:", "linear chain"}},
		{"fan out", []*clarifaipb.WorkflowNode{thresholder("a", ""), thresholder("b", "a"), thresholder("c", "a")}, []string{`"c"`, "node_inputs[0].node_id:", `"b"`}},
		{"two roots", []*clarifaipb.WorkflowNode{thresholder("a", ""), thresholder("b", "")}, []string{`"b"`, "node_inputs:", "linear chain"}},
		{"self cycle", []*clarifaipb.WorkflowNode{thresholder("a", "a")}, []string{`"a"`, "cycle"}},
		{"cycle without root", []*clarifaipb.WorkflowNode{thresholder("a", "b"), thresholder("b", "a")}, []string{`"a"`, "cycle"}},
		{"cycle beside chain", []*clarifaipb.WorkflowNode{thresholder("a", ""), thresholder("b", "c"), thresholder("c", "b")}, []string{`"b"`, "cycle"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, err := Compile(&clarifaipb.Workflow{Id: "wf", Nodes: tt.nodes})
			if err == nil {
				t.Fatalf("Compile = %v, want an error", wf)
			}

			requireErrorNames(t, err, tt.parts...)
		})
	}
}

func TestCompile_OutputInfoOverride(t *testing.T) {
	n := node(t, "p", TypeMaxProbabilityBelow, map[string]any{"threshold": 0.9}, "")
	n.OutputInfoOverride = &clarifaipb.OutputInfo{Params: requireStruct(t, map[string]any{"threshold": 0.2})}

	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{n}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	op, ok := wf.Nodes[0].Operator.(*MaxProbabilityBelow)
	if !ok {
		t.Fatalf("operator is %T, want *MaxProbabilityBelow", wf.Nodes[0].Operator)
	}

	if op.Threshold != float32(0.2) {
		t.Errorf("threshold = %v, want the override 0.2", op.Threshold)
	}
}

func TestWorkflow_EvaluateStatus(t *testing.T) {
	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "p", TypeMinProbabilityAbove, map[string]any{"threshold": 0.5}, ""),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	withStatus := func(code clarifaipb.StatusCode) *clarifaipb.Output {
		output := successOutput(concepts("cat", float32(0.9)))
		output.Status.Code = code
		return output
	}
	noStatus := successOutput(concepts("cat", float32(0.9)))
	noStatus.Status = nil

	// The outputs of one predict response may each carry a different status.
	tests := []struct {
		name   string
		item   *Item
		keep   bool
		reason string
	}{
		{"success", &Item{Output: withStatus(clarifaipb.StatusCode_SUCCESS)}, true, ReasonKept},
		{"failure", &Item{Output: withStatus(clarifaipb.StatusCode_FAILURE)}, false, ReasonOutputFailed},
		{"mixed status", &Item{Output: withStatus(clarifaipb.StatusCode_MIXED_STATUS)}, false, ReasonOutputFailed},
		{"zero status", &Item{Output: withStatus(clarifaipb.StatusCode_ZERO)}, false, ReasonOutputFailed},
		{"missing status", &Item{Output: noStatus}, false, ReasonOutputFailed},
		{"missing output", &Item{Input: &clarifaipb.Input{Id: "in1"}}, false, ReasonOutputFailed},
		{"missing item", nil, false, ReasonOutputFailed},
		{"success without data", &Item{Output: &clarifaipb.Output{Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS}}}, false, ReasonNoConcepts},
		{"success with no concepts", &Item{Output: successOutput(nil)}, false, ReasonNoConcepts},
		{"success under threshold", &Item{Output: successOutput(concepts("cat", float32(0.5)))}, false, ReasonNodeDropped},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decision, err := wf.Evaluate(context.Background(), tt.item)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}

			if decision.Keep != tt.keep {
				t.Errorf("Keep = %v, want %v", decision.Keep, tt.keep)
			}

			if decision.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q", decision.Reason, tt.reason)
			}

			if !decision.Keep && len(decision.Concepts) != 0 {
				t.Errorf("dropped decision has concepts %v", conceptIDs(decision.Concepts))
			}
		})
	}
}

func TestWorkflow_EvaluateChain(t *testing.T) {
	// The mapper node is listed first but reads the thresholder, so it runs second.
	mapper := node(t, "map", TypeConceptSynonymMapper, nil, "threshold")
	thresholder := thresholderNode(t, float64(GreaterThanOrEqual))
	thresholder.Model.OutputInfo.Data.Concepts = []*clarifaipb.Concept{{Id: "kitten", Value: 0.6}, {Id: "puppy", Value: 0.6}}

	cfg := Config{Synonyms: map[string][]string{"kitten": {"cat"}, "puppy": {"dog"}}}
	wf, err := cfg.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{mapper, thresholder}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	if order := []string{wf.Nodes[0].ID, wf.Nodes[1].ID}; !slices.Equal(order, []string{"threshold", "map"}) {
		t.Fatalf("node order = %v, want [threshold map]", order)
	}

	tests := []struct {
		name   string
		input  []*clarifaipb.Concept
		keep   bool
		reason string
		nodeID string
		want   []string
	}{
		{"both pass", concepts("kitten", float32(0.6), "puppy", float32(0.2)), true, ReasonKept, "", []string{"cat"}},
		{"thresholder drops", concepts("kitten", float32(0.1), "bird", float32(0.99)), false, ReasonNodeDropped, "threshold", []string{}},
		{"both mapped", concepts("kitten", float32(0.7), "puppy", float32(0.8)), true, ReasonKept, "", []string{"cat", "dog"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(tt.input)})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
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

			if ids := conceptIDs(decision.Concepts); !slices.Equal(ids, tt.want) {
				t.Errorf("concepts = %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestWorkflow_EvaluateMapperDrops(t *testing.T) {
	// A mapper after a pass-through filter drops the input when nothing maps.
	cfg := Config{Synonyms: map[string][]string{"kitten": {"cat"}}, Float64: func() float64 { return 0 }}
	wf, err := cfg.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "sample", TypeRandomSample, map[string]any{"keep_fraction": 0.5}, ""),
		node(t, "map", TypeConceptSynonymMapper, nil, "sample"),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("bird", float32(0.9)))})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if decision.Keep {
		t.Errorf("Keep = true, want a drop because no concept maps")
	}

	if decision.NodeID != "map" {
		t.Errorf("NodeID = %q, want map", decision.NodeID)
	}
}

func TestWorkflow_EvaluateCanceled(t *testing.T) {
	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "p", TypeMaxProbabilityBelow, map[string]any{"threshold": 1}, ""),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err = wf.Evaluate(ctx, &Item{Output: successOutput(concepts("cat", float32(0.5)))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Evaluate error = %v, want context.Canceled", err)
	}
}

func TestWorkflow_EvaluateConcurrent(t *testing.T) {
	// The default random source and the compiled workflow are shared by goroutines.
	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "sample", TypeRandomSample, map[string]any{"keep_fraction": 1}, ""),
		node(t, "meta", TypeMetadataFilter, map[string]any{"conditions": []any{map[string]any{"path": "site", "exists": true}}}, "sample"),
	}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	item := &Item{
		Input:  &clarifaipb.Input{Data: &clarifaipb.Data{Metadata: requireStruct(t, map[string]any{"site": "north"})}},
		Output: successOutput(concepts("cat", float32(0.5))),
	}

	results := make(chan Decision, 8)
	for range cap(results) {
		go func() {
			decision, _ := wf.Evaluate(context.Background(), item)
			results <- decision
		}()
	}

	for range cap(results) {
		if decision := <-results; !decision.Keep {
			t.Errorf("decision = %+v, want keep with keep_fraction 1", decision)
		}
	}
}

// BenchmarkWorkflow_Evaluate measures a thresholder followed by a metadata filter on an
// output with 21 concepts. Compare runs with benchstat on the output of
// `go test -run '^$' -bench Evaluate -count 10 ./filter`.
func BenchmarkWorkflow_Evaluate(b *testing.B) {
	thresholder := thresholderNode(b, "GREATER_THAN")
	meta := node(b, "meta", TypeMetadataFilter, map[string]any{"conditions": []any{map[string]any{"path": "camera.site", "one_of": []any{"north", "south"}}}}, "threshold")

	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{thresholder, meta}})
	if err != nil {
		b.Fatalf("Compile: %v", err)
	}

	var predicted []*clarifaipb.Concept
	for i := range 20 {
		predicted = append(predicted, &clarifaipb.Concept{Id: fmt.Sprintf("c%d", i), Value: 0.05 * float32(i)})
	}
	predicted = append(predicted, &clarifaipb.Concept{Id: "cat", Value: 0.9})

	item := &Item{
		Input:  &clarifaipb.Input{Data: &clarifaipb.Data{Metadata: requireStruct(b, map[string]any{"camera": map[string]any{"site": "south"}})}},
		Output: successOutput(predicted),
	}

	b.ReportAllocs()
	for b.Loop() {
		decision, err := wf.Evaluate(context.Background(), item)
		if err != nil || !decision.Keep {
			b.Fatalf("Evaluate = %+v, %v; want keep", decision, err)
		}
	}
}
