package filter

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/structpb"
)

// paramError is a compile error on one field of one workflow node.
func paramError(nodeID, field, format string, args ...any) error {
	return fmt.Errorf("workflow node %q: %s: %s", nodeID, field, fmt.Sprintf(format, args...))
}

// requireNumber reads a finite number parameter from output_info.params.
func requireNumber(nodeID string, params *structpb.Struct, name string) (float64, error) {
	field := "output_info.params." + name

	value, ok := params.GetFields()[name]
	if !ok {
		return 0, paramError(nodeID, field, "missing parameter")
	}

	number, ok := value.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		return 0, paramError(nodeID, field, "invalid value %s: expected a number", value)
	}

	if math.IsNaN(number.NumberValue) || math.IsInf(number.NumberValue, 0) {
		return 0, paramError(nodeID, field, "invalid value %v: expected a finite number", number.NumberValue)
	}

	return number.NumberValue, nil
}

// requireProbability reads a number parameter in [0, 1] from output_info.params.
func requireProbability(nodeID string, params *structpb.Struct, name string) (float32, error) {
	number, err := requireNumber(nodeID, params, name)
	if err != nil {
		return 0, err
	}

	if number < 0 || number > 1 {
		return 0, paramError(nodeID, "output_info.params."+name, "invalid value %v: expected a number in [0, 1]", number)
	}

	return float32(number), nil
}
