package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

var (
	rpcGetUser  = rpcSpec{"GetUser", nil}
	rpcPostApps = rpcSpec{"PostApps", []string{identity.ScopeAppsAdd}}
	rpcGetApp   = rpcSpec{"GetApp", []string{identity.ScopeAppsGet}}
	rpcListApps = rpcSpec{"ListApps", []string{identity.ScopeAppsGet}}
)

// GetUser returns the key's own user; any valid key may ask. collectord
// keeps no profile, so the user carries only its ID.
func (s *Server) GetUser(ctx context.Context, req *pb.GetUserRequest) (*pb.SingleUserResponse, error) {
	resp := &pb.SingleUserResponse{}
	resp.Status = s.serve(ctx, rpcGetUser, func(c *call) error {
		userID, err := resolveUser(c, req.GetUserAppId().GetUserId())
		if err != nil {
			return err
		}
		resp.User = &pb.User{Id: userID}
		return nil
	})
	return resp, nil
}

// PostApps creates apps of the key's user. App keys cannot create apps,
// because they act only on their own app. The request is all-or-nothing.
func (s *Server) PostApps(ctx context.Context, req *pb.PostAppsRequest) (*pb.MultiAppResponse, error) {
	resp := &pb.MultiAppResponse{}
	resp.Status = s.serve(ctx, rpcPostApps, func(c *call) error {
		return s.postApps(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) postApps(ctx context.Context, c *call, req *pb.PostAppsRequest, resp *pb.MultiAppResponse) error {
	userID, err := resolveUser(c, req.GetUserAppId().GetUserId())
	if err != nil {
		return err
	}
	if c.key.AppID != "" {
		return fail(pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			"the API key is a key of app %q and cannot create apps: use a personal access token", c.key.AppID)
	}
	if err := checkBatchSize("apps", len(req.GetApps())); err != nil {
		return err
	}

	apps, err := s.newApps(ctx, userID, req.GetApps())
	if err != nil {
		return err
	}
	for i, app := range apps {
		err := s.apps.InsertApp(ctx, app)
		// NOTE: AppStore has no delete, so apps inserted before a failure
		// here stay; the checks in newApps make such a failure a race.
		if errors.Is(err, localapp.ErrAppExists) {
			return fail(pb.StatusCode_DATABASE_DUPLICATE_KEY, "apps[%d] (id %q): an app with this id already exists", i, app.ID)
		}
		if err != nil {
			return fmt.Errorf("insert app %q: %w", app.ID, err)
		}
		resp.Apps = append(resp.Apps, appToProto(app))
		s.audit.record(ctx, c, appCreated(app))
	}
	return nil
}

// newApps validates the apps of a PostApps request, or returns an error that
// names every invalid item.
func (s *Server) newApps(ctx context.Context, userID string, in []*pb.App) ([]localapp.App, error) {
	now := s.now()
	problems := itemProblems{field: "apps"}
	seen := make(map[string]bool, len(in))
	apps := make([]localapp.App, 0, len(in))

	for i, pa := range in {
		err := s.checkNewApp(ctx, userID, pa, seen)
		if ae, ok := asAPIError(err); ok {
			problems.add(i, pa.GetId(), ae)
			continue
		}
		if err != nil {
			return nil, err
		}
		apps = append(apps, localapp.App{
			UserID:      userID,
			ID:          pa.GetId(),
			Name:        pa.GetName(),
			Description: pa.GetDescription(),
			CreatedAt:   now,
		})
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return apps, nil
}

func (s *Server) checkNewApp(ctx context.Context, userID string, pa *pb.App, seen map[string]bool) error {
	if err := checkID("id", pa.GetId(), maxResourceIDLen); err != nil {
		return err
	}
	if pa.GetUserId() != "" && pa.GetUserId() != userID && pa.GetUserId() != meUserID {
		return fail(pb.StatusCode_CONN_INSUFFICIENT_SCOPES, "user_id %q is not the key's user %q", pa.GetUserId(), userID)
	}
	if seen[pa.GetId()] {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "id %q appears more than once in the request", pa.GetId())
	}
	seen[pa.GetId()] = true

	_, err := s.apps.GetApp(ctx, userID, pa.GetId())
	if err == nil {
		return fail(pb.StatusCode_DATABASE_DUPLICATE_KEY, "an app with id %q already exists", pa.GetId())
	}
	if !errors.Is(err, localapp.ErrAppNotFound) {
		return fmt.Errorf("get app %q: %w", pa.GetId(), err)
	}
	return nil
}

// GetApp returns the app of the request: the one in the path, or the app of
// an app key on /v2/app.
func (s *Server) GetApp(ctx context.Context, req *pb.GetAppRequest) (*pb.SingleAppResponse, error) {
	resp := &pb.SingleAppResponse{}
	resp.Status = s.serve(ctx, rpcGetApp, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		resp.App = appToProto(app)
		return nil
	})
	return resp, nil
}

// ListApps returns one page of the user's apps. For an app key the page
// contains only the key's own app.
func (s *Server) ListApps(ctx context.Context, req *pb.ListAppsRequest) (*pb.MultiAppResponse, error) {
	resp := &pb.MultiAppResponse{}
	resp.Status = s.serve(ctx, rpcListApps, func(c *call) error {
		apps, err := s.listApps(ctx, c, req)
		if err != nil {
			return err
		}
		for _, app := range apps {
			resp.Apps = append(resp.Apps, appToProto(app))
		}
		return nil
	})
	return resp, nil
}

func (s *Server) listApps(ctx context.Context, c *call, req *pb.ListAppsRequest) ([]localapp.App, error) {
	userID, err := resolveUser(c, req.GetUserAppId().GetUserId())
	if err != nil {
		return nil, err
	}
	offset, limit, err := pageBounds(req.GetPage(), req.GetPerPage())
	if err != nil {
		return nil, err
	}

	if c.key.AppID == "" {
		apps, err := s.apps.ListApps(ctx, userID, offset, limit)
		if err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		return apps, nil
	}

	if offset > 0 {
		return nil, nil
	}
	app, err := s.apps.GetApp(ctx, userID, c.key.AppID)
	switch {
	case errors.Is(err, localapp.ErrAppNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get app %q: %w", c.key.AppID, err)
	}
	return []localapp.App{app}, nil
}

func appToProto(a localapp.App) *pb.App {
	out := &pb.App{
		Id:          a.ID,
		Name:        a.Name,
		UserId:      a.UserID,
		Description: a.Description,
	}
	if !a.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(a.CreatedAt)
	}
	return out
}
