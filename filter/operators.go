package filter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Compile-time checks that every operator implements Operator.
var (
	_ Operator = (*RandomSample)(nil)
	_ Operator = (*ConceptThresholder)(nil)
	_ Operator = (*MaxProbabilityBelow)(nil)
	_ Operator = (*MinProbabilityAbove)(nil)
	_ Operator = (*ConceptSynonymMapper)(nil)
	_ Operator = (*MetadataFilter)(nil)
	_ Operator = (*RemoteModel)(nil)
)

// RandomSample passes every concept of an input with probability KeepFraction, and
// drops the input otherwise.
type RandomSample struct {
	// KeepFraction is the share of inputs kept, in (0, 1].
	KeepFraction float64
	// Float64 returns a number in [0, 1). It must be safe for concurrent use.
	Float64 func() float64
}

// Type returns TypeRandomSample.
func (*RandomSample) Type() string { return TypeRandomSample }

// Apply passes the concepts when KeepFraction > Float64(), as Clarifai's Random Sample
// operator does, so a KeepFraction of 1 keeps every input.
func (r *RandomSample) Apply(_ context.Context, _ *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	if r.KeepFraction > r.Float64() {
		return concepts, nil
	}

	return nil, nil
}

// ValueComparator is the comparator of a concept thresholder, numbered as Clarifai's
// ValueComparator enum.
type ValueComparator int

// ValueComparator values.
const (
	GreaterThan        ValueComparator = 1
	GreaterThanOrEqual ValueComparator = 2
	LessThan           ValueComparator = 3
	LessThanOrEqual    ValueComparator = 4
	Equal              ValueComparator = 5
)

var comparatorNames = map[string]ValueComparator{
	"GREATER_THAN":          GreaterThan,
	"GREATER_THAN_OR_EQUAL": GreaterThanOrEqual,
	"LESS_THAN":             LessThan,
	"LESS_THAN_OR_EQUAL":    LessThanOrEqual,
	"EQUAL":                 Equal,
}

// String returns the Clarifai enum name of c.
func (c ValueComparator) String() string {
	for name, value := range comparatorNames {
		if value == c {
			return name
		}
	}

	return fmt.Sprintf("ValueComparator(%d)", int(c))
}

// Compare reports whether value relates to threshold by the comparator c. Both are float32, so
// a concept value equals a threshold written with the same decimal literal.
func (c ValueComparator) Compare(value, threshold float32) bool {
	switch c {
	case GreaterThan:
		return value > threshold
	case GreaterThanOrEqual:
		return value >= threshold
	case LessThan:
		return value < threshold
	case LessThanOrEqual:
		return value <= threshold
	case Equal:
		return value == threshold
	default:
		return false
	}
}

// parseComparator reads output_info.params.concept_threshold_type, given either as the
// enum number or as the enum name.
func parseComparator(nodeID string, params *structpb.Struct) (ValueComparator, error) {
	const field = "output_info.params.concept_threshold_type"

	value, ok := params.GetFields()["concept_threshold_type"]
	if !ok {
		return 0, paramError(nodeID, field, "missing parameter")
	}

	switch kind := value.GetKind().(type) {
	case *structpb.Value_StringValue:
		comparator, known := comparatorNames[strings.ToUpper(kind.StringValue)]
		if !known {
			return 0, paramError(nodeID, field, "unknown comparator %q: expected one of GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, LESS_THAN_OR_EQUAL, EQUAL", kind.StringValue)
		}

		return comparator, nil
	case *structpb.Value_NumberValue:
		number := kind.NumberValue
		if number != float64(int(number)) || number < float64(GreaterThan) || number > float64(Equal) {
			return 0, paramError(nodeID, field, "unknown comparator %v: expected a number from 1 to 5", number)
		}

		return ValueComparator(number), nil
	default:
		return 0, paramError(nodeID, field, "invalid value %s: expected a comparator name or number", value)
	}
}

// ConceptThresholder passes the concepts whose value compares to the threshold set for
// their concept id. Concepts without a threshold are dropped.
type ConceptThresholder struct {
	// Comparator compares a concept value (left) with its threshold (right).
	Comparator ValueComparator
	// Thresholds maps a concept id to its threshold.
	Thresholds map[string]float32
}

// Type returns TypeConceptThresholder.
func (*ConceptThresholder) Type() string { return TypeConceptThresholder }

// Apply returns the concepts that meet their threshold.
func (t *ConceptThresholder) Apply(_ context.Context, _ *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	var passed []*clarifaipb.Concept
	for _, concept := range concepts {
		threshold, ok := t.Thresholds[concept.GetId()]
		if ok && t.Comparator.Compare(concept.GetValue(), threshold) {
			passed = append(passed, concept)
		}
	}

	return passed, nil
}

// newConceptThresholder builds a thresholder from output_info.data.concepts and
// output_info.params.concept_threshold_type.
func newConceptThresholder(nodeID string, info *clarifaipb.OutputInfo) (*ConceptThresholder, error) {
	comparator, err := parseComparator(nodeID, info.GetParams())
	if err != nil {
		return nil, err
	}

	concepts := info.GetData().GetConcepts()
	if len(concepts) == 0 {
		return nil, paramError(nodeID, "output_info.data.concepts", "missing concept thresholds")
	}

	thresholds := make(map[string]float32, len(concepts))
	for i, concept := range concepts {
		if concept.GetId() == "" {
			return nil, paramError(nodeID, fmt.Sprintf("output_info.data.concepts[%d].id", i), "missing concept id")
		}

		thresholds[concept.GetId()] = concept.GetValue()
	}

	return &ConceptThresholder{Comparator: comparator, Thresholds: thresholds}, nil
}

// MaxProbabilityBelow keeps an input when its highest concept value is below Threshold,
// which selects uncertain predictions.
type MaxProbabilityBelow struct {
	// Threshold is the exclusive upper bound for the highest concept value.
	Threshold float32
}

// Type returns TypeMaxProbabilityBelow.
func (*MaxProbabilityBelow) Type() string { return TypeMaxProbabilityBelow }

// Apply passes all concepts when every value is below Threshold.
func (m *MaxProbabilityBelow) Apply(_ context.Context, _ *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	for _, concept := range concepts {
		if concept.GetValue() >= m.Threshold {
			return nil, nil
		}
	}

	return concepts, nil
}

// MinProbabilityAbove keeps an input when its lowest concept value is above Threshold.
type MinProbabilityAbove struct {
	// Threshold is the exclusive lower bound for the lowest concept value.
	Threshold float32
}

// Type returns TypeMinProbabilityAbove.
func (*MinProbabilityAbove) Type() string { return TypeMinProbabilityAbove }

// Apply passes all concepts when every value is above Threshold.
func (m *MinProbabilityAbove) Apply(_ context.Context, _ *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	for _, concept := range concepts {
		if concept.GetValue() <= m.Threshold {
			return nil, nil
		}
	}

	return concepts, nil
}

// ConceptSynonymMapper renames concepts through a mapping table, for example from the
// concepts of a public model to those of a custom model.
type ConceptSynonymMapper struct {
	// Synonyms maps a source concept id to its destination concept ids.
	Synonyms map[string][]string
}

// Type returns TypeConceptSynonymMapper.
func (*ConceptSynonymMapper) Type() string { return TypeConceptSynonymMapper }

// Apply returns one new concept per destination id, with the value of its source
// concept. When several sources map to the same destination, the highest value wins.
// Concepts without a mapping are dropped.
func (m *ConceptSynonymMapper) Apply(_ context.Context, _ *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	var mapped []*clarifaipb.Concept
	byID := make(map[string]*clarifaipb.Concept)

	for _, concept := range concepts {
		for _, destination := range m.Synonyms[concept.GetId()] {
			existing, seen := byID[destination]
			if seen {
				existing.Value = max(existing.Value, concept.GetValue())
				continue
			}

			created := &clarifaipb.Concept{Id: destination, Name: destination, Value: concept.GetValue()}
			byID[destination] = created
			mapped = append(mapped, created)
		}
	}

	return mapped, nil
}

// newConceptSynonymMapper reads the mapping table from output_info.params.synonyms, an
// object whose keys are source concept ids and whose values are a destination concept id
// or a list of them, such as {"kitten": "cat", "puppy": ["dog", "pet"]}. Only when the
// parameter is missing does it use fallback, the table given in Config.Synonyms.
func newConceptSynonymMapper(nodeID string, params *structpb.Struct, fallback map[string][]string) (*ConceptSynonymMapper, error) {
	value, ok := params.GetFields()["synonyms"]
	if ok {
		synonyms, err := parseSynonyms(nodeID, value)
		if err != nil {
			return nil, err
		}

		return &ConceptSynonymMapper{Synonyms: synonyms}, nil
	}

	if len(fallback) == 0 {
		return nil, paramError(nodeID, "output_info.params.synonyms", "missing parameter: set a mapping table from source to destination concept IDs, such as {\"kitten\": \"cat\"}")
	}

	for source, destinations := range fallback {
		if source == "" || len(destinations) == 0 || slices.Contains(destinations, "") {
			return nil, paramError(nodeID, "Config.Synonyms", "invalid mapping %q -> %q: ids must be non-empty", source, destinations)
		}
	}

	return &ConceptSynonymMapper{Synonyms: fallback}, nil
}

// parseSynonyms reads the value of output_info.params.synonyms. Sources are checked in
// sorted order so that the same table always reports the same error.
func parseSynonyms(nodeID string, value *structpb.Value) (map[string][]string, error) {
	const field = "output_info.params.synonyms"

	table := value.GetStructValue()
	if table == nil {
		return nil, paramError(nodeID, field, "invalid value %s: expected an object mapping source concept ids to destination concept ids", value)
	}

	if len(table.GetFields()) == 0 {
		return nil, paramError(nodeID, field, "expected a non-empty object mapping source concept ids to destination concept ids")
	}

	synonyms := make(map[string][]string, len(table.GetFields()))
	for _, source := range slices.Sorted(maps.Keys(table.GetFields())) {
		if source == "" {
			return nil, paramError(nodeID, field, "invalid source concept id \"\": ids must be non-empty")
		}

		destinations, err := parseDestinations(table.GetFields()[source])
		if err != nil {
			return nil, paramError(nodeID, fmt.Sprintf("%s[%q]", field, source), "%v", err)
		}

		synonyms[source] = destinations
	}

	return synonyms, nil
}

// parseDestinations reads one destination concept id or a non-empty list of them.
func parseDestinations(value *structpb.Value) ([]string, error) {
	switch kind := value.GetKind().(type) {
	case *structpb.Value_StringValue:
		if kind.StringValue == "" {
			return nil, errors.New("invalid destination concept id \"\": ids must be non-empty")
		}

		return []string{kind.StringValue}, nil
	case *structpb.Value_ListValue:
		items := kind.ListValue.GetValues()
		if len(items) == 0 {
			return nil, errors.New("expected a destination concept id or a non-empty list of them")
		}

		destinations := make([]string, 0, len(items))
		for i, item := range items {
			text, isString := item.GetKind().(*structpb.Value_StringValue)
			if !isString || text.StringValue == "" {
				return nil, fmt.Errorf("invalid item %d %s: expected a non-empty concept id string", i, item)
			}

			destinations = append(destinations, text.StringValue)
		}

		return destinations, nil
	default:
		return nil, fmt.Errorf("invalid value %s: expected a concept id string or a list of them", value)
	}
}
