package filter

import (
	"context"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestMetadataFilter_Apply(t *testing.T) {
	metadata := map[string]any{
		"site":   "north",
		"count":  3,
		"camera": map[string]any{"model": "x100", "lens": map[string]any{"mm": 35}},
		"tags":   []any{"a", "b"},
	}

	tests := []struct {
		name      string
		metadata  map[string]any
		condition map[string]any
		keep      bool
	}{
		{"equals string", metadata, map[string]any{"path": "site", "equals": "north"}, true},
		{"equals other string", metadata, map[string]any{"path": "site", "equals": "south"}, false},
		{"equals number", metadata, map[string]any{"path": "count", "equals": 3}, true},
		{"number is not string", metadata, map[string]any{"path": "count", "equals": "3"}, false},
		{"nested equals", metadata, map[string]any{"path": "camera.model", "equals": "x100"}, true},
		{"deep nested equals", metadata, map[string]any{"path": "camera.lens.mm", "equals": 35}, true},
		{"nested missing", metadata, map[string]any{"path": "camera.lens.iso", "equals": 100}, false},
		{"path through string", metadata, map[string]any{"path": "site.name", "exists": true}, false},
		{"path through list", metadata, map[string]any{"path": "tags.0", "exists": true}, false},
		{"equals object", metadata, map[string]any{"path": "camera.lens", "equals": map[string]any{"mm": 35}}, true},
		{"one of match", metadata, map[string]any{"path": "site", "one_of": []any{"east", "north"}}, true},
		{"one of no match", metadata, map[string]any{"path": "site", "one_of": []any{"east", "west"}}, false},
		{"exists true present", metadata, map[string]any{"path": "camera.model", "exists": true}, true},
		{"exists true missing", metadata, map[string]any{"path": "camera.serial", "exists": true}, false},
		{"exists false missing", metadata, map[string]any{"path": "reviewed", "exists": false}, true},
		{"exists false present", metadata, map[string]any{"path": "site", "exists": false}, false},
		{"no metadata equals", nil, map[string]any{"path": "site", "equals": "north"}, false},
		{"no metadata one of", nil, map[string]any{"path": "site", "one_of": []any{"north"}}, false},
		{"no metadata exists false", nil, map[string]any{"path": "site", "exists": false}, true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := newMetadataFilter("n1", requireStruct(t, map[string]any{"conditions": []any{tt.condition}}))
			if err != nil {
				t.Fatalf("newMetadataFilter(%v): %v", tt.condition, err)
			}

			input := &clarifaipb.Input{Id: "in1", Data: &clarifaipb.Data{}}
			if tt.metadata != nil {
				input.Data.Metadata = requireStruct(t, tt.metadata)
			}

			got, err := op.Apply(context.Background(), &Item{Input: input}, concepts("a", float32(0.5)))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if kept := len(got) > 0; kept != tt.keep {
				t.Errorf("Apply with %v kept = %v, want %v", tt.condition, kept, tt.keep)
			}
		})
	}
}

func TestMetadataFilter_AllConditions(t *testing.T) {
	params := requireStruct(t, map[string]any{"conditions": []any{
		map[string]any{"path": "site", "equals": "north"},
		map[string]any{"path": "reviewed", "exists": false},
	}})

	op, err := newMetadataFilter("n1", params)
	if err != nil {
		t.Fatalf("newMetadataFilter: %v", err)
	}

	tests := []struct {
		name     string
		metadata map[string]any
		keep     bool
	}{
		{"both match", map[string]any{"site": "north"}, true},
		{"second fails", map[string]any{"site": "north", "reviewed": true}, false},
		{"first fails", map[string]any{"site": "south"}, false},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			item := &Item{Input: &clarifaipb.Input{Data: &clarifaipb.Data{Metadata: requireStruct(t, tt.metadata)}}}

			got, err := op.Apply(context.Background(), item, concepts("a", float32(0.5)))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if kept := len(got) > 0; kept != tt.keep {
				t.Errorf("Apply on %v kept = %v, want %v", tt.metadata, kept, tt.keep)
			}
		})
	}
}

func TestMetadataFilter_OutputInput(t *testing.T) {
	op, err := newMetadataFilter("n1", requireStruct(t, map[string]any{"conditions": []any{
		map[string]any{"path": "site", "equals": "north"},
	}}))
	if err != nil {
		t.Fatalf("newMetadataFilter: %v", err)
	}

	// Without Item.Input, the filter reads the input echoed in the output.
	output := successOutput(concepts("a", float32(0.5)))
	output.Input = &clarifaipb.Input{Data: &clarifaipb.Data{Metadata: requireStruct(t, map[string]any{"site": "north"})}}

	got, err := op.Apply(context.Background(), &Item{Output: output}, output.GetData().GetConcepts())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}

	if len(got) != 1 {
		t.Errorf("Apply passed %v, want the one concept", conceptIDs(got))
	}
}

func TestNewMetadataFilter_Invalid(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]any
		field  string
	}{
		{"missing conditions", map[string]any{}, "output_info.params.conditions"},
		{"empty conditions", map[string]any{"conditions": []any{}}, "output_info.params.conditions"},
		{"conditions not a list", map[string]any{"conditions": "site"}, "output_info.params.conditions"},
		{"condition not an object", map[string]any{"conditions": []any{"site"}}, "output_info.params.conditions[0]"},
		{"missing path", map[string]any{"conditions": []any{map[string]any{"equals": 1}}}, "output_info.params.conditions[0].path"},
		{"empty path segment", map[string]any{"conditions": []any{map[string]any{"path": "a..b", "equals": 1}}}, "output_info.params.conditions[0].path"},
		{"no test", map[string]any{"conditions": []any{map[string]any{"path": "a"}}}, "output_info.params.conditions[0]"},
		{"two tests", map[string]any{"conditions": []any{map[string]any{"path": "a", "equals": 1, "exists": true}}}, "output_info.params.conditions[0]"},
		{"exists not bool", map[string]any{"conditions": []any{map[string]any{"path": "a", "exists": "yes"}}}, "output_info.params.conditions[0].exists"},
		{"empty one of", map[string]any{"conditions": []any{map[string]any{"path": "a", "one_of": []any{}}}}, "output_info.params.conditions[0].one_of"},
		{"second condition", map[string]any{"conditions": []any{map[string]any{"path": "a", "exists": true}, map[string]any{"path": ""}}}, "output_info.params.conditions[1].path"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newMetadataFilter("n1", requireStruct(t, tt.params))
			requireErrorNames(t, err, `"n1"`, tt.field+":")
		})
	}
}
