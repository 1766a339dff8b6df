package filter

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// MetadataCondition is one test on the input's metadata. Exactly one of Equals, OneOf
// and Exists is set.
type MetadataCondition struct {
	// Path is the dotted path of a metadata field, for example "camera.site".
	Path []string
	// Equals matches when the field equals this value. A number never equals a string.
	Equals *structpb.Value
	// OneOf matches when the field equals one of these values.
	OneOf []*structpb.Value
	// Exists, when set, matches when the field's presence is *Exists.
	Exists *bool
}

// Match reports whether metadata meets the condition. A missing path matches only
// Exists false.
func (c *MetadataCondition) Match(metadata *structpb.Struct) bool {
	value, found := lookupPath(metadata, c.Path)

	switch {
	case c.Exists != nil:
		return found == *c.Exists
	case !found:
		return false
	case c.Equals != nil:
		return proto.Equal(value, c.Equals)
	default:
		for _, candidate := range c.OneOf {
			if proto.Equal(value, candidate) {
				return true
			}
		}

		return false
	}
}

// lookupPath walks nested structs. A path through a value that is not a struct is
// missing.
func lookupPath(metadata *structpb.Struct, path []string) (*structpb.Value, bool) {
	current := metadata
	for i, key := range path {
		value, ok := current.GetFields()[key]
		if !ok {
			return nil, false
		}

		if i == len(path)-1 {
			return value, true
		}

		current = value.GetStructValue()
		if current == nil {
			return nil, false
		}
	}

	return nil, false
}

// MetadataFilter passes the concepts unchanged when the input's metadata meets every
// condition, and drops the input otherwise.
type MetadataFilter struct {
	// Conditions must all match.
	Conditions []MetadataCondition
}

// Type returns TypeMetadataFilter.
func (*MetadataFilter) Type() string { return TypeMetadataFilter }

// Apply passes the concepts when all conditions match.
func (m *MetadataFilter) Apply(_ context.Context, item *Item, concepts []*clarifaipb.Concept) ([]*clarifaipb.Concept, error) {
	metadata := item.metadata()
	for i := range m.Conditions {
		if !m.Conditions[i].Match(metadata) {
			return nil, nil
		}
	}

	return concepts, nil
}

// newMetadataFilter reads output_info.params.conditions, a list of objects such as
// {"path": "camera.site", "equals": "north"}, {"path": "tier", "one_of": ["a", "b"]} or
// {"path": "reviewed", "exists": false}.
func newMetadataFilter(nodeID string, params *structpb.Struct) (*MetadataFilter, error) {
	const field = "output_info.params.conditions"

	value, ok := params.GetFields()["conditions"]
	if !ok {
		return nil, paramError(nodeID, field, "missing parameter")
	}

	list := value.GetListValue().GetValues()
	if len(list) == 0 {
		return nil, paramError(nodeID, field, "expected a non-empty list of conditions")
	}

	conditions := make([]MetadataCondition, 0, len(list))
	for i, item := range list {
		condition, err := parseCondition(nodeID, fmt.Sprintf("%s[%d]", field, i), item.GetStructValue())
		if err != nil {
			return nil, err
		}

		conditions = append(conditions, condition)
	}

	return &MetadataFilter{Conditions: conditions}, nil
}

// parseCondition reads one condition object.
func parseCondition(nodeID, field string, object *structpb.Struct) (MetadataCondition, error) {
	var condition MetadataCondition
	if object == nil {
		return condition, paramError(nodeID, field, "expected an object with path and one of equals, one_of, exists")
	}

	fields := object.GetFields()
	path, err := parsePath(fields["path"])
	if err != nil {
		return condition, paramError(nodeID, field+".path", "%v", err)
	}
	condition.Path = path

	tests := 0
	if equals, ok := fields["equals"]; ok {
		condition.Equals = equals
		tests++
	}

	if oneOf, ok := fields["one_of"]; ok {
		condition.OneOf = oneOf.GetListValue().GetValues()
		if len(condition.OneOf) == 0 {
			return condition, paramError(nodeID, field+".one_of", "expected a non-empty list")
		}
		tests++
	}

	if exists, ok := fields["exists"]; ok {
		flag, isBool := exists.GetKind().(*structpb.Value_BoolValue)
		if !isBool {
			return condition, paramError(nodeID, field+".exists", "invalid value %s: expected true or false", exists)
		}
		condition.Exists = &flag.BoolValue
		tests++
	}

	if tests != 1 {
		return condition, paramError(nodeID, field, "expected exactly one of equals, one_of, exists, got %d", tests)
	}

	return condition, nil
}

// parsePath splits a dotted path and rejects empty segments such as in "a..b".
func parsePath(value *structpb.Value) ([]string, error) {
	text, ok := value.GetKind().(*structpb.Value_StringValue)
	if !ok || text.StringValue == "" {
		return nil, fmt.Errorf("missing dotted path string")
	}

	path := strings.Split(text.StringValue, ".")
	for _, segment := range path {
		if segment == "" {
			return nil, fmt.Errorf("invalid path %q: empty segment", text.StringValue)
		}
	}

	return path, nil
}
