package filter

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// concepts builds concepts from id and value pairs.
func concepts(pairs ...any) []*clarifaipb.Concept {
	var out []*clarifaipb.Concept
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &clarifaipb.Concept{Id: pairs[i].(string), Value: pairs[i+1].(float32)})
	}

	return out
}

// conceptIDs returns the ids of cs in order.
func conceptIDs(cs []*clarifaipb.Concept) []string {
	ids := []string{}
	for _, c := range cs {
		ids = append(ids, c.GetId())
	}

	return ids
}

// requireStruct builds a Struct from a Go map and fails the test on error.
func requireStruct(t testing.TB, fields map[string]any) *structpb.Struct {
	t.Helper()

	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatalf("structpb.NewStruct(%v): %v", fields, err)
	}

	return s
}

// node builds a workflow node with the given operator type, params and input node.
func node(t testing.TB, id, typeID string, params map[string]any, input string) *clarifaipb.WorkflowNode {
	t.Helper()

	n := &clarifaipb.WorkflowNode{
		Id:    id,
		Model: &clarifaipb.Model{Id: id + "-model", ModelTypeId: typeID},
	}

	if params != nil {
		n.Model.OutputInfo = &clarifaipb.OutputInfo{Params: requireStruct(t, params)}
	}

	if input != "" {
		n.NodeInputs = []*clarifaipb.NodeInput{{NodeId: input}}
	}

	return n
}

// successOutput builds a successful output with the given concepts.
func successOutput(cs []*clarifaipb.Concept) *clarifaipb.Output {
	return &clarifaipb.Output{
		Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
		Data:   &clarifaipb.Data{Concepts: cs},
	}
}

// requireErrorNames fails the test unless err is non-nil and contains every part.
func requireErrorNames(t *testing.T, err error, parts ...string) {
	t.Helper()

	if err == nil {
		t.Fatalf("got no error, want one naming %q", parts)
	}

	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
}
