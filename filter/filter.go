// Package filter implements the workflow operators that a collector uses as a pre-queue
// or post-queue filter. Concepts pass through a linear chain of operators, and the
// input is kept when the last operator outputs at least one concept. A pre-queue chain
// starts from the concepts of the predict output (Workflow.Evaluate). A post-queue
// chain starts from the concepts recorded with the captured input and may ask a remote
// model for new ones (Workflow.EvaluateInput).
package filter

import (
	"context"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Operator types, as written in a workflow node's model.model_type_id.
const (
	TypeRandomSample         = "random-sample"
	TypeMetadataFilter       = "metadata-filter"
	TypeConceptThresholder   = "concept-thresholder"
	TypeMaxProbabilityBelow  = "max-probability-below"
	TypeMinProbabilityAbove  = "min-probability-above"
	TypeConceptSynonymMapper = "concept-synonym-mapper"
	// TypeRemoteModel runs only in post-queue workflows, because it makes a network
	// call per input.
	TypeRemoteModel = "remote-model"
)

// Reasons returned in a Decision. They are fixed values so that callers can use them as
// metric labels.
const (
	// ReasonKept means the last node output at least one concept.
	ReasonKept = "kept"
	// ReasonOutputFailed means the predict output is missing or its status is not SUCCESS.
	ReasonOutputFailed = "output_failed"
	// ReasonNoConcepts means the predict output succeeded but contains no concepts.
	ReasonNoConcepts = "no_concepts"
	// ReasonNodeDropped means a node output no concepts. Decision.NodeID names the node.
	ReasonNodeDropped = "node_dropped"
)

// Item is one predicted input with the model output for it.
type Item struct {
	// Input is the input as sent in the predict request. When nil, Output.Input is used.
	Input *clarifaipb.Input
	// Output is the model output for Input. Post-queue evaluation leaves it nil.
	Output *clarifaipb.Output
}

// input returns Input, or else Output.Input, or nil.
func (it *Item) input() *clarifaipb.Input {
	if it.Input != nil {
		return it.Input
	}

	return it.Output.GetInput()
}

// metadata returns the metadata of the item's input, or nil when there is none.
func (it *Item) metadata() *structpb.Struct {
	return it.input().GetData().GetMetadata()
}

// Operator maps the concepts that flow into a workflow node to the concepts the node
// passes on. An empty result drops the input. Apply must not modify the concepts it
// receives, because they belong to the predict response.
type Operator interface {
	// Type returns the operator type, one of the Type constants.
	Type() string
	// Apply returns the concepts that pass this operator.
	Apply(ctx context.Context, item *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error)
}

// Decision is the result of evaluating a workflow on one item.
type Decision struct {
	// Keep reports whether the input should be queued.
	Keep bool
	// Reason is one of the Reason constants.
	Reason string
	// NodeID is the node that dropped the input when Reason is ReasonNodeDropped.
	NodeID string
	// Operator is the operator type of the node NodeID, one of the Type constants, so
	// that it can label a metric.
	Operator string
	// Concepts is the output of the last node when Keep is true.
	Concepts []*clarifaipb.Concept
}
