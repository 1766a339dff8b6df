package api

import (
	"context"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

var rpcPostModelOutputs = rpcSpec{"PostModelOutputs", nil}

// notImplemented returns the body error of an RPC that collectord does not
// serve. The key is still checked first, as for every RPC.
func notImplemented(details string) func(*call) error {
	return func(*call) error {
		return fail(pb.StatusCode_NOT_IMPLEMENTED, "%s", details)
	}
}

// PostModelOutputs returns NOT_IMPLEMENTED: collectord observes predicts on
// their way to a model server and never serves them.
func (s *Server) PostModelOutputs(ctx context.Context, _ *pb.PostModelOutputsRequest) (*pb.MultiOutputResponse, error) {
	st := s.serve(ctx, rpcPostModelOutputs, notImplemented("collectord does not serve predicts; send them to the model server"))
	return &pb.MultiOutputResponse{Status: st}, nil
}
