package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/audit"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const (
	// duplicateInputDetails is the per-input details of a duplicate ID, as
	// Clarifai writes it. Its official SDK treats such an input as a
	// duplicate, not a failure.
	duplicateInputDetails = "Input has a duplicate ID."

	// maxImageBytes is Clarifai's documented limit of one image.
	maxImageBytes = 20 << 20

	// suffixAttempts bounds the new IDs tried for one input under SUFFIX.
	suffixAttempts = 3
)

var (
	rpcPostInputs   = rpcSpec{"PostInputs", []string{identity.ScopeInputsAdd}}
	rpcGetInput     = rpcSpec{"GetInput", []string{identity.ScopeInputsGet}}
	rpcListInputs   = rpcSpec{"ListInputs", []string{identity.ScopeInputsGet}}
	rpcDeleteInputs = rpcSpec{"DeleteInputs", []string{identity.ScopeInputsDelete}}
)

// PostInputs adds inputs to a local app and reports each input's outcome in
// its status: a duplicate ID is INPUT_DUPLICATE with the details
// "Input has a duplicate ID.". The request status is SUCCESS when all were
// added, FAILURE when none was, and MIXED_STATUS otherwise.
func (s *Server) PostInputs(ctx context.Context, req *pb.PostInputsRequest) (*pb.MultiInputResponse, error) {
	resp := &pb.MultiInputResponse{}
	resp.Status = s.serve(ctx, rpcPostInputs, func(c *call) error {
		return s.postInputs(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) postInputs(ctx context.Context, c *call, req *pb.PostInputsRequest, resp *pb.MultiInputResponse) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	if err := checkBatchSize("inputs", len(req.GetInputs())); err != nil {
		return err
	}
	suffix, err := suffixOnConflict(req.GetInputIdConflictResolution())
	if err != nil {
		return err
	}

	// NOTE: inputs_add_job_id is accepted and ignored: inputs are stored
	// before the response, so there is no job to follow.
	inputs, valid := prepareInputs(req.GetInputs(), suffix)
	if err := s.insertInputs(ctx, c, app, inputs, valid, suffix); err != nil {
		return err
	}
	if added := addedInputIDs(inputs); len(added) > 0 {
		s.audit.record(ctx, c, inputsChanged(audit.ActionCreate, app, added))
	}

	resp.Inputs = make([]*pb.Input, len(inputs))
	for i, in := range inputs {
		resp.Inputs[i] = withoutBytes(in)
	}
	return batchOutcome("inputs", inputs)
}

func suffixOnConflict(mode pb.InputIDConflictResolution) (bool, error) {
	switch mode {
	case pb.InputIDConflictResolution_INPUT_ID_CONFLICT_RESOLUTION_NOT_SET, pb.InputIDConflictResolution_SKIP:
		return false, nil
	case pb.InputIDConflictResolution_SUFFIX:
		return true, nil
	default:
		return false, fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"input_id_conflict_resolution %d is not a known value: use SKIP or SUFFIX", mode)
	}
}

// prepareInputs copies the inputs of a request, gives an ID to those without
// one and sets the status of each invalid input. It returns the copies and
// the indexes of the valid ones.
func prepareInputs(in []*pb.Input, suffix bool) ([]*pb.Input, []int) {
	inputs := make([]*pb.Input, len(in))
	valid := make([]int, 0, len(in))
	seen := make(map[string]bool, len(in))

	for i, orig := range in {
		inp := proto.Clone(orig).(*pb.Input)
		inputs[i] = inp
		if inp.Id == "" {
			inp.Id = newRequestID()
		}

		if err := checkInput(inp); err != nil {
			inp.Status = itemStatus(pb.StatusCode_INPUT_INVALID_ARGUMENT, err.details)
			continue
		}
		if seen[inp.Id] && !suffix {
			inp.Status = itemStatus(pb.StatusCode_INPUT_DUPLICATE, duplicateInputDetails)
			continue
		}
		base := inp.Id
		for seen[inp.Id] {
			inp.Id = suffixedID(base)
		}
		seen[inp.Id] = true
		valid = append(valid, i)
	}
	return inputs, valid
}

func checkInput(inp *pb.Input) *apiError {
	if err := checkID("id", inp.GetId(), maxInputIDLen); err != nil {
		ae, _ := asAPIError(err)
		return ae
	}
	d := inp.GetData()
	hasData := len(d.GetImage().GetBase64()) > 0 || d.GetImage().GetUrl() != "" ||
		len(d.GetVideo().GetBase64()) > 0 || d.GetVideo().GetUrl() != "" ||
		len(d.GetAudio().GetBase64()) > 0 || d.GetAudio().GetUrl() != "" ||
		d.GetText().GetRaw() != "" || d.GetText().GetUrl() != ""
	if !hasData {
		return fail(pb.StatusCode_INPUT_INVALID_ARGUMENT,
			"the input has no data: set data.image, data.video, data.audio or data.text")
	}
	if n := len(d.GetImage().GetBase64()); n > maxImageBytes {
		return fail(pb.StatusCode_INPUT_INVALID_ARGUMENT,
			"data.image.base64 is %d bytes; the maximum is %d", n, maxImageBytes)
	}
	return nil
}

// suffixedID returns id with a random suffix, the ID SUFFIX gives an input
// whose ID is taken.
func suffixedID(id string) string {
	suffix := newRequestID()[:8]
	if len(id)+1+len(suffix) > maxInputIDLen {
		id = id[:maxInputIDLen-1-len(suffix)]
	}
	return id + "-" + suffix
}

// insertInputs stores the valid inputs and sets the status of each. Under
// SUFFIX, inputs whose ID is taken are stored again under suffixed IDs.
func (s *Server) insertInputs(ctx context.Context, c *call, app localapp.App, inputs []*pb.Input, valid []int, suffix bool) error {
	pending := valid
	for attempt := 0; len(pending) > 0; attempt++ {
		batch := make([]*pb.Input, len(pending))
		for j, i := range pending {
			batch[j] = inputs[i]
		}
		errs := s.inputs.InsertInputs(ctx, app.UserID, app.ID, batch)
		if len(errs) != len(batch) {
			return fmt.Errorf("insert inputs: the store returned %d results for %d inputs", len(errs), len(batch))
		}

		var retry []int
		for j, err := range errs {
			i := pending[j]
			if errors.Is(err, localapp.ErrInputDuplicateID) && suffix && attempt < suffixAttempts {
				inputs[i].Id = suffixedID(inputs[i].GetId())
				retry = append(retry, i)
				continue
			}
			inputs[i].Status = s.insertStatus(ctx, c, inputs[i], err)
		}
		pending = retry
	}
	return nil
}

// insertStatus returns the status of one input after the store returned err
// for it.
func (s *Server) insertStatus(ctx context.Context, c *call, inp *pb.Input, err error) *pb.Status {
	switch {
	case err == nil && inp.GetStatus() != nil:
		return inp.GetStatus()
	case err == nil:
		return itemStatus(pb.StatusCode_INPUT_SUCCESS, "")
	case errors.Is(err, localapp.ErrInputDuplicateID):
		return itemStatus(pb.StatusCode_INPUT_DUPLICATE, duplicateInputDetails)
	}

	s.log.ErrorContext(ctx, "store input failed",
		"req_id", c.reqID, "user_id", c.userID, "app_id", c.appID, "input_id", inp.GetId(), "error", err)
	return itemStatus(pb.StatusCode_INPUT_FAILED, "storing the input failed; the server log has the cause under req_id "+c.reqID)
}

// batchOutcome returns nil when every input was added, FAILURE when none
// was, and MIXED_STATUS otherwise.
func batchOutcome(items string, inputs []*pb.Input) error {
	failed := 0
	for _, in := range inputs {
		switch in.GetStatus().GetCode() {
		case pb.StatusCode_INPUT_SUCCESS, pb.StatusCode_INPUT_PENDING:
		default:
			failed++
		}
	}

	switch failed {
	case 0:
		return nil
	case len(inputs):
		return fail(pb.StatusCode_FAILURE, "none of the %d %s was added; each has its own status", len(inputs), items)
	default:
		return fail(pb.StatusCode_MIXED_STATUS, "%d of %d %s were not added; each has its own status", failed, len(inputs), items)
	}
}

// withoutBytes returns a copy of an input without the base64 bytes of its
// media, so a response never echoes up to 128 MB back to the client.
func withoutBytes(in *pb.Input) *pb.Input {
	out := proto.Clone(in).(*pb.Input)
	if d := out.GetData(); d != nil {
		if d.Image != nil {
			d.Image.Base64 = nil
		}
		if d.Video != nil {
			d.Video.Base64 = nil
		}
		if d.Audio != nil {
			d.Audio.Base64 = nil
		}
	}
	return out
}

// GetInput returns one input of a local app.
func (s *Server) GetInput(ctx context.Context, req *pb.GetInputRequest) (*pb.SingleInputResponse, error) {
	resp := &pb.SingleInputResponse{}
	resp.Status = s.serve(ctx, rpcGetInput, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		if req.GetInputId() == "" {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST, "input_id is required")
		}

		in, err := s.inputs.GetInput(ctx, app.UserID, app.ID, req.GetInputId())
		if errors.Is(err, localapp.ErrInputNotFound) {
			return fail(pb.StatusCode_INPUT_DOES_NOT_EXIST, "input %q not found in app %q", req.GetInputId(), app.ID)
		}
		if err != nil {
			return fmt.Errorf("get input %q: %w", req.GetInputId(), err)
		}
		resp.Input = in
		return nil
	})
	return resp, nil
}

// ListInputs returns one page of the inputs of a local app, oldest first,
// or the inputs named in ids, leaving out those that do not exist.
func (s *Server) ListInputs(ctx context.Context, req *pb.ListInputsRequest) (*pb.MultiInputResponse, error) {
	resp := &pb.MultiInputResponse{}
	resp.Status = s.serve(ctx, rpcListInputs, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		offset, limit, err := pageBounds(req.GetPage(), req.GetPerPage())
		if err != nil {
			return err
		}

		if len(req.GetIds()) > 0 {
			resp.Inputs, err = s.inputsByID(ctx, app, req.GetIds())
			return err
		}
		resp.Inputs, err = s.inputs.ListInputs(ctx, app.UserID, app.ID, offset, limit)
		if err != nil {
			return fmt.Errorf("list inputs: %w", err)
		}
		return nil
	})
	return resp, nil
}

func (s *Server) inputsByID(ctx context.Context, app localapp.App, ids []string) ([]*pb.Input, error) {
	if len(ids) > maxPerPage {
		return nil, fail(pb.StatusCode_CONN_INVALID_REQUEST, "ids has %d items; the maximum is %d", len(ids), maxPerPage)
	}
	var out []*pb.Input
	for _, id := range uniqueStrings(ids) {
		in, err := s.inputs.GetInput(ctx, app.UserID, app.ID, id)
		if errors.Is(err, localapp.ErrInputNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get input %q: %w", id, err)
		}
		out = append(out, in)
	}
	return out, nil
}

// DeleteInputs deletes the listed inputs of a local app. IDs that do not
// exist are reported in the status details while the others are deleted.
func (s *Server) DeleteInputs(ctx context.Context, req *pb.DeleteInputsRequest) (*pb.BaseResponse, error) {
	resp := &pb.BaseResponse{}
	resp.Status = s.serve(ctx, rpcDeleteInputs, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		if len(req.GetIds()) == 0 {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST, "ids is empty: list the inputs to delete")
		}

		var missing, deleted []string
		unique := uniqueStrings(req.GetIds())
		for _, id := range unique {
			err := s.inputs.DeleteInput(ctx, app.UserID, app.ID, id)
			if errors.Is(err, localapp.ErrInputNotFound) {
				missing = append(missing, id)
				continue
			}
			if err != nil {
				s.recordDeletedInputs(ctx, c, app, deleted)
				return fmt.Errorf("delete input %q: %w", id, err)
			}
			deleted = append(deleted, id)
		}
		s.recordDeletedInputs(ctx, c, app, deleted)
		return partialDeleteError("inputs", pb.StatusCode_INPUT_DOES_NOT_EXIST, app.ID, len(unique), missing)
	})
	return resp, nil
}
