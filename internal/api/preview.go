package api

import (
	"context"
	"fmt"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/identity"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// rpcGetCollectorPreview reads what a collector counted and kept. It takes
// the scope of reading collectors.
var rpcGetCollectorPreview = rpcSpec{"GetCollectorPreview", []string{identity.ScopeCollectorsGet}}

// GetCollectorPreview returns the outcome counts and the newest records of a
// collector of the app of the request. A collector that never previewed has
// an empty preview. It is collectord's own RPC, not part of Clarifai's API.
func (s *Server) GetCollectorPreview(ctx context.Context, req *pb.GetCollectorPreviewRequest) (*pb.SingleCollectorPreviewResponse, error) {
	resp := &pb.SingleCollectorPreviewResponse{}
	resp.Status = s.serve(ctx, rpcGetCollectorPreview, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		col, err := s.getCollector(ctx, app, req.GetCollectorId())
		if err != nil {
			return err
		}

		ref := admission.Ref{UserID: app.UserID, AppID: app.ID, CollectorID: col.ID}
		preview, err := s.previews.GetPreview(ctx, ref)
		if err != nil {
			return fmt.Errorf("get preview of collector %q: %w", col.ID, err)
		}
		if preview == nil {
			preview = &pb.CollectorPreview{}
		}
		preview.CollectorId = col.ID
		resp.Preview = preview
		return nil
	})
	return resp, nil
}
