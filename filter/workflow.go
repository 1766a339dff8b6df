package filter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Config holds what operators need beyond the workflow itself.
type Config struct {
	// Float64 returns a number in [0, 1) for random-sample nodes and must be safe for
	// concurrent use. Nil means math/rand/v2.Float64.
	Float64 func() float64
	// Synonyms maps a source concept id to destination concept ids for
	// concept-synonym-mapper nodes that have no output_info.params.synonyms.
	Synonyms map[string][]string
	// RemoteEndpoints are the APIs that remote-model nodes may call, by the name that
	// a node gives in output_info.params.endpoint.
	RemoteEndpoints map[string]*RemoteEndpoint
}

// Node is one compiled workflow node.
type Node struct {
	// ID is the workflow node id.
	ID string
	// Operator computes the node's output.
	Operator Operator
}

// Workflow is a compiled linear chain of operators, safe for concurrent use when its
// operators are.
type Workflow struct {
	// Nodes are in evaluation order: each node reads the output of the one before it.
	Nodes []Node
}

// Compile compiles wf with the default Config.
func Compile(wf *clarifaipb.Workflow) (*Workflow, error) {
	return Config{}.Compile(wf)
}

// Compile checks every node of wf and orders the nodes by node_inputs. Only a linear
// chain is supported: one node without node_inputs, and every other node reading
// exactly one node that no other node reads.
func (c Config) Compile(wf *clarifaipb.Workflow) (*Workflow, error) {
	if len(wf.GetNodes()) == 0 {
		return nil, errors.New("workflow has no nodes")
	}

	byID := make(map[string]*clarifaipb.WorkflowNode, len(wf.GetNodes()))
	operators := make(map[string]Operator, len(wf.GetNodes()))
	for i, node := range wf.GetNodes() {
		if node.GetId() == "" {
			return nil, fmt.Errorf("workflow node at index %d: id: missing node id", i)
		}

		if _, duplicate := byID[node.GetId()]; duplicate {
			return nil, fmt.Errorf("workflow node %q: id: duplicate node id, so rename one of the nodes", node.GetId())
		}

		operator, err := c.newOperator(node)
		if err != nil {
			return nil, err
		}

		byID[node.GetId()] = node
		operators[node.GetId()] = operator
	}

	order, err := chainOrder(wf.GetNodes(), byID)
	if err != nil {
		return nil, err
	}

	compiled := &Workflow{Nodes: make([]Node, 0, len(order))}
	for _, id := range order {
		compiled.Nodes = append(compiled.Nodes, Node{ID: id, Operator: operators[id]})
	}

	return compiled, nil
}

// outputInfo returns the node's output_info_override, or else the model's output_info,
// or else the model version's output_info.
func outputInfo(node *clarifaipb.WorkflowNode) *clarifaipb.OutputInfo {
	if info := node.GetOutputInfoOverride(); info != nil {
		return info
	}

	if info := node.GetModel().GetOutputInfo(); info != nil {
		return info
	}

	return node.GetModel().GetModelVersion().GetOutputInfo()
}

// newOperator builds the operator named by the node's model.model_type_id.
func (c Config) newOperator(node *clarifaipb.WorkflowNode) (Operator, error) {
	id := node.GetId()
	info := outputInfo(node)
	typeID := node.GetModel().GetModelTypeId()

	// A misspelled optional parameter would otherwise be ignored without a word.
	if known, ok := operatorParams[typeID]; ok {
		for _, name := range slices.Sorted(maps.Keys(info.GetParams().GetFields())) {
			if !slices.Contains(known, name) {
				return nil, paramError(id, "output_info.params."+name, "unknown parameter of %s: expected %s", typeID, strings.Join(known, ", "))
			}
		}
	}

	switch typeID {
	case TypeRandomSample:
		return c.newRandomSample(id, info)
	case TypeMetadataFilter:
		return newMetadataFilter(id, info.GetParams())
	case TypeConceptThresholder:
		return newConceptThresholder(id, info)
	case TypeMaxProbabilityBelow:
		threshold, err := requireProbability(id, info.GetParams(), "threshold")
		if err != nil {
			return nil, err
		}

		return &MaxProbabilityBelow{Threshold: threshold}, nil
	case TypeMinProbabilityAbove:
		threshold, err := requireProbability(id, info.GetParams(), "threshold")
		if err != nil {
			return nil, err
		}

		return &MinProbabilityAbove{Threshold: threshold}, nil
	case TypeConceptSynonymMapper:
		return newConceptSynonymMapper(id, info.GetParams(), c.Synonyms)
	case TypeRemoteModel:
		return newRemoteModel(id, info.GetParams(), c.RemoteEndpoints)
	case "":
		return nil, paramError(id, "model.model_type_id", "missing operator type")
	default:
		return nil, paramError(id, "model.model_type_id", "unknown operator type %q", typeID)
	}
}

// operatorParams lists the output_info.params each operator reads.
var operatorParams = map[string][]string{
	TypeRandomSample:         {"keep_fraction"},
	TypeMetadataFilter:       {"conditions"},
	TypeConceptThresholder:   {"concept_threshold_type"},
	TypeMaxProbabilityBelow:  {"threshold"},
	TypeMinProbabilityAbove:  {"threshold"},
	TypeConceptSynonymMapper: {"synonyms"},
	TypeRemoteModel:          {"endpoint", "model_id", "user_id", "app_id", "version_id"},
}

// newRandomSample reads output_info.params.keep_fraction, which must be in (0, 1].
func (c Config) newRandomSample(nodeID string, info *clarifaipb.OutputInfo) (*RandomSample, error) {
	fraction, err := requireNumber(nodeID, info.GetParams(), "keep_fraction")
	if err != nil {
		return nil, err
	}

	if fraction <= 0 || fraction > 1 {
		return nil, paramError(nodeID, "output_info.params.keep_fraction", "invalid value %v: expected a number in (0, 1]", fraction)
	}

	source := c.Float64
	if source == nil {
		source = rand.Float64
	}

	return &RandomSample{KeepFraction: fraction, Float64: source}, nil
}

// chainOrder returns the node ids from the root to the last node, or an error when the
// nodes do not form a single linear chain.
func chainOrder(nodes []*clarifaipb.WorkflowNode, byID map[string]*clarifaipb.WorkflowNode) ([]string, error) {
	var roots []string
	next := make(map[string]string, len(nodes))

	for _, node := range nodes {
		id := node.GetId()
		inputs := node.GetNodeInputs()

		if len(inputs) == 0 {
			roots = append(roots, id)
			continue
		}

		if len(inputs) > 1 {
			return nil, fmt.Errorf("workflow node %q: node_inputs: %d inputs, but only a linear chain with one input per node is supported", id, len(inputs))
		}

		parent := inputs[0].GetNodeId()
		if _, known := byID[parent]; !known {
			return nil, fmt.Errorf("workflow node %q: node_inputs[0].node_id: unknown node %q", id, parent)
		}

		if sibling, hasChild := next[parent]; hasChild {
			return nil, fmt.Errorf("workflow node %q: node_inputs[0].node_id: node %q already feeds node %q, but only a linear chain is supported", id, parent, sibling)
		}
		next[parent] = id
	}

	if len(roots) == 0 {
		return nil, fmt.Errorf("workflow node %q: node_inputs: the nodes form a cycle, and no node reads the predict output", nodes[0].GetId())
	}

	if len(roots) > 1 {
		return nil, fmt.Errorf("workflow node %q: node_inputs: missing, but node %q already reads the predict output and only a linear chain is supported", roots[1], roots[0])
	}

	order := []string{roots[0]}
	for id, ok := next[roots[0]]; ok; id, ok = next[id] {
		order = append(order, id)
	}

	// With one root and one input per node, a node the walk did not reach is on a cycle.
	if len(order) < len(nodes) {
		reached := make(map[string]bool, len(order))
		for _, id := range order {
			reached[id] = true
		}

		for _, node := range nodes {
			if !reached[node.GetId()] {
				return nil, fmt.Errorf("workflow node %q: node_inputs: the node is on a cycle", node.GetId())
			}
		}
	}

	return order, nil
}

// Evaluate runs the chain on item as a pre-queue workflow. Only an output with status
// SUCCESS provides concepts, so any other status drops the input with
// ReasonOutputFailed. The input is kept when the last node outputs at least one concept.
// The error is non-nil when ctx ends, when an operator fails, or when the workflow has a
// remote-model node, which runs only in post-queue workflows.
func (w *Workflow) Evaluate(ctx context.Context, item *Item) (Decision, error) {
	if ids := w.RemoteNodes(); len(ids) > 0 {
		return Decision{}, fmt.Errorf("workflow node %q: %s runs only in post-queue workflows, so this workflow cannot evaluate predict outputs", ids[0], TypeRemoteModel)
	}

	if item == nil {
		return Decision{Reason: ReasonOutputFailed}, nil
	}

	output := item.Output
	if output.GetStatus().GetCode() != clarifaipb.StatusCode_SUCCESS {
		return Decision{Reason: ReasonOutputFailed}, nil
	}

	// NOTE: operators work on concepts, so an output without concepts (an embedding or
	// an empty prediction) is dropped even by a chain of pass-through operators.
	concepts := output.GetData().GetConcepts()
	if len(concepts) == 0 {
		return Decision{Reason: ReasonNoConcepts}, nil
	}

	return w.run(ctx, item, concepts)
}

// EvaluateInput runs the chain on item as a post-queue workflow, starting from concepts,
// the concepts predicted for the input when it was captured (possibly none). It does not
// check item.Output. A remote-model node ignores the concepts it receives and outputs
// those of the remote model. Any other node that receives no concepts drops the input.
// The error is non-nil when ctx ends or an operator fails, for example when a remote
// model cannot be reached, and then the caller should retry the input later.
func (w *Workflow) EvaluateInput(ctx context.Context, item *Item, concepts []*clarifaipb.Concept) (Decision, error) {
	if item == nil {
		item = &Item{}
	}

	return w.run(ctx, item, concepts)
}

// RemoteNodes returns the ids of the remote-model nodes in evaluation order, so that the
// API can reject them in a pre-queue workflow.
func (w *Workflow) RemoteNodes() []string {
	var ids []string
	for _, node := range w.Nodes {
		if node.Operator.Type() == TypeRemoteModel {
			ids = append(ids, node.ID)
		}
	}

	return ids
}

// run passes concepts through the nodes in order.
func (w *Workflow) run(ctx context.Context, item *Item, concepts []*clarifaipb.Concept) (Decision, error) {
	for _, node := range w.Nodes {
		if err := ctx.Err(); err != nil {
			return Decision{}, err
		}

		operator := node.Operator.Type()
		remote := operator == TypeRemoteModel
		if !remote && len(concepts) == 0 {
			return dropped(node), nil
		}

		incoming := concepts
		if remote {
			incoming = nil
		}

		passed, err := node.Operator.Apply(ctx, item, incoming)
		if err != nil {
			return Decision{}, fmt.Errorf("workflow node %q (%s): %w", node.ID, operator, err)
		}

		if len(passed) == 0 {
			return dropped(node), nil
		}
		concepts = passed
	}

	return Decision{Keep: true, Reason: ReasonKept, Concepts: concepts}, nil
}

// dropped returns the decision for an input that node dropped.
func dropped(node Node) Decision {
	return Decision{Reason: ReasonNodeDropped, NodeID: node.ID, Operator: node.Operator.Type()}
}
