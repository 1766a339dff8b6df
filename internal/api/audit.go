package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/audit"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// Resources named in audit entries. They are also the values of the resource
// attribute of collectord_api_audit_write_failures_total.
const (
	auditResourceCollector = "collector"
	auditResourceWorkflow  = "workflow"
	auditResourceApp       = "app"
	auditResourceInput     = "input"
)

const attrResource = "resource"

// rpcListAuditEntries reads the audit log of an app. It takes the scope of
// reading collectors, because the log mostly describes collectors.
var rpcListAuditEntries = rpcSpec{"ListAuditEntries", []string{identity.ScopeCollectorsGet}}

// auditLog writes the audit entries of successful changes. A nil *auditLog
// (no audit.Store configured) records nothing.
type auditLog struct {
	store    audit.Store
	log      *slog.Logger
	now      func() time.Time
	failures metric.Int64Counter
}

func newAuditLog(store audit.Store, deps Deps) (*auditLog, error) {
	if store == nil {
		return nil, nil
	}
	failures, err := deps.Meter.Int64Counter("collectord_api_audit_write_failures_total",
		metric.WithDescription("Audit entries of successful management API changes that could not be stored, by resource."))
	if err != nil {
		return nil, fmt.Errorf("api: create collectord_api_audit_write_failures_total: %w", err)
	}
	return &auditLog{store: store, log: deps.Logger, now: deps.Now, failures: failures}, nil
}

// record stores entries with the time and the actor, taken from the key of
// the call: its user and public ID, never the secret.
//
// NOTE: a failed write is logged and counted but does not fail the request,
// because the change it describes is already stored and cannot be undone
// here.
func (a *auditLog) record(ctx context.Context, c *call, entries ...audit.Entry) {
	if a == nil {
		return
	}
	now := a.now()
	for _, e := range entries {
		e.Time = now
		e.ActorUserID = c.key.UserID
		e.ActorKeyID = c.key.ID
		if e.Details == "" {
			e.Details = "{}"
		}
		if err := a.store.AppendAudit(ctx, e); err != nil {
			a.log.ErrorContext(ctx, "write audit entry failed",
				"req_id", c.reqID, "action", e.Action, "resource", e.Resource,
				"user_id", e.UserID, "app_id", e.AppID, "resource_id", e.ResourceID, "error", err)
			a.failures.Add(ctx, 1, metric.WithAttributes(attribute.String(attrResource, e.Resource)))
		}
	}
}

// auditDetails encodes the details of an entry. Values are built by the
// functions below from masked forms only.
func auditDetails(v map[string]any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Only JSON-safe values reach here, so this is a programming error;
		// an entry without details is still worth keeping.
		return `{"error":"details could not be encoded"}`
	}
	return string(data)
}

// maskedCollectorJSON returns a collector as the API shows it, with its
// post-inputs key masked.
func maskedCollectorJSON(c collector.Collector) json.RawMessage {
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(collectorToProto(c))
	if err != nil {
		return json.RawMessage(`null`)
	}
	return data
}

func collectorCreated(c collector.Collector) audit.Entry {
	return audit.Entry{
		Action: audit.ActionCreate, Resource: auditResourceCollector,
		UserID: c.UserID, AppID: c.AppID, ResourceID: c.ID,
		Details: auditDetails(map[string]any{"collector": maskedCollectorJSON(c)}),
	}
}

// collectorUpdated records both definitions, and whether the post-inputs key
// changed, which the masked forms cannot always show.
func collectorUpdated(before, after collector.Collector) audit.Entry {
	return audit.Entry{
		Action: audit.ActionUpdate, Resource: auditResourceCollector,
		UserID: after.UserID, AppID: after.AppID, ResourceID: after.ID,
		Details: auditDetails(map[string]any{
			"previous":                   maskedCollectorJSON(before),
			"collector":                  maskedCollectorJSON(after),
			"post_inputs_key_id_changed": before.PostInputsKey != after.PostInputsKey,
		}),
	}
}

func collectorDeleted(app localapp.App, id string) audit.Entry {
	return audit.Entry{
		Action: audit.ActionDelete, Resource: auditResourceCollector,
		UserID: app.UserID, AppID: app.ID, ResourceID: id,
	}
}

// allCollectorsDeleted is the one entry of DeleteCollectors with delete_all.
func allCollectorsDeleted(app localapp.App, count int) audit.Entry {
	return audit.Entry{
		Action: audit.ActionDelete, Resource: auditResourceCollector,
		UserID: app.UserID, AppID: app.ID,
		Details: auditDetails(map[string]any{"delete_all": true, "count": count}),
	}
}

// workflowJSON returns a workflow as the API shows it.
func workflowJSON(w workflow.Workflow) json.RawMessage {
	pw, err := workflowToProto(w)
	if err != nil {
		return json.RawMessage(`null`)
	}
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(pw)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return data
}

func workflowCreated(w workflow.Workflow) audit.Entry {
	return audit.Entry{
		Action: audit.ActionCreate, Resource: auditResourceWorkflow,
		UserID: w.UserID, AppID: w.AppID, ResourceID: w.ID,
		Details: auditDetails(map[string]any{"workflow": workflowJSON(w)}),
	}
}

func workflowUpdated(before, after workflow.Workflow) audit.Entry {
	return audit.Entry{
		Action: audit.ActionUpdate, Resource: auditResourceWorkflow,
		UserID: after.UserID, AppID: after.AppID, ResourceID: after.ID,
		Details: auditDetails(map[string]any{
			"previous": workflowJSON(before),
			"workflow": workflowJSON(after),
		}),
	}
}

func workflowDeleted(app localapp.App, id string) audit.Entry {
	return audit.Entry{
		Action: audit.ActionDelete, Resource: auditResourceWorkflow,
		UserID: app.UserID, AppID: app.ID, ResourceID: id,
	}
}

func appCreated(app localapp.App) audit.Entry {
	return audit.Entry{
		Action: audit.ActionCreate, Resource: auditResourceApp,
		UserID: app.UserID, AppID: app.ID, ResourceID: app.ID,
		Details: auditDetails(map[string]any{"name": app.Name, "description": app.Description}),
	}
}

// inputsChanged is the one entry of a PostInputs or DeleteInputs request. It
// lists the input IDs only: input data and metadata are user data, which may
// hold anything, secrets included.
func inputsChanged(action string, app localapp.App, ids []string) audit.Entry {
	return audit.Entry{
		Action: action, Resource: auditResourceInput,
		UserID: app.UserID, AppID: app.ID,
		Details: auditDetails(map[string]any{"count": len(ids), "input_ids": ids}),
	}
}

// addedInputIDs returns the IDs of the inputs a PostInputs request stored:
// those whose status batchOutcome counts as added.
func addedInputIDs(inputs []*pb.Input) []string {
	var ids []string
	for _, in := range inputs {
		switch in.GetStatus().GetCode() {
		case pb.StatusCode_INPUT_SUCCESS, pb.StatusCode_INPUT_PENDING:
			ids = append(ids, in.GetId())
		}
	}
	return ids
}

// ListAuditEntries returns one page of the audit log of the app of the
// request, newest first. It is collectord's own RPC, not part of
// Clarifai's API. Without an audit store it returns NOT_IMPLEMENTED.
func (s *Server) ListAuditEntries(ctx context.Context, req *pb.ListAuditEntriesRequest) (*pb.MultiAuditEntryResponse, error) {
	resp := &pb.MultiAuditEntryResponse{}
	resp.Status = s.serve(ctx, rpcListAuditEntries, func(c *call) error {
		if s.audit == nil {
			return fail(pb.StatusCode_NOT_IMPLEMENTED, "this server keeps no audit log")
		}
		app, err := s.resolveApp(ctx, c, req.GetUserAppId())
		if err != nil {
			return err
		}
		offset, limit, err := pageBounds(req.GetPage(), req.GetPerPage())
		if err != nil {
			return err
		}

		entries, err := s.audit.store.ListAudit(ctx, app.UserID, app.ID, offset, limit)
		if err != nil {
			return fmt.Errorf("list audit entries: %w", err)
		}
		for _, e := range entries {
			resp.AuditEntries = append(resp.AuditEntries, auditEntryToProto(e))
		}
		return nil
	})
	return resp, nil
}

func auditEntryToProto(e audit.Entry) *pb.AuditEntry {
	out := &pb.AuditEntry{
		Id:          e.ID,
		ActorUserId: e.ActorUserID,
		ActorKeyId:  e.ActorKeyID,
		Action:      e.Action,
		Resource:    e.Resource,
		UserId:      e.UserID,
		AppId:       e.AppID,
		ResourceId:  e.ResourceID,
	}
	if !e.Time.IsZero() {
		out.CreatedAt = timestamppb.New(e.Time)
	}
	if e.Details != "" {
		details := &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(e.Details), details); err == nil {
			out.Details = details
		} else {
			out.Details = &structpb.Struct{Fields: map[string]*structpb.Value{
				"unparsed": structpb.NewStringValue(e.Details),
			}}
		}
	}
	return out
}

// recordDeletedInputs writes the one entry of a DeleteInputs request, also
// when a store error stopped it part way, so the inputs it did delete are
// on record.
func (s *Server) recordDeletedInputs(ctx context.Context, c *call, app localapp.App, deleted []string) {
	if len(deleted) > 0 {
		s.audit.record(ctx, c, inputsChanged(audit.ActionDelete, app, deleted))
	}
}
