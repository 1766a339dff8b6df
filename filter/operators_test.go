package filter

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestConceptThresholder_Apply(t *testing.T) {
	thresholds := map[string]float32{"cat": float32(0.6), "dog": float32(0.6)}
	below := math.Nextafter32(0.6, 0)
	above := math.Nextafter32(0.6, 1)

	tests := []struct {
		name       string
		comparator ValueComparator
		input      []*clarifaipb.Concept
		want       []string
	}{
		{"greater than at threshold", GreaterThan, concepts("cat", float32(0.6)), []string{}},
		{"greater than above", GreaterThan, concepts("cat", above), []string{"cat"}},
		{"greater or equal at threshold", GreaterThanOrEqual, concepts("cat", float32(0.6)), []string{"cat"}},
		{"greater or equal below", GreaterThanOrEqual, concepts("cat", below), []string{}},
		{"less than at threshold", LessThan, concepts("cat", float32(0.6)), []string{}},
		{"less than below", LessThan, concepts("cat", below), []string{"cat"}},
		{"less or equal at threshold", LessThanOrEqual, concepts("cat", float32(0.6)), []string{"cat"}},
		{"less or equal above", LessThanOrEqual, concepts("cat", above), []string{}},
		{"equal at threshold", Equal, concepts("cat", float32(0.6)), []string{"cat"}},
		{"equal above", Equal, concepts("cat", above), []string{}},
		{"unlisted concept dropped", GreaterThan, concepts("bird", float32(0.99), "dog", float32(0.7)), []string{"dog"}},
		{"keeps input order", GreaterThanOrEqual, concepts("dog", float32(0.9), "cat", float32(0.6)), []string{"dog", "cat"}},
		{"no concepts", GreaterThan, nil, []string{}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &ConceptThresholder{Comparator: tt.comparator, Thresholds: thresholds}

			got, err := op.Apply(context.Background(), &Item{}, tt.input)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if ids := conceptIDs(got); !slices.Equal(ids, tt.want) {
				t.Errorf("Apply passed %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestConceptThresholder_Float64Threshold(t *testing.T) {
	// A float64 0.6 from JSON rounds to the same float32 as a concept value of 0.6.
	wf, err := Compile(&clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{thresholderNode(t, "EQUAL")}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}

	decision, err := wf.Evaluate(context.Background(), &Item{Output: successOutput(concepts("cat", float32(0.6)))})
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}

	if !decision.Keep {
		t.Errorf("Evaluate dropped a concept at exactly the EQUAL threshold: %+v", decision)
	}
}

// thresholderNode builds a concept-thresholder node with a threshold of 0.6 on "cat".
func thresholderNode(t testing.TB, comparator any) *clarifaipb.WorkflowNode {
	t.Helper()

	n := node(t, "threshold", TypeConceptThresholder, map[string]any{"concept_threshold_type": comparator}, "")
	n.Model.OutputInfo.Data = &clarifaipb.Data{Concepts: []*clarifaipb.Concept{{Id: "cat", Value: 0.6}}}

	return n
}

func TestParseComparator(t *testing.T) {
	tests := []struct {
		name    string
		value   any
		want    ValueComparator
		wantErr bool
	}{
		{"name", "GREATER_THAN_OR_EQUAL", GreaterThanOrEqual, false},
		{"lower case name", "less_than", LessThan, false},
		{"number", float64(5), Equal, false},
		{"number one", float64(1), GreaterThan, false},
		{"unknown name", "ABOVE", 0, true},
		{"zero", float64(0), 0, true},
		{"six", float64(6), 0, true},
		{"fraction", 2.5, 0, true},
		{"bool", true, 0, true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := requireStruct(t, map[string]any{"concept_threshold_type": tt.value})

			got, err := parseComparator("n1", params)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseComparator(%v) = %v, want an error", tt.value, got)
				}
				return
			}

			if err != nil {
				t.Fatalf("parseComparator(%v): %v", tt.value, err)
			}

			if got != tt.want {
				t.Errorf("parseComparator(%v) = %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

func TestProbabilityBounds_Apply(t *testing.T) {
	tests := []struct {
		name  string
		op    Operator
		input []*clarifaipb.Concept
		keep  bool
	}{
		{"max below all under", &MaxProbabilityBelow{Threshold: 0.6}, concepts("a", float32(0.5), "b", float32(0.59999996)), true},
		{"max below at threshold", &MaxProbabilityBelow{Threshold: 0.6}, concepts("a", float32(0.1), "b", float32(0.6)), false},
		{"max below one over", &MaxProbabilityBelow{Threshold: 0.6}, concepts("a", float32(0.9), "b", float32(0.1)), false},
		{"max below empty", &MaxProbabilityBelow{Threshold: 0.6}, nil, false},
		{"min above all over", &MinProbabilityAbove{Threshold: 0.6}, concepts("a", float32(0.6000001), "b", float32(0.9)), true},
		{"min above at threshold", &MinProbabilityAbove{Threshold: 0.6}, concepts("a", float32(0.9), "b", float32(0.6)), false},
		{"min above one under", &MinProbabilityAbove{Threshold: 0.6}, concepts("a", float32(0.2), "b", float32(0.9)), false},
		{"min above empty", &MinProbabilityAbove{Threshold: 0.6}, nil, false},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.op.Apply(context.Background(), &Item{}, tt.input)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if kept := len(got) > 0; kept != tt.keep {
				t.Fatalf("Apply kept = %v, want %v", kept, tt.keep)
			}

			if tt.keep && !slices.Equal(conceptIDs(got), conceptIDs(tt.input)) {
				t.Errorf("Apply passed %v, want every input concept %v", conceptIDs(got), conceptIDs(tt.input))
			}
		})
	}
}

func TestRandomSample_Apply(t *testing.T) {
	tests := []struct {
		name     string
		fraction float64
		draw     float64
		keep     bool
	}{
		{"draw below fraction", 0.25, 0.1, true},
		{"draw equal to fraction", 0.25, 0.25, false},
		{"draw above fraction", 0.25, 0.9, false},
		{"fraction one keeps the largest draw", 1, 0.9999999999, true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &RandomSample{KeepFraction: tt.fraction, Float64: func() float64 { return tt.draw }}
			input := concepts("a", float32(0.5))

			got, err := op.Apply(context.Background(), &Item{}, input)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if kept := len(got) > 0; kept != tt.keep {
				t.Errorf("Apply with fraction %v and draw %v kept = %v, want %v", tt.fraction, tt.draw, kept, tt.keep)
			}
		})
	}
}

func TestRandomSample_Fraction(t *testing.T) {
	// A fixed sequence of draws keeps exactly the draws below the fraction.
	draws := []float64{0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95}
	next := 0
	op := &RandomSample{KeepFraction: 0.3, Float64: func() float64 {
		draw := draws[next]
		next++
		return draw
	}}

	kept := 0
	for range draws {
		got, err := op.Apply(context.Background(), &Item{}, concepts("a", float32(0.5)))
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if len(got) > 0 {
			kept++
		}
	}

	if kept != 3 {
		t.Errorf("kept %d of %d inputs, want 3", kept, len(draws))
	}
}

func TestConceptSynonymMapper_Apply(t *testing.T) {
	synonyms := map[string][]string{
		"kitten": {"cat"},
		"tomcat": {"cat", "male"},
		"puppy":  {"dog"},
	}

	tests := []struct {
		name       string
		input      []*clarifaipb.Concept
		wantIDs    []string
		wantValues []float32
	}{
		{"one to one", concepts("puppy", float32(0.7)), []string{"dog"}, []float32{0.7}},
		{"one to many", concepts("tomcat", float32(0.4)), []string{"cat", "male"}, []float32{0.4, 0.4}},
		{"many to one keeps max", concepts("kitten", float32(0.3), "tomcat", float32(0.8)), []string{"cat", "male"}, []float32{0.8, 0.8}},
		{"unmapped dropped", concepts("bird", float32(0.9), "puppy", float32(0.2)), []string{"dog"}, []float32{0.2}},
		{"nothing mapped", concepts("bird", float32(0.9)), []string{}, []float32{}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &ConceptSynonymMapper{Synonyms: synonyms}

			got, err := op.Apply(context.Background(), &Item{}, tt.input)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if ids := conceptIDs(got); !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("Apply ids = %v, want %v", ids, tt.wantIDs)
			}

			values := []float32{}
			for _, c := range got {
				values = append(values, c.GetValue())
			}
			if !slices.Equal(values, tt.wantValues) {
				t.Errorf("Apply values = %v, want %v", values, tt.wantValues)
			}
		})
	}
}

func TestConceptSynonymMapper_KeepsInput(t *testing.T) {
	input := concepts("kitten", float32(0.3), "tomcat", float32(0.8))
	op := &ConceptSynonymMapper{Synonyms: map[string][]string{"kitten": {"cat"}, "tomcat": {"cat"}}}

	if _, err := op.Apply(context.Background(), &Item{}, input); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	if input[0].GetId() != "kitten" || input[0].GetValue() != float32(0.3) {
		t.Errorf("Apply modified its input concept: %v", input[0])
	}
}
