package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// actionOverwrite is the only PatchCollectors action collectord supports.
const actionOverwrite = "overwrite"

var (
	rpcPostCollectors   = rpcSpec{"PostCollectors", []string{identity.ScopeCollectorsAdd, identity.ScopeInputsAdd}}
	rpcGetCollector     = rpcSpec{"GetCollector", []string{identity.ScopeCollectorsGet}}
	rpcListCollectors   = rpcSpec{"ListCollectors", []string{identity.ScopeCollectorsGet}}
	rpcPatchCollectors  = rpcSpec{"PatchCollectors", []string{identity.ScopeCollectorsAdd}}
	rpcDeleteCollectors = rpcSpec{"DeleteCollectors", []string{identity.ScopeCollectorsAdd, identity.ScopeCollectorsDelete}}
)

// PostCollectors creates collectors in the app of the request, which is also
// their destination. The request is all-or-nothing.
func (s *Server) PostCollectors(ctx context.Context, req *pb.PostCollectorsRequest) (*pb.MultiCollectorResponse, error) {
	resp := &pb.MultiCollectorResponse{}
	resp.Status = s.serve(ctx, rpcPostCollectors, func(c *call) error {
		return s.postCollectors(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) postCollectors(ctx context.Context, c *call, req *pb.PostCollectorsRequest, resp *pb.MultiCollectorResponse) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	if err := checkBatchSize("collectors", len(req.GetCollectors())); err != nil {
		return err
	}

	batch, err := s.newCollectors(ctx, app, req.GetCollectors())
	if err != nil {
		return err
	}
	if err := s.insertCollectors(ctx, batch); err != nil {
		return err
	}

	for _, col := range batch {
		resp.Collectors = append(resp.Collectors, collectorToProto(col))
		s.audit.record(ctx, c, collectorCreated(col))
	}
	return nil
}

// newCollectors validates the collectors of a PostCollectors request and
// returns them ready to insert, or an error that names every invalid item.
func (s *Server) newCollectors(ctx context.Context, app localapp.App, in []*pb.Collector) ([]collector.Collector, error) {
	now := s.now()
	problems := itemProblems{field: "collectors"}
	seen := make(map[string]bool, len(in))
	batch := make([]collector.Collector, 0, len(in))

	for i, pc := range in {
		col, err := s.newCollector(ctx, app, pc, seen, now)
		if ae, ok := asAPIError(err); ok {
			problems.add(i, pc.GetId(), ae)
			continue
		}
		if err != nil {
			return nil, err
		}
		batch = append(batch, col)
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return batch, nil
}

func (s *Server) newCollector(ctx context.Context, app localapp.App, pc *pb.Collector, seen map[string]bool, now time.Time) (collector.Collector, error) {
	col, err := collectorFromProto(pc)
	if err != nil {
		return collector.Collector{}, err
	}
	if seen[col.ID] {
		return collector.Collector{}, fail(pb.StatusCode_CONN_INVALID_REQUEST, "id %q appears more than once in the request", col.ID)
	}
	seen[col.ID] = true

	_, err = s.collectors.GetCollector(ctx, app.UserID, app.ID, col.ID)
	if err == nil {
		return collector.Collector{}, fail(pb.StatusCode_DATABASE_DUPLICATE_KEY,
			"a collector with id %q already exists in app %q", col.ID, app.ID)
	}
	if !errors.Is(err, collector.ErrNotFound) {
		return collector.Collector{}, fmt.Errorf("get collector %q: %w", col.ID, err)
	}

	if err := s.checkPostInputsKey(ctx, app, col.PostInputsKey); err != nil {
		return collector.Collector{}, err
	}
	if err := s.checkWorkflowRefs(ctx, app, col); err != nil {
		return collector.Collector{}, err
	}

	col.UserID, col.AppID = app.UserID, app.ID
	col.CreatedAt, col.ModifiedAt = now, now
	return col, nil
}

// checkPostInputsKey verifies that secret is a known key that can add inputs
// to app. Its errors never quote the secret.
func (s *Server) checkPostInputsKey(ctx context.Context, app localapp.App, secret string) error {
	const field = sourceField + ".post_inputs_key_id"

	key, err := s.keys.ResolveKey(ctx, "Key "+secret)
	switch {
	case errors.Is(err, identity.ErrNoCredentials), errors.Is(err, identity.ErrKeyNotFound):
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "%s is not a known API key", field)
	case err != nil:
		return fmt.Errorf("resolve %s: %w", field, redactError(err, secret))
	}

	switch {
	case !key.HasScope(identity.ScopeInputsAdd):
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s lacks scope %s, which posting inputs requires", field, identity.ScopeInputsAdd)
	case key.UserID != app.UserID:
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s belongs to another user and cannot add inputs to app %q of user %q", field, app.ID, app.UserID)
	case key.AppID != "" && key.AppID != app.ID:
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s is a key of app %q and cannot add inputs to app %q", field, key.AppID, app.ID)
	}
	return nil
}

// checkWorkflowRefs verifies that the workflows col names exist in app and
// that its pre-queue workflow has no remote-model node.
//
// NOTE: this check and the write of the collector are separate store calls,
// so a workflow deleted between them leaves a collector that names a missing
// workflow.
func (s *Server) checkWorkflowRefs(ctx context.Context, app localapp.App, col collector.Collector) error {
	refs := []struct {
		field    string
		id       string
		preQueue bool
	}{
		{"pre_queue_workflow_id", col.PreQueueWorkflowID, true},
		{"post_queue_workflow_id", col.PostQueueWorkflowID, false},
	}
	for _, ref := range refs {
		if ref.id == "" {
			continue
		}
		wf, err := s.workflows.GetWorkflow(ctx, app.UserID, app.ID, ref.id)
		if errors.Is(err, workflow.ErrNotFound) {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST,
				"%s %q names no workflow of app %q: create the workflow first", ref.field, ref.id, app.ID)
		}
		if err != nil {
			return fmt.Errorf("get workflow %q: %w", ref.id, err)
		}
		if remote := remoteNodeIDs(wf.Nodes); ref.preQueue && len(remote) > 0 {
			return fail(pb.StatusCode_CONN_INVALID_REQUEST,
				"%s %q: workflow node %q is a %s node, which runs only in a post-queue workflow; "+
					"name this workflow in post_queue_workflow_id instead",
				ref.field, ref.id, remote[0], filter.TypeRemoteModel)
		}
	}
	return nil
}

// insertCollectors stores a validated batch, all or nothing: when one insert
// fails, the collectors already inserted are deleted again.
func (s *Server) insertCollectors(ctx context.Context, batch []collector.Collector) error {
	i, err := applyBatch(ctx, len(batch),
		func(ctx context.Context, i int) error { return s.collectors.InsertCollector(ctx, batch[i]) },
		func(ctx context.Context, i int) error {
			return s.collectors.DeleteCollector(ctx, batch[i].UserID, batch[i].AppID, batch[i].ID)
		},
		func(i int, err error) {
			s.log.ErrorContext(ctx, "delete collector of a failed batch",
				"user_id", batch[i].UserID, "app_id", batch[i].AppID, "collector_id", batch[i].ID, "error", err)
		})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, collector.ErrAlreadyExists):
		return fail(pb.StatusCode_DATABASE_DUPLICATE_KEY,
			"collectors[%d] (id %q): a collector with this id already exists in app %q", i, batch[i].ID, batch[i].AppID)
	default:
		return fmt.Errorf("insert collector %q: %w", batch[i].ID, err)
	}
}

// GetCollector returns one collector of the app of the request.
func (s *Server) GetCollector(ctx context.Context, req *pb.GetCollectorRequest) (*pb.SingleCollectorResponse, error) {
	resp := &pb.SingleCollectorResponse{}
	resp.Status = s.serve(ctx, rpcGetCollector, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		col, err := s.getCollector(ctx, app, req.GetCollectorId())
		if err != nil {
			return err
		}
		resp.Collector = collectorToProto(col)
		return nil
	})
	return resp, nil
}

func (s *Server) getCollector(ctx context.Context, app localapp.App, id string) (collector.Collector, error) {
	if id == "" {
		return collector.Collector{}, fail(pb.StatusCode_CONN_INVALID_REQUEST, "collector_id is required")
	}
	col, err := s.collectors.GetCollector(ctx, app.UserID, app.ID, id)
	if errors.Is(err, collector.ErrNotFound) {
		return collector.Collector{}, fail(pb.StatusCode_COLLECTOR_MISSING, "collector %q not found in app %q", id, app.ID)
	}
	if err != nil {
		return collector.Collector{}, fmt.Errorf("get collector %q: %w", id, err)
	}
	return col, nil
}

// ListCollectors returns one page of the collectors of the app of the
// request, oldest first.
func (s *Server) ListCollectors(ctx context.Context, req *pb.ListCollectorsRequest) (*pb.MultiCollectorResponse, error) {
	resp := &pb.MultiCollectorResponse{}
	resp.Status = s.serve(ctx, rpcListCollectors, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		offset, limit, err := pageBounds(req.GetPage(), req.GetPerPage())
		if err != nil {
			return err
		}

		cols, err := s.collectors.ListCollectors(ctx, app.UserID, app.ID, offset, limit)
		if err != nil {
			return fmt.Errorf("list collectors: %w", err)
		}
		for _, col := range cols {
			resp.Collectors = append(resp.Collectors, collectorToProto(col))
		}
		return nil
	})
	return resp, nil
}

// PatchCollectors changes existing collectors. Only the action "overwrite"
// is supported, and the request is all-or-nothing.
func (s *Server) PatchCollectors(ctx context.Context, req *pb.PatchCollectorsRequest) (*pb.MultiCollectorResponse, error) {
	resp := &pb.MultiCollectorResponse{}
	resp.Status = s.serve(ctx, rpcPatchCollectors, func(c *call) error {
		return s.patchCollectors(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) patchCollectors(ctx context.Context, c *call, req *pb.PatchCollectorsRequest, resp *pb.MultiCollectorResponse) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	if req.GetAction() != actionOverwrite {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "action %q is not supported: use %q", req.GetAction(), actionOverwrite)
	}
	if err := checkBatchSize("collectors", len(req.GetCollectors())); err != nil {
		return err
	}

	updates, previous, err := s.overwrittenCollectors(ctx, app, req.GetCollectors())
	if err != nil {
		return err
	}
	if err := s.updateCollectors(ctx, updates, previous); err != nil {
		return err
	}

	for i, col := range updates {
		resp.Collectors = append(resp.Collectors, collectorToProto(col))
		s.audit.record(ctx, c, collectorUpdated(previous[i], col))
	}
	return nil
}

// overwrittenCollectors validates a PatchCollectors batch and returns the new
// definitions with the stored ones they replace, or an error that names
// every invalid item.
func (s *Server) overwrittenCollectors(ctx context.Context, app localapp.App, in []*pb.Collector) (updates, previous []collector.Collector, err error) {
	now := s.now()
	problems := itemProblems{field: "collectors"}
	seen := make(map[string]bool, len(in))

	for i, pc := range in {
		old, col, err := s.overwriteCollector(ctx, app, pc, seen, now)
		if ae, ok := asAPIError(err); ok {
			problems.add(i, pc.GetId(), ae)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		updates = append(updates, col)
		previous = append(previous, old)
	}
	if err := problems.err(); err != nil {
		return nil, nil, err
	}
	return updates, previous, nil
}

// overwriteCollector returns the stored collector named by pc and its new
// definition: pc, with the stored created_at and version, the stored state
// when pc has no status, the stored policy when pc has none, and the stored
// key when pc's key is empty or masked.
func (s *Server) overwriteCollector(ctx context.Context, app localapp.App, pc *pb.Collector, seen map[string]bool, now time.Time) (old, col collector.Collector, err error) {
	if err := checkID("id", pc.GetId(), maxResourceIDLen); err != nil {
		return old, col, err
	}
	if seen[pc.GetId()] {
		return old, col, fail(pb.StatusCode_CONN_INVALID_REQUEST, "id %q appears more than once in the request", pc.GetId())
	}
	seen[pc.GetId()] = true

	old, err = s.getCollector(ctx, app, pc.GetId())
	if err != nil {
		return old, col, err
	}

	merged, keyKept := withStoredFields(pc, old)
	col, err = collectorFromProto(merged)
	if err != nil {
		return old, col, err
	}
	if !keyKept {
		if err := s.checkPostInputsKey(ctx, app, col.PostInputsKey); err != nil {
			return old, col, err
		}
	}
	if err := s.checkWorkflowRefs(ctx, app, col); err != nil {
		return old, col, err
	}

	col.UserID, col.AppID = app.UserID, app.ID
	col.CreatedAt, col.ModifiedAt, col.Version = old.CreatedAt, now, old.Version
	return old, col, nil
}

// withStoredFields returns a copy of pc in which an absent status, an absent
// policy and an empty or masked post_inputs_key_id take the stored values,
// and reports whether the stored key was kept.
func withStoredFields(pc *pb.Collector, old collector.Collector) (*pb.Collector, bool) {
	merged := proto.Clone(pc).(*pb.Collector)
	stored := collectorToProto(old)
	if merged.GetStatus() == nil {
		merged.Status = stored.GetStatus()
	}
	if merged.GetPolicy() == nil {
		merged.Policy = stored.GetPolicy()
	}

	src := merged.GetCollectorSource().GetApiPostModelOutputsCollectorSource()
	if src == nil {
		return merged, true
	}
	requestKey := src.GetPostInputsKeyId()
	if requestKey != "" && requestKey != maskSecret(old.PostInputsKey) {
		return merged, false
	}
	src.PostInputsKeyId = old.PostInputsKey
	return merged, true
}

// updateCollectors stores a validated batch, all or nothing: when one update
// fails, the collectors already updated get their previous definition back.
func (s *Server) updateCollectors(ctx context.Context, updates, previous []collector.Collector) error {
	i, err := applyBatch(ctx, len(updates),
		func(ctx context.Context, i int) error { return s.collectors.UpdateCollector(ctx, updates[i]) },
		func(ctx context.Context, i int) error { return s.collectors.UpdateCollector(ctx, previous[i]) },
		func(i int, err error) {
			s.log.ErrorContext(ctx, "restore collector of a failed batch",
				"user_id", previous[i].UserID, "app_id", previous[i].AppID, "collector_id", previous[i].ID, "error", err)
		})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, collector.ErrNotFound):
		return fail(pb.StatusCode_COLLECTOR_MISSING,
			"collectors[%d] (id %q): collector not found in app %q", i, updates[i].ID, updates[i].AppID)
	default:
		return fmt.Errorf("update collector %q: %w", updates[i].ID, err)
	}
}

// applyBatch applies items 0 to n-1 in order. When one fails, undo runs for
// the items already applied, so the batch is all or nothing. An undo that
// fails too is passed to undoFailed. applyBatch returns the index of the
// failed item and its error.
func applyBatch(ctx context.Context, n int, apply, undo func(ctx context.Context, i int) error, undoFailed func(i int, err error)) (int, error) {
	for i := range n {
		err := apply(ctx, i)
		if err == nil {
			continue
		}

		for done := range i {
			if uerr := undo(ctx, done); uerr != nil {
				undoFailed(done, uerr)
			}
		}
		return i, err
	}
	return 0, nil
}

// DeleteCollectors deletes the listed collectors, or all of them with
// delete_all. IDs that do not exist are reported in the status details while
// the others are deleted.
func (s *Server) DeleteCollectors(ctx context.Context, req *pb.DeleteCollectorsRequest) (*pb.BaseResponse, error) {
	resp := &pb.BaseResponse{}
	resp.Status = s.serve(ctx, rpcDeleteCollectors, func(c *call) error {
		return s.deleteCollectors(ctx, c, req)
	})
	return resp, nil
}

func (s *Server) deleteCollectors(ctx context.Context, c *call, req *pb.DeleteCollectorsRequest) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	ids := req.GetIds()
	switch {
	case req.GetDeleteAll() && len(ids) > 0:
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "set either ids or delete_all, not both")
	case req.GetDeleteAll():
		n, err := s.collectors.DeleteAllCollectors(ctx, app.UserID, app.ID)
		if err != nil {
			return fmt.Errorf("delete all collectors: %w", err)
		}
		s.log.InfoContext(ctx, "deleted all collectors of an app",
			"req_id", c.reqID, "user_id", app.UserID, "app_id", app.ID, "count", n)
		if n > 0 {
			s.audit.record(ctx, c, allCollectorsDeleted(app, n))
		}
		return nil
	case len(ids) == 0:
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "set ids to the collectors to delete, or delete_all to true")
	}

	var missing []string
	unique := uniqueStrings(ids)
	for _, id := range unique {
		err := s.collectors.DeleteCollector(ctx, app.UserID, app.ID, id)
		if errors.Is(err, collector.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return fmt.Errorf("delete collector %q: %w", id, err)
		}
		s.audit.record(ctx, c, collectorDeleted(app, id))
	}
	return partialDeleteError("collectors", pb.StatusCode_COLLECTOR_MISSING, app.ID, len(unique), missing)
}

// partialDeleteError reports the IDs a delete did not find: nil when none,
// notFound when none of total was found, MIXED_STATUS otherwise.
func partialDeleteError(items string, notFound pb.StatusCode, appID string, total int, missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	quoted := make([]string, len(missing))
	for i, id := range missing {
		quoted[i] = fmt.Sprintf("%q", id)
	}
	list := strings.Join(quoted, ", ")
	if len(missing) == total {
		return fail(notFound, "%s not found in app %q: %s", items, appID, list)
	}
	return fail(pb.StatusCode_MIXED_STATUS, "deleted %d of %d %s; not found in app %q: %s",
		total-len(missing), total, items, appID, list)
}

// uniqueStrings returns values without repeats, in their first order.
func uniqueStrings(values []string) []string {
	seen := make(map[string]bool, len(values))
	out := make([]string, 0, len(values))
	for _, v := range values {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// checkBatchSize rejects an empty batch and one above maxItemsPerRequest.
func checkBatchSize(field string, n int) error {
	if n == 0 {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST, "%s is empty: send at least one item", field)
	}
	if n > maxItemsPerRequest {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"%s has %d items; the maximum per request is %d", field, n, maxItemsPerRequest)
	}
	return nil
}
