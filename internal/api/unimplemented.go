package api

import (
	"context"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// NOTE: workflows are not served yet, so collectors can name pre-queue and
// post-queue workflow IDs that nothing here can create or check.
var (
	rpcPostWorkflows    = rpcSpec{"PostWorkflows", nil}
	rpcGetWorkflow      = rpcSpec{"GetWorkflow", nil}
	rpcListWorkflows    = rpcSpec{"ListWorkflows", nil}
	rpcPatchWorkflows   = rpcSpec{"PatchWorkflows", nil}
	rpcDeleteWorkflows  = rpcSpec{"DeleteWorkflows", nil}
	rpcPostModelOutputs = rpcSpec{"PostModelOutputs", nil}
)

// notImplemented returns the body error of an RPC that collectord does not
// serve. The key is still checked first, as for every RPC.
func notImplemented(details string) func(*call) error {
	return func(*call) error {
		return fail(pb.StatusCode_NOT_IMPLEMENTED, "%s", details)
	}
}

const workflowsNotServed = "collectord does not serve workflows yet"

// PostWorkflows returns NOT_IMPLEMENTED.
func (s *Server) PostWorkflows(ctx context.Context, _ *pb.PostWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	return &pb.MultiWorkflowResponse{Status: s.serve(ctx, rpcPostWorkflows, notImplemented(workflowsNotServed))}, nil
}

// GetWorkflow returns NOT_IMPLEMENTED.
func (s *Server) GetWorkflow(ctx context.Context, _ *pb.GetWorkflowRequest) (*pb.SingleWorkflowResponse, error) {
	return &pb.SingleWorkflowResponse{Status: s.serve(ctx, rpcGetWorkflow, notImplemented(workflowsNotServed))}, nil
}

// ListWorkflows returns NOT_IMPLEMENTED.
func (s *Server) ListWorkflows(ctx context.Context, _ *pb.ListWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	return &pb.MultiWorkflowResponse{Status: s.serve(ctx, rpcListWorkflows, notImplemented(workflowsNotServed))}, nil
}

// PatchWorkflows returns NOT_IMPLEMENTED.
func (s *Server) PatchWorkflows(ctx context.Context, _ *pb.PatchWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	return &pb.MultiWorkflowResponse{Status: s.serve(ctx, rpcPatchWorkflows, notImplemented(workflowsNotServed))}, nil
}

// DeleteWorkflows returns NOT_IMPLEMENTED.
func (s *Server) DeleteWorkflows(ctx context.Context, _ *pb.DeleteWorkflowsRequest) (*pb.BaseResponse, error) {
	return &pb.BaseResponse{Status: s.serve(ctx, rpcDeleteWorkflows, notImplemented(workflowsNotServed))}, nil
}

// PostModelOutputs returns NOT_IMPLEMENTED: collectord observes predicts on
// their way to a model server and never serves them.
func (s *Server) PostModelOutputs(ctx context.Context, _ *pb.PostModelOutputsRequest) (*pb.MultiOutputResponse, error) {
	st := s.serve(ctx, rpcPostModelOutputs, notImplemented("collectord does not serve predicts; send them to the model server"))
	return &pb.MultiOutputResponse{Status: st}, nil
}
