package filter

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// The acceptance tests feed every operator the outputs of one predict response, decoded
// from JSON as collectord reads it: a MIXED_STATUS response whose outputs each carry
// their own status. Concept values are float32, so 0.6 arrives as 0.6000000238418579.
const mixedResponse = `{
	"status": {"code": 10010, "description": "Mixed Success"},
	"outputs": [
		{"id": "at", "status": {"code": 10000, "description": "Ok"},
		 "input": {"id": "in-at", "data": {"metadata": {"camera": {"site": "north"}}}},
		 "data": {"concepts": [{"id": "cat", "name": "cat", "value": 0.6000000238418579}]}},
		{"id": "failed", "status": {"code": 30002, "description": "Input failed"},
		 "input": {"id": "in-failed", "data": {"metadata": {"camera": {"site": "north"}}}},
		 "data": {"concepts": [{"id": "cat", "value": 0.9}]}},
		{"id": "empty", "status": {"code": 10000},
		 "input": {"id": "in-empty", "data": {"metadata": {"camera": {"site": "north"}}}},
		 "data": {}},
		{"id": "above", "status": {"code": 10000},
		 "input": {"id": "in-above"},
		 "data": {"concepts": [{"id": "cat", "value": 0.9}]}},
		{"id": "below", "status": {"code": 10000},
		 "input": {"id": "in-below", "data": {"metadata": {"camera": "x"}}},
		 "data": {"concepts": [{"id": "cat", "value": 0.3}]}}
	]
}`

// outputOrder is the order of the outputs in mixedResponse and of each want string.
var outputOrder = []string{"at", "failed", "empty", "above", "below"}

// Letters of a want string, one per output: Kept, node Dropped, output Failed, No concepts.
var reasonLetters = map[byte]string{'K': ReasonKept, 'D': ReasonNodeDropped, 'F': ReasonOutputFailed, 'N': ReasonNoConcepts}

// acceptanceCase is a one-node workflow and its expected reason for each output.
type acceptanceCase struct {
	name string
	// node is the JSON of a workflow node with id "n".
	node string
	// random is the value the random source returns.
	random float64
	// want has one reason letter per output, in outputOrder.
	want string
}

var acceptanceCases = []acceptanceCase{
	{"thresholder greater than", thresholderJSON(`"GREATER_THAN"`, "0.6"), 0, "DFNKD"},
	{"thresholder greater or equal", thresholderJSON(`"GREATER_THAN_OR_EQUAL"`, "0.6"), 0, "KFNKD"},
	{"thresholder less than", thresholderJSON(`"LESS_THAN"`, "0.6"), 0, "DFNDK"},
	{"thresholder less or equal", thresholderJSON(`"LESS_THAN_OR_EQUAL"`, "0.6"), 0, "KFNDK"},
	{"thresholder equal", thresholderJSON(`"EQUAL"`, "0.6"), 0, "KFNDD"},
	{"thresholder equal by number", thresholderJSON("5", "0.6000000238418579"), 0, "KFNDD"},
	{"thresholder greater than by number", thresholderJSON("1", "0.6000000238418579"), 0, "DFNKD"},
	{"max probability below", probabilityJSON(TypeMaxProbabilityBelow, "0.6"), 0, "DFNDK"},
	{"max probability below float32 literal", probabilityJSON(TypeMaxProbabilityBelow, "0.6000000238418579"), 0, "DFNDK"},
	{"min probability above", probabilityJSON(TypeMinProbabilityAbove, "0.6"), 0, "DFNKD"},
	{"min probability above float32 literal", probabilityJSON(TypeMinProbabilityAbove, "0.6000000238418579"), 0, "DFNKD"},
	{"metadata equals", metadataJSON(`{"path": "camera.site", "equals": "north"}`), 0, "KFNDD"},
	{"metadata one of", metadataJSON(`{"path": "camera.site", "one_of": ["south", "north"]}`), 0, "KFNDD"},
	{"metadata exists", metadataJSON(`{"path": "camera.site", "exists": true}`), 0, "KFNDD"},
	{"metadata not exists", metadataJSON(`{"path": "camera.site", "exists": false}`), 0, "DFNKK"},
	{"random sample keeps", randomJSON("0.5"), 0.25, "KFNKK"},
	{"random sample drops", randomJSON("0.5"), 0.75, "DFNDD"},
	{"random sample at fraction", randomJSON("0.5"), 0.5, "DFNDD"},
	{"random sample keeps all", randomJSON("1"), 0.999, "KFNKK"},
	{"synonym mapper maps", `{"id": "n", "model": {"model_type_id": "concept-synonym-mapper", "output_info": {"params": {"synonyms": {"cat": "feline"}}}}}`, 0, "KFNKK"},
	{"synonym mapper unmapped", `{"id": "n", "model": {"model_type_id": "concept-synonym-mapper", "output_info": {"params": {"synonyms": {"dog": ["canine"]}}}}}`, 0, "DFNDD"},
}

func thresholderJSON(comparator, threshold string) string {
	return fmt.Sprintf(`{"id": "n", "model": {"model_type_id": "concept-thresholder", "output_info": {
		"data": {"concepts": [{"id": "cat", "value": %s}]}, "params": {"concept_threshold_type": %s}}}}`, threshold, comparator)
}

func probabilityJSON(typeID, threshold string) string {
	return fmt.Sprintf(`{"id": "n", "model": {"model_type_id": %q, "output_info": {"params": {"threshold": %s}}}}`, typeID, threshold)
}

func metadataJSON(condition string) string {
	return fmt.Sprintf(`{"id": "n", "model": {"model_type_id": "metadata-filter", "output_info": {"params": {"conditions": [%s]}}}}`, condition)
}

func randomJSON(fraction string) string {
	return fmt.Sprintf(`{"id": "n", "model": {"model_type_id": "random-sample", "output_info": {"params": {"keep_fraction": %s}}}}`, fraction)
}

// compileJSON decodes a workflow as the API receives it and compiles it with cfg.
func compileJSON(t *testing.T, cfg Config, workflowJSON string) *Workflow {
	t.Helper()

	var workflow clarifaipb.Workflow
	if err := protojson.Unmarshal([]byte(workflowJSON), &workflow); err != nil {
		t.Fatalf("decode workflow JSON: %v", err)
	}

	wf, err := cfg.Compile(&workflow)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	return wf
}

// decodeOutputs decodes mixedResponse and returns its outputs by id.
func decodeOutputs(t *testing.T) map[string]*clarifaipb.Output {
	t.Helper()

	var response clarifaipb.MultiOutputResponse
	if err := protojson.Unmarshal([]byte(mixedResponse), &response); err != nil {
		t.Fatalf("decode response JSON: %v", err)
	}

	outputs := make(map[string]*clarifaipb.Output, len(response.GetOutputs()))
	for _, output := range response.GetOutputs() {
		outputs[output.GetId()] = output
	}

	if len(outputs) != len(outputOrder) {
		t.Fatalf("decoded %d outputs, want %d", len(outputs), len(outputOrder))
	}

	return outputs
}

// requireDecision checks the reason of decision against a want letter, and that a drop
// names the node and its operator type.
func requireDecision(t *testing.T, decision Decision, letter byte, operator string) {
	t.Helper()

	want := reasonLetters[letter]
	if decision.Reason != want {
		t.Errorf("Reason = %q, want %q", decision.Reason, want)
	}

	if decision.Keep != (want == ReasonKept) {
		t.Errorf("Keep = %v, want %v", decision.Keep, want == ReasonKept)
	}

	if want == ReasonKept && len(decision.Concepts) == 0 {
		t.Errorf("kept decision has no concepts")
	}

	wantNode, wantOperator := "", ""
	if want == ReasonNodeDropped {
		wantNode, wantOperator = "n", operator
	}

	if decision.NodeID != wantNode {
		t.Errorf("NodeID = %q, want %q", decision.NodeID, wantNode)
	}

	if decision.Operator != wantOperator {
		t.Errorf("Operator = %q, want %q", decision.Operator, wantOperator)
	}
}

func TestAcceptance_PreQueue(t *testing.T) {
	outputs := decodeOutputs(t)

	for _, tc := range acceptanceCases {
		wf := compileJSON(t, Config{Float64: func() float64 { return tc.random }}, `{"id": "wf", "nodes": [`+tc.node+`]}`)
		operator := wf.Nodes[0].Operator.Type()

		for i, id := range outputOrder {
			t.Run(tc.name+"/"+id, func(t *testing.T) {
				decision, err := wf.Evaluate(context.Background(), &Item{Output: outputs[id]})
				if err != nil {
					t.Fatalf("Evaluate: %v", err)
				}

				requireDecision(t, decision, tc.want[i], operator)
			})
		}
	}
}

func TestAcceptance_PostQueue(t *testing.T) {
	// The ingest worker has the captured input and the concepts recorded with it. It
	// records none for an output that failed or predicted nothing, so every operator
	// drops those inputs at its node.
	outputs := decodeOutputs(t)

	for _, tc := range acceptanceCases {
		wf := compileJSON(t, Config{Float64: func() float64 { return tc.random }}, `{"id": "wf", "nodes": [`+tc.node+`]}`)
		operator := wf.Nodes[0].Operator.Type()

		for i, id := range outputOrder {
			t.Run(tc.name+"/"+id, func(t *testing.T) {
				output := outputs[id]

				var recorded []*clarifaipb.Concept
				if output.GetStatus().GetCode() == clarifaipb.StatusCode_SUCCESS {
					recorded = output.GetData().GetConcepts()
				}

				letter := tc.want[i]
				if letter == 'F' || letter == 'N' {
					letter = 'D'
				}

				decision, err := wf.EvaluateInput(context.Background(), &Item{Input: output.GetInput()}, recorded)
				if err != nil {
					t.Fatalf("EvaluateInput: %v", err)
				}

				requireDecision(t, decision, letter, operator)
			})
		}
	}
}

func TestAcceptance_KeptValues(t *testing.T) {
	// A kept float32 value passes unchanged, so 0.6 stays exactly float32(0.6).
	outputs := decodeOutputs(t)
	wf := compileJSON(t, Config{}, `{"id": "wf", "nodes": [`+thresholderJSON(`"EQUAL"`, "0.6")+`]}`)

	decision, err := wf.Evaluate(context.Background(), &Item{Output: outputs["at"]})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if len(decision.Concepts) != 1 || decision.Concepts[0].GetValue() != float32(0.6) {
		t.Errorf("concepts = %v, want cat at float32(0.6)", decision.Concepts)
	}
}

func TestAcceptance_EmptyResponse(t *testing.T) {
	// A response with no outputs gives the workflow nothing to evaluate, and an output
	// with an empty concept list is dropped before any node runs.
	var response clarifaipb.MultiOutputResponse
	if err := protojson.Unmarshal([]byte(`{"status": {"code": 10000}, "outputs": []}`), &response); err != nil {
		t.Fatalf("decode response JSON: %v", err)
	}

	if n := len(response.GetOutputs()); n != 0 {
		t.Fatalf("decoded %d outputs, want 0", n)
	}

	for _, tc := range acceptanceCases {
		t.Run(tc.name, func(t *testing.T) {
			wf := compileJSON(t, Config{Float64: func() float64 { return 0 }}, `{"id": "wf", "nodes": [`+tc.node+`]}`)

			decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput([]*clarifaipb.Concept{})})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}

			if decision.Reason != ReasonNoConcepts || decision.Keep {
				t.Errorf("decision = %+v, want a drop with %q", decision, ReasonNoConcepts)
			}
		})
	}
}

func TestAcceptance_MetadataMissing(t *testing.T) {
	conditions := []string{
		`{"path": "camera.site", "equals": "north"}`,
		`{"path": "camera.site", "one_of": ["north"]}`,
		`{"path": "camera.site", "exists": true}`,
		`{"path": "camera.site", "exists": false}`,
		`{"path": "camera.site", "equals": null}`,
	}

	// Each want string has one letter per condition, in the order above.
	inputs := []struct {
		name  string
		input string
		want  string
	}{
		{"no input", ``, "DDDKD"},
		{"input without data", `{"id": "i"}`, "DDDKD"},
		{"data without metadata", `{"id": "i", "data": {"image": {"url": "https://samples.example/a.jpg"}}}`, "DDDKD"},
		{"empty metadata", `{"id": "i", "data": {"metadata": {}}}`, "DDDKD"},
		{"other keys only", `{"id": "i", "data": {"metadata": {"site": "north"}}}`, "DDDKD"},
		{"parent is null", `{"id": "i", "data": {"metadata": {"camera": null}}}`, "DDDKD"},
		{"parent is a string", `{"id": "i", "data": {"metadata": {"camera": "north"}}}`, "DDDKD"},
		{"parent is a list", `{"id": "i", "data": {"metadata": {"camera": [{"site": "north"}]}}}`, "DDDKD"},
		{"leaf missing", `{"id": "i", "data": {"metadata": {"camera": {"zone": "north"}}}}`, "DDDKD"},
		{"leaf is null", `{"id": "i", "data": {"metadata": {"camera": {"site": null}}}}`, "DDKDK"},
		{"leaf is a number", `{"id": "i", "data": {"metadata": {"camera": {"site": 7}}}}`, "DDKDD"},
		{"leaf matches", `{"id": "i", "data": {"metadata": {"camera": {"site": "north"}}}}`, "KKKDD"},
	}

	for c, condition := range conditions {
		wf := compileJSON(t, Config{}, `{"id": "wf", "nodes": [`+metadataJSON(condition)+`]}`)

		for _, in := range inputs {
			t.Run(fmt.Sprintf("%s/%s", condition, in.name), func(t *testing.T) {
				var input *clarifaipb.Input
				if in.input != "" {
					input = &clarifaipb.Input{}
					if err := protojson.Unmarshal([]byte(in.input), input); err != nil {
						t.Fatalf("decode input JSON: %v", err)
					}
				}

				preQueue, err := wf.Evaluate(context.Background(), &Item{Input: input, Output: successOutput(concepts("cat", float32(0.9)))})
				if err != nil {
					t.Fatalf("Evaluate: %v", err)
				}

				requireDecision(t, preQueue, in.want[c], TypeMetadataFilter)

				postQueue, err := wf.EvaluateInput(context.Background(), &Item{Input: input}, concepts("cat", float32(0.9)))
				if err != nil {
					t.Fatalf("EvaluateInput: %v", err)
				}

				requireDecision(t, postQueue, in.want[c], TypeMetadataFilter)
			})
		}
	}
}

func TestAcceptance_CoversEveryOperator(t *testing.T) {
	// Every operator type except remote-model needs acceptance cases. Remote-model has
	// its own tests against a fake API.
	covered := map[string]bool{TypeRemoteModel: true}
	for _, tc := range acceptanceCases {
		wf := compileJSON(t, Config{}, `{"id": "wf", "nodes": [`+tc.node+`]}`)
		covered[wf.Nodes[0].Operator.Type()] = true
	}

	for _, typeID := range []string{TypeRandomSample, TypeMetadataFilter, TypeConceptThresholder, TypeMaxProbabilityBelow, TypeMinProbabilityAbove, TypeConceptSynonymMapper, TypeRemoteModel} {
		if !covered[typeID] {
			t.Errorf("no acceptance case for operator type %s", typeID)
		}
	}
}
