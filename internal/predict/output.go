package predict

import "github.com/collectord/collectord/internal/pb/clarifaipb"

// OutputFor returns the output produced for the request input at index,
// or nil when that output is missing or its status is not SUCCESS, because
// only successful outputs carry usable data.
//
// inputID is the ID the caller gave that input, or "" when it gave none.
// With an ID, the output whose input.id equals it is chosen; the output at
// the same position is preferred, so repeated IDs still pair one to one.
// Without an ID, or when the output at that position echoes no input ID,
// outputs pair with inputs by position.
func (r *Response) OutputFor(index int, inputID string) *clarifaipb.Output {
	if r == nil {
		return nil
	}

	output := r.outputAt(index, inputID)
	if output.GetStatus().GetCode() != clarifaipb.StatusCode_SUCCESS {
		return nil
	}
	return output
}

// outputAt finds the output paired with one request input, whatever its
// status.
func (r *Response) outputAt(index int, inputID string) *clarifaipb.Output {
	if index >= 0 && index < len(r.Outputs) {
		positional := r.Outputs[index]
		echoed := positional.GetInput().GetId()
		if inputID == "" || echoed == "" || echoed == inputID {
			return positional
		}
	}
	if inputID == "" {
		return nil
	}

	for _, output := range r.Outputs {
		if output.GetInput().GetId() == inputID {
			return output
		}
	}
	return nil
}
