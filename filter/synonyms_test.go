package filter

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestCompile_SynonymsFromParams(t *testing.T) {
	fallback := map[string][]string{"kitten": {"from-config"}}

	tests := []struct {
		name     string
		params   map[string]any
		fallback map[string][]string
		want     map[string][]string
	}{
		{"string value", map[string]any{"synonyms": map[string]any{"kitten": "cat"}}, nil, map[string][]string{"kitten": {"cat"}}},
		{"list value", map[string]any{"synonyms": map[string]any{"puppy": []any{"dog", "pet"}}}, nil, map[string][]string{"puppy": {"dog", "pet"}}},
		{"mixed values", map[string]any{"synonyms": map[string]any{"kitten": "cat", "puppy": []any{"dog"}}}, nil, map[string][]string{"kitten": {"cat"}, "puppy": {"dog"}}},
		{"params win over config", map[string]any{"synonyms": map[string]any{"kitten": "cat"}}, fallback, map[string][]string{"kitten": {"cat"}}},
		{"config when param is absent", map[string]any{}, fallback, fallback},
		{"config without params", nil, fallback, fallback},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, err := Config{Synonyms: tt.fallback}.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
				node(t, "map", TypeConceptSynonymMapper, tt.params, ""),
			}})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}

			op, ok := wf.Nodes[0].Operator.(*ConceptSynonymMapper)
			if !ok {
				t.Fatalf("operator is %T, want *ConceptSynonymMapper", wf.Nodes[0].Operator)
			}

			if !maps.EqualFunc(op.Synonyms, tt.want, slices.Equal) {
				t.Errorf("Synonyms = %v, want %v", op.Synonyms, tt.want)
			}
		})
	}
}

func TestCompile_SynonymsErrors(t *testing.T) {
	tests := []struct {
		name     string
		params   map[string]any
		fallback map[string][]string
		parts    []string
	}{
		{"both missing", nil, nil, []string{`"m"`, "output_info.params.synonyms:", "mapping table"}},
		{"unknown parameter", map[string]any{"knowledge_graph_id": "kg"}, map[string][]string{"kitten": {"cat"}}, []string{`"m"`, "output_info.params.knowledge_graph_id:", "unknown parameter", "expected synonyms"}},
		{"not an object", map[string]any{"synonyms": "cat"}, nil, []string{`"m"`, "output_info.params.synonyms:", "object"}},
		{"list instead of object", map[string]any{"synonyms": []any{"cat"}}, nil, []string{`"m"`, "output_info.params.synonyms:", "object"}},
		{"empty object", map[string]any{"synonyms": map[string]any{}}, map[string][]string{"kitten": {"cat"}}, []string{`"m"`, "output_info.params.synonyms:", "non-empty"}},
		{"number value", map[string]any{"synonyms": map[string]any{"kitten": 3}}, nil, []string{`"m"`, `output_info.params.synonyms["kitten"]:`, "string"}},
		{"object value", map[string]any{"synonyms": map[string]any{"kitten": map[string]any{"id": "cat"}}}, nil, []string{`"m"`, `synonyms["kitten"]:`}},
		{"null value", map[string]any{"synonyms": map[string]any{"kitten": nil}}, nil, []string{`"m"`, `synonyms["kitten"]:`}},
		{"empty string", map[string]any{"synonyms": map[string]any{"kitten": ""}}, nil, []string{`"m"`, `synonyms["kitten"]:`, "non-empty"}},
		{"empty list", map[string]any{"synonyms": map[string]any{"kitten": []any{}}}, nil, []string{`"m"`, `synonyms["kitten"]:`, "non-empty"}},
		{"number in list", map[string]any{"synonyms": map[string]any{"kitten": []any{"cat", 2}}}, nil, []string{`"m"`, `synonyms["kitten"]:`, "item 1"}},
		{"empty string in list", map[string]any{"synonyms": map[string]any{"kitten": []any{"cat", ""}}}, nil, []string{`"m"`, `synonyms["kitten"]:`, "item 1"}},
		{"empty source", map[string]any{"synonyms": map[string]any{"": "cat"}}, nil, []string{`"m"`, "output_info.params.synonyms:", "source"}},
		{"first invalid source in order", map[string]any{"synonyms": map[string]any{"b": 1, "a": 2}}, nil, []string{`synonyms["a"]:`}},
		{"invalid config", nil, map[string][]string{"kitten": {""}}, []string{`"m"`, "Config.Synonyms"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, err := Config{Synonyms: tt.fallback}.Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
				node(t, "m", TypeConceptSynonymMapper, tt.params, ""),
			}})
			if err == nil {
				t.Fatalf("Compile = %v, want an error", wf)
			}

			requireErrorNames(t, err, tt.parts...)
		})
	}
}

func TestWorkflow_SynonymsFromParams(t *testing.T) {
	// The table arrives as JSON through the workflows API.
	wf := compileJSON(t, Config{}, `{"id": "wf", "nodes": [{"id": "map", "model": {"model_type_id": "concept-synonym-mapper",
		"output_info": {"params": {"synonyms": {"kitten": "cat", "puppy": ["dog", "pet"], "cub": ["cat"]}}}}}]}`)

	decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("kitten", float32(0.4), "puppy", float32(0.7), "cub", float32(0.6), "bird", float32(0.9)))})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if ids := conceptIDs(decision.Concepts); !slices.Equal(ids, []string{"cat", "dog", "pet"}) {
		t.Fatalf("concepts = %v, want [cat dog pet]", ids)
	}

	// Two sources map to cat, so it takes the higher value.
	if got := decision.Concepts[0].GetValue(); got != float32(0.6) {
		t.Errorf("cat value = %v, want 0.6 from cub", got)
	}
}
