package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// actionMerge is the PatchWorkflows action that replaces nodes by ID and
// appends new ones. actionOverwrite replaces the whole node list.
const actionMerge = "merge"

// Limits of a workflow. Clarifai documents no such limits, so these are
// collectord's own.
const (
	// maxWorkflowNodes caps the chain, because the sidecar runs every node on
	// every predict output that a collector captures.
	maxWorkflowNodes = 64
	// maxWorkflowMetadataBytes caps the encoded metadata of a workflow.
	maxWorkflowMetadataBytes = 64 << 10
)

var (
	rpcPostWorkflows   = rpcSpec{"PostWorkflows", []string{identity.ScopeWorkflowsAdd}}
	rpcGetWorkflow     = rpcSpec{"GetWorkflow", []string{identity.ScopeWorkflowsGet}}
	rpcListWorkflows   = rpcSpec{"ListWorkflows", []string{identity.ScopeWorkflowsGet}}
	rpcPatchWorkflows  = rpcSpec{"PatchWorkflows", []string{identity.ScopeWorkflowsAdd}}
	rpcDeleteWorkflows = rpcSpec{"DeleteWorkflows", []string{identity.ScopeWorkflowsAdd, identity.ScopeWorkflowsDelete}}
)

// PostWorkflows creates workflows in the app of the request. Every workflow
// must compile, and the request is all-or-nothing.
func (s *Server) PostWorkflows(ctx context.Context, req *pb.PostWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	resp := &pb.MultiWorkflowResponse{}
	resp.Status = s.serve(ctx, rpcPostWorkflows, func(c *call) error {
		return s.postWorkflows(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) postWorkflows(ctx context.Context, c *call, req *pb.PostWorkflowsRequest, resp *pb.MultiWorkflowResponse) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	if err := checkBatchSize("workflows", len(req.GetWorkflows())); err != nil {
		return err
	}

	batch, err := s.newWorkflows(ctx, app, req.GetWorkflows())
	if err != nil {
		return err
	}
	out, err := workflowsToProto(batch)
	if err != nil {
		return err
	}
	if err := s.insertWorkflows(ctx, batch); err != nil {
		return err
	}

	resp.Workflows = out
	for _, wf := range batch {
		s.audit.record(ctx, c, workflowCreated(wf))
	}
	return nil
}

// newWorkflows validates the workflows of a PostWorkflows request and
// returns them ready to insert, or an error that names every invalid item.
func (s *Server) newWorkflows(ctx context.Context, app localapp.App, in []*pb.Workflow) ([]workflow.Workflow, error) {
	now := s.now()
	problems := itemProblems{field: "workflows"}
	seen := make(map[string]bool, len(in))
	batch := make([]workflow.Workflow, 0, len(in))

	for i, pw := range in {
		wf, err := s.newWorkflow(ctx, app, pw, seen, now)
		if ae, ok := asAPIError(err); ok {
			problems.add(i, pw.GetId(), ae)
			continue
		}
		if err != nil {
			return nil, err
		}
		batch = append(batch, wf)
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return batch, nil
}

func (s *Server) newWorkflow(ctx context.Context, app localapp.App, pw *pb.Workflow, seen map[string]bool, now time.Time) (workflow.Workflow, error) {
	wf, err := s.workflowFromProto(pw)
	if err != nil {
		return workflow.Workflow{}, err
	}
	if seen[wf.ID] {
		return workflow.Workflow{}, fail(pb.StatusCode_CONN_INVALID_REQUEST, "id %q appears more than once in the request", wf.ID)
	}
	seen[wf.ID] = true

	_, err = s.workflows.GetWorkflow(ctx, app.UserID, app.ID, wf.ID)
	if err == nil {
		return workflow.Workflow{}, fail(pb.StatusCode_DATABASE_DUPLICATE_KEY,
			"a workflow with id %q already exists in app %q", wf.ID, app.ID)
	}
	if !errors.Is(err, workflow.ErrNotFound) {
		return workflow.Workflow{}, fmt.Errorf("get workflow %q: %w", wf.ID, err)
	}

	wf.UserID, wf.AppID = app.UserID, app.ID
	wf.CreatedAt, wf.ModifiedAt = now, now
	return wf, nil
}

// workflowFromProto validates a workflow of a request, compiles its nodes and
// converts it. Owner, times and version are left for the caller to set.
func (s *Server) workflowFromProto(in *pb.Workflow) (workflow.Workflow, error) {
	if err := checkID("id", in.GetId(), maxResourceIDLen); err != nil {
		return workflow.Workflow{}, err
	}
	nodes := cloneNodes(in.GetNodes())
	if err := s.compileNodes(nodes); err != nil {
		return workflow.Workflow{}, err
	}
	metadata, err := metadataFromProto(in.GetMetadata())
	if err != nil {
		return workflow.Workflow{}, err
	}
	return workflow.Workflow{
		ID:          in.GetId(),
		Description: in.GetDescription(),
		Nodes:       nodes,
		Metadata:    metadata,
	}, nil
}

// compileNodes compiles nodes as the sidecar and the ingest workers will, so
// that no workflow is stored that they cannot run. The compile error names
// the node and the field.
func (s *Server) compileNodes(nodes []*pb.WorkflowNode) error {
	switch {
	case len(nodes) == 0:
		return fail(pb.StatusCode_WORKFLOW_INVALID_ARGUMENT, "nodes is empty: a workflow needs at least one node")
	case len(nodes) > maxWorkflowNodes:
		return fail(pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			"nodes has %d nodes; the maximum is %d", len(nodes), maxWorkflowNodes)
	}
	if _, err := s.filters.Compile(&pb.Workflow{Nodes: nodes}); err != nil {
		return fail(pb.StatusCode_WORKFLOW_INVALID_ARGUMENT, "nodes: %v", err)
	}
	return nil
}

func cloneNodes(nodes []*pb.WorkflowNode) []*pb.WorkflowNode {
	out := make([]*pb.WorkflowNode, len(nodes))
	for i, n := range nodes {
		out[i] = proto.CloneOf(n)
	}
	return out
}

// metadataFromProto converts the metadata of a request. Nil stays nil.
func metadataFromProto(in *structpb.Struct) (map[string]any, error) {
	if in == nil {
		return nil, nil
	}
	if size := proto.Size(in); size > maxWorkflowMetadataBytes {
		return nil, fail(pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			"metadata is %d bytes encoded; the maximum is %d", size, maxWorkflowMetadataBytes)
	}
	return in.AsMap(), nil
}

// workflowToProto converts a stored workflow for a response.
func workflowToProto(w workflow.Workflow) (*pb.Workflow, error) {
	out := &pb.Workflow{
		Id:          w.ID,
		AppId:       w.AppID,
		UserId:      w.UserID,
		Description: w.Description,
		Nodes:       w.Nodes,
	}
	if w.Metadata != nil {
		metadata, err := structpb.NewStruct(w.Metadata)
		if err != nil {
			return nil, fmt.Errorf("convert the metadata of workflow %q: %w", w.ID, err)
		}
		out.Metadata = metadata
	}
	if !w.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(w.CreatedAt)
	}
	if !w.ModifiedAt.IsZero() {
		out.ModifiedAt = timestamppb.New(w.ModifiedAt)
	}
	return out, nil
}

func workflowsToProto(wfs []workflow.Workflow) ([]*pb.Workflow, error) {
	out := make([]*pb.Workflow, 0, len(wfs))
	for _, wf := range wfs {
		pw, err := workflowToProto(wf)
		if err != nil {
			return nil, err
		}
		out = append(out, pw)
	}
	return out, nil
}

// insertWorkflows stores a validated batch, all or nothing: when one insert
// fails, the workflows already inserted are deleted again.
func (s *Server) insertWorkflows(ctx context.Context, batch []workflow.Workflow) error {
	i, err := applyBatch(ctx, len(batch),
		func(ctx context.Context, i int) error { return s.workflows.InsertWorkflow(ctx, batch[i]) },
		func(ctx context.Context, i int) error {
			return s.workflows.DeleteWorkflow(ctx, batch[i].UserID, batch[i].AppID, batch[i].ID)
		},
		func(i int, err error) {
			s.log.ErrorContext(ctx, "delete workflow of a failed batch",
				"user_id", batch[i].UserID, "app_id", batch[i].AppID, "workflow_id", batch[i].ID, "error", err)
		})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, workflow.ErrAlreadyExists):
		return fail(pb.StatusCode_DATABASE_DUPLICATE_KEY,
			"workflows[%d] (id %q): a workflow with this id already exists in app %q", i, batch[i].ID, batch[i].AppID)
	default:
		return fmt.Errorf("insert workflow %q: %w", batch[i].ID, err)
	}
}

// GetWorkflow returns one workflow of the app of the request.
func (s *Server) GetWorkflow(ctx context.Context, req *pb.GetWorkflowRequest) (*pb.SingleWorkflowResponse, error) {
	resp := &pb.SingleWorkflowResponse{}
	resp.Status = s.serve(ctx, rpcGetWorkflow, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		wf, err := s.getWorkflow(ctx, app, req.GetWorkflowId())
		if err != nil {
			return err
		}
		resp.Workflow, err = workflowToProto(wf)
		return err
	})
	return resp, nil
}

func (s *Server) getWorkflow(ctx context.Context, app localapp.App, id string) (workflow.Workflow, error) {
	if id == "" {
		return workflow.Workflow{}, fail(pb.StatusCode_CONN_INVALID_REQUEST, "workflow_id is required")
	}
	wf, err := s.workflows.GetWorkflow(ctx, app.UserID, app.ID, id)
	if errors.Is(err, workflow.ErrNotFound) {
		return workflow.Workflow{}, fail(pb.StatusCode_WORKFLOW_DOES_NOT_EXIST, "workflow %q not found in app %q", id, app.ID)
	}
	if err != nil {
		return workflow.Workflow{}, fmt.Errorf("get workflow %q: %w", id, err)
	}
	return wf, nil
}

// ListWorkflows returns one page of the workflows of the app of the request,
// oldest first.
func (s *Server) ListWorkflows(ctx context.Context, req *pb.ListWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	resp := &pb.MultiWorkflowResponse{}
	resp.Status = s.serve(ctx, rpcListWorkflows, func(c *call) error {
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		offset, limit, err := pageBounds(req.GetPage(), req.GetPerPage())
		if err != nil {
			return err
		}

		wfs, err := s.workflows.ListWorkflows(ctx, app.UserID, app.ID, offset, limit)
		if err != nil {
			return fmt.Errorf("list workflows: %w", err)
		}
		resp.Workflows, err = workflowsToProto(wfs)
		return err
	})
	return resp, nil
}

// PatchWorkflows changes existing workflows with the action "overwrite" or
// "merge". The request is all-or-nothing.
func (s *Server) PatchWorkflows(ctx context.Context, req *pb.PatchWorkflowsRequest) (*pb.MultiWorkflowResponse, error) {
	resp := &pb.MultiWorkflowResponse{}
	resp.Status = s.serve(ctx, rpcPatchWorkflows, func(c *call) error {
		return s.patchWorkflows(ctx, c, req, resp)
	})
	return resp, nil
}

func (s *Server) patchWorkflows(ctx context.Context, c *call, req *pb.PatchWorkflowsRequest, resp *pb.MultiWorkflowResponse) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	action := req.GetAction()
	if action != actionOverwrite && action != actionMerge {
		return fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"action %q is not supported: use %q or %q", action, actionOverwrite, actionMerge)
	}
	if err := checkBatchSize("workflows", len(req.GetWorkflows())); err != nil {
		return err
	}

	updates, previous, err := s.patchedWorkflows(ctx, app, action, req.GetWorkflows())
	if err != nil {
		return err
	}
	if err := s.updateWorkflows(ctx, updates, previous); err != nil {
		return err
	}

	out, err := workflowsToProto(updates)
	if err != nil {
		return err
	}
	resp.Workflows = out
	for i, wf := range updates {
		s.audit.record(ctx, c, workflowUpdated(previous[i], wf))
	}
	return nil
}

// patchedWorkflows validates a PatchWorkflows batch and returns the new
// definitions with the stored ones they replace, or an error that names
// every invalid item.
func (s *Server) patchedWorkflows(ctx context.Context, app localapp.App, action string, in []*pb.Workflow) (updates, previous []workflow.Workflow, err error) {
	now := s.now()
	problems := itemProblems{field: "workflows"}
	seen := make(map[string]bool, len(in))

	for i, pw := range in {
		old, wf, err := s.patchWorkflow(ctx, app, action, pw, seen, now)
		if ae, ok := asAPIError(err); ok {
			problems.add(i, pw.GetId(), ae)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		updates = append(updates, wf)
		previous = append(previous, old)
	}
	if err := problems.err(); err != nil {
		return nil, nil, err
	}
	return updates, previous, nil
}

// patchWorkflow returns the stored workflow named by pw and its new
// definition. The nodes follow the action, and description and metadata are
// replaced when pw sets them.
func (s *Server) patchWorkflow(ctx context.Context, app localapp.App, action string, pw *pb.Workflow, seen map[string]bool, now time.Time) (old, wf workflow.Workflow, err error) {
	if err := checkID("id", pw.GetId(), maxResourceIDLen); err != nil {
		return old, wf, err
	}
	if seen[pw.GetId()] {
		return old, wf, fail(pb.StatusCode_CONN_INVALID_REQUEST, "id %q appears more than once in the request", pw.GetId())
	}
	seen[pw.GetId()] = true

	old, err = s.getWorkflow(ctx, app, pw.GetId())
	if err != nil {
		return old, wf, err
	}

	wf = old
	wf.Nodes = patchedNodes(action, old.Nodes, cloneNodes(pw.GetNodes()))
	if pw.GetDescription() != "" {
		wf.Description = pw.GetDescription()
	}
	if pw.GetMetadata() != nil {
		if wf.Metadata, err = metadataFromProto(pw.GetMetadata()); err != nil {
			return old, wf, err
		}
	}
	if err := s.compileNodes(wf.Nodes); err != nil {
		return old, wf, err
	}
	if err := s.checkRemoteNodesAllowed(ctx, app, wf); err != nil {
		return old, wf, err
	}

	wf.ModifiedAt = now
	return old, wf, nil
}

// patchedNodes returns the node list after a patch. Without request nodes
// the stored ones stay. "overwrite" takes the request's list. "merge"
// replaces each stored node that has the ID of a request node, and appends
// the request nodes with new IDs in their order.
func patchedNodes(action string, stored, request []*pb.WorkflowNode) []*pb.WorkflowNode {
	if len(request) == 0 {
		return stored
	}
	if action == actionOverwrite {
		return request
	}

	merged := make([]*pb.WorkflowNode, len(stored), len(stored)+len(request))
	copy(merged, stored)
	index := make(map[string]int, len(stored))
	for i, n := range stored {
		index[n.GetId()] = i
	}
	for _, n := range request {
		if i, ok := index[n.GetId()]; ok && n.GetId() != "" {
			merged[i] = n
			continue
		}
		merged = append(merged, n)
	}
	return merged
}

// checkRemoteNodesAllowed rejects a workflow with a remote-model node that a
// collector runs before the queue, where such nodes cannot run.
func (s *Server) checkRemoteNodesAllowed(ctx context.Context, app localapp.App, wf workflow.Workflow) error {
	remote := remoteNodeIDs(wf.Nodes)
	if len(remote) == 0 {
		return nil
	}
	uses, err := s.workflowUses(ctx, app, wf.ID)
	if err != nil {
		return err
	}
	for _, u := range uses {
		if u.preQueue {
			return fail(pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
				"nodes: workflow node %q is a %s node, but collector %q runs this workflow before the queue "+
					"(pre_queue_workflow_id), where %s nodes cannot run",
				remote[0], filter.TypeRemoteModel, u.collectorID, filter.TypeRemoteModel)
		}
	}
	return nil
}

// remoteNodeIDs returns the IDs of the remote-model nodes. It reads the
// operator type directly, so it also works on a stored workflow that no
// longer compiles.
func remoteNodeIDs(nodes []*pb.WorkflowNode) []string {
	var ids []string
	for _, n := range nodes {
		if n.GetModel().GetModelTypeId() == filter.TypeRemoteModel {
			ids = append(ids, n.GetId())
		}
	}
	return ids
}

// workflowUse is a collector that names a workflow.
type workflowUse struct {
	collectorID string
	preQueue    bool
}

func (u workflowUse) String() string {
	field := "post_queue_workflow_id"
	if u.preQueue {
		field = "pre_queue_workflow_id"
	}
	return fmt.Sprintf("collector %q (%s)", u.collectorID, field)
}

// workflowUses returns the collectors of app that name workflow id.
func (s *Server) workflowUses(ctx context.Context, app localapp.App, id string) ([]workflowUse, error) {
	var uses []workflowUse
	for offset := 0; ; offset += maxPerPage {
		cols, err := s.collectors.ListCollectors(ctx, app.UserID, app.ID, offset, maxPerPage)
		if err != nil {
			return nil, fmt.Errorf("list collectors: %w", err)
		}
		for _, col := range cols {
			if col.PreQueueWorkflowID == id {
				uses = append(uses, workflowUse{collectorID: col.ID, preQueue: true})
			}
			if col.PostQueueWorkflowID == id {
				uses = append(uses, workflowUse{collectorID: col.ID})
			}
		}
		if len(cols) < maxPerPage {
			return uses, nil
		}
	}
}

// updateWorkflows stores a validated batch, all or nothing: when one update
// fails, the workflows already updated get their previous definition back.
func (s *Server) updateWorkflows(ctx context.Context, updates, previous []workflow.Workflow) error {
	i, err := applyBatch(ctx, len(updates),
		func(ctx context.Context, i int) error { return s.workflows.UpdateWorkflow(ctx, updates[i]) },
		func(ctx context.Context, i int) error { return s.workflows.UpdateWorkflow(ctx, previous[i]) },
		func(i int, err error) {
			s.log.ErrorContext(ctx, "restore workflow of a failed batch",
				"user_id", previous[i].UserID, "app_id", previous[i].AppID, "workflow_id", previous[i].ID, "error", err)
		})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, workflow.ErrNotFound):
		return fail(pb.StatusCode_WORKFLOW_DOES_NOT_EXIST,
			"workflows[%d] (id %q): workflow not found in app %q", i, updates[i].ID, updates[i].AppID)
	default:
		return fmt.Errorf("update workflow %q: %w", updates[i].ID, err)
	}
}

// DeleteWorkflows deletes the listed workflows, or all of them with
// delete_all. A workflow that a collector names is kept and reported with
// the collector, as is an ID that does not exist, while the others are
// deleted.
func (s *Server) DeleteWorkflows(ctx context.Context, req *pb.DeleteWorkflowsRequest) (*pb.BaseResponse, error) {
	resp := &pb.BaseResponse{}
	resp.Status = s.serve(ctx, rpcDeleteWorkflows, func(c *call) error {
		return s.deleteWorkflows(ctx, c, req)
	})
	return resp, nil
}

func (s *Server) deleteWorkflows(ctx context.Context, c *call, req *pb.DeleteWorkflowsRequest) error {
	app, err := s.resolveApp(ctx, c, req.GetUserAppId())
	if err != nil {
		return err
	}
	ids, err := s.workflowsToDelete(ctx, app, req)
	if err != nil {
		return err
	}

	var missing, inUse []string
	for _, id := range ids {
		err := s.workflows.DeleteWorkflow(ctx, app.UserID, app.ID, id)
		switch {
		case errors.Is(err, workflow.ErrNotFound):
			// With delete_all, a workflow that another request deleted
			// meanwhile is gone as asked.
			if !req.GetDeleteAll() {
				missing = append(missing, id)
			}
			continue
		case errors.Is(err, workflow.ErrInUse):
			detail, err := s.inUseDetail(ctx, app, id, err)
			if err != nil {
				return err
			}
			inUse = append(inUse, detail)
			continue
		case err != nil:
			return fmt.Errorf("delete workflow %q: %w", id, err)
		}
		s.audit.record(ctx, c, workflowDeleted(app, id))
	}
	return workflowDeleteError(app.ID, len(ids), missing, inUse)
}

// workflowsToDelete returns the IDs a DeleteWorkflows request names: its ids
// without repeats, or every workflow of the app with delete_all.
func (s *Server) workflowsToDelete(ctx context.Context, app localapp.App, req *pb.DeleteWorkflowsRequest) ([]string, error) {
	ids := req.GetIds()
	switch {
	case req.GetDeleteAll() && len(ids) > 0:
		return nil, fail(pb.StatusCode_CONN_INVALID_REQUEST, "set either ids or delete_all, not both")
	case req.GetDeleteAll():
		return s.allWorkflowIDs(ctx, app)
	case len(ids) == 0:
		return nil, fail(pb.StatusCode_CONN_INVALID_REQUEST, "set ids to the workflows to delete, or delete_all to true")
	}
	return uniqueStrings(ids), nil
}

func (s *Server) allWorkflowIDs(ctx context.Context, app localapp.App) ([]string, error) {
	var ids []string
	for offset := 0; ; offset += maxPerPage {
		wfs, err := s.workflows.ListWorkflows(ctx, app.UserID, app.ID, offset, maxPerPage)
		if err != nil {
			return nil, fmt.Errorf("list workflows: %w", err)
		}
		for _, wf := range wfs {
			ids = append(ids, wf.ID)
		}
		if len(wfs) < maxPerPage {
			return ids, nil
		}
	}
}

// inUseDetail names the collectors that prevent the deletion of workflow
// id. When none is found, because a collector changed after the store
// rejected the delete, the store's error names it instead.
func (s *Server) inUseDetail(ctx context.Context, app localapp.App, id string, storeErr error) (string, error) {
	uses, err := s.workflowUses(ctx, app, id)
	if err != nil {
		return "", err
	}
	if len(uses) == 0 {
		return fmt.Sprintf("workflow %q: %v", id, storeErr), nil
	}
	names := make([]string, len(uses))
	for i, u := range uses {
		names[i] = u.String()
	}
	return fmt.Sprintf("workflow %q is used by %s: change or delete the collector first",
		id, strings.Join(names, ", ")), nil
}

// workflowDeleteError reports the workflows a delete kept: nil when none,
// WORKFLOW_DOES_NOT_EXIST when none of total existed, FAILURE when nothing
// was deleted and some workflow is in use, MIXED_STATUS otherwise.
func workflowDeleteError(appID string, total int, missing, inUse []string) error {
	if len(missing) == 0 && len(inUse) == 0 {
		return nil
	}

	var parts []string
	if len(missing) > 0 {
		quoted := make([]string, len(missing))
		for i, id := range missing {
			quoted[i] = fmt.Sprintf("%q", id)
		}
		parts = append(parts, fmt.Sprintf("not found in app %q: %s", appID, strings.Join(quoted, ", ")))
	}
	parts = append(parts, inUse...)
	details := strings.Join(parts, "; ")

	kept := len(missing) + len(inUse)
	switch {
	case len(inUse) == 0 && kept == total:
		return fail(pb.StatusCode_WORKFLOW_DOES_NOT_EXIST, "workflows %s", details)
	case kept == total:
		return fail(pb.StatusCode_FAILURE, "deleted no workflow; %s", details)
	default:
		return fail(pb.StatusCode_MIXED_STATUS, "deleted %d of %d workflows; %s", total-kept, total, details)
	}
}
