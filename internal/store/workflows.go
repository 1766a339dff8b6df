package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

const workflowColumns = `user_id, app_id, id, description, created_at, modified_at,
    nodes, metadata, version`

// InsertWorkflow stores a new workflow with Version 1. A zero CreatedAt is
// set to the current time, and ModifiedAt is always the current time.
func (s *SQLite) InsertWorkflow(ctx context.Context, w workflow.Workflow) error {
	nodes, metadata, err := encodeWorkflow(w)
	if err != nil {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}
	now := s.clock.Now()

	err = s.inTx(ctx, func(tx *sql.Tx) error {
		return insertWorkflowRow(ctx, sqlExecer{tx}, w, now, nodes, metadata)
	})
	if isConstraint(err) {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, workflow.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}

	s.workflowListeners.run()
	return nil
}

// UpdateWorkflow replaces the description, nodes and metadata, sets
// ModifiedAt to the current time and increments Version; w.CreatedAt and
// w.Version are ignored.
func (s *SQLite) UpdateWorkflow(ctx context.Context, w workflow.Workflow) error {
	nodes, metadata, err := encodeWorkflow(w)
	if err != nil {
		return fmt.Errorf("update workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}

	var affected int64
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		affected, err = updateWorkflowRow(ctx, sqlExecer{tx}, w, s.clock.Now(), nodes, metadata)
		return err
	})
	if err != nil {
		return fmt.Errorf("update workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}
	if affected == 0 {
		return fmt.Errorf("update workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, workflow.ErrNotFound)
	}

	s.workflowListeners.run()
	return nil
}

// GetWorkflow returns workflow.ErrNotFound when the app has no workflow with
// that ID.
func (s *SQLite) GetWorkflow(ctx context.Context, userID, appID, id string) (workflow.Workflow, error) {
	return getWorkflow(ctx, sqlExecer{s.reader}, userID, appID, id)
}

// ListWorkflows returns one page of an app's workflows ordered by creation
// time, then ID. A limit of zero or less returns every workflow from offset.
func (s *SQLite) ListWorkflows(ctx context.Context, userID, appID string, offset, limit int) ([]workflow.Workflow, error) {
	return listWorkflows(ctx, sqlExecer{s.reader}, userID, appID, offset, limit)
}

// DeleteWorkflow returns workflow.ErrNotFound when the app has no workflow
// with that ID, and an error wrapping workflow.ErrInUse that names the
// collector when a collector of the app names the workflow. The check and
// the delete share one write transaction, and SQLite has one writer at a
// time, so no collector can start naming the workflow in between.
func (s *SQLite) DeleteWorkflow(ctx context.Context, userID, appID, id string) error {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		affected, err = deleteWorkflowRow(ctx, sqlExecer{tx}, userID, appID, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete workflow %q in app %s/%s: %w", id, userID, appID, err)
	}
	if affected == 0 {
		return fmt.Errorf("delete workflow %q in app %s/%s: %w", id, userID, appID, workflow.ErrNotFound)
	}

	s.workflowListeners.run()
	return nil
}

// OnWorkflowChange registers fn to run after every successful write of a
// workflow. fn runs on the writing goroutine, after the commit and outside
// any lock of the store, so it may call back into the store.
//
// NOTE: writes by another process that opened the same file are not
// reported, as with OnChange.
func (s *SQLite) OnWorkflowChange(fn func()) {
	s.workflowListeners.add(fn)
}

// encodeWorkflow returns the nodes in protobuf wire form and the metadata as
// JSON, or "" when w has no metadata.
func encodeWorkflow(w workflow.Workflow) ([]byte, string, error) {
	nodes, err := proto.MarshalOptions{Deterministic: true}.Marshal(&clarifaipb.Workflow{Nodes: w.Nodes})
	if err != nil {
		return nil, "", fmt.Errorf("encode nodes: %w", err)
	}
	if w.Metadata == nil {
		return nodes, "", nil
	}
	metadata, err := json.Marshal(w.Metadata)
	if err != nil {
		return nil, "", fmt.Errorf("encode metadata as JSON: %w", err)
	}
	return nodes, string(metadata), nil
}

func insertWorkflowRow(ctx context.Context, q querier, w workflow.Workflow, now int64, nodes []byte, metadata string) error {
	createdAt := now
	if !w.CreatedAt.IsZero() {
		createdAt = w.CreatedAt.UnixNano()
	}
	_, err := q.exec(ctx, `INSERT INTO workflows (`+workflowColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)`,
		w.UserID, w.AppID, w.ID, w.Description, createdAt, now, nodes, metadata)
	return err
}

func updateWorkflowRow(ctx context.Context, q querier, w workflow.Workflow, now int64, nodes []byte, metadata string) (int64, error) {
	return q.exec(ctx, `UPDATE workflows SET
    description = $4, modified_at = $5, nodes = $6, metadata = $7,
    version = version + 1
WHERE user_id = $1 AND app_id = $2 AND id = $3`,
		w.UserID, w.AppID, w.ID, w.Description, now, nodes, metadata)
}

func getWorkflow(ctx context.Context, q querier, userID, appID, id string) (workflow.Workflow, error) {
	row := q.queryRow(ctx, `SELECT `+workflowColumns+` FROM workflows
WHERE user_id = $1 AND app_id = $2 AND id = $3`, userID, appID, id)

	w, err := scanWorkflow(row)
	if isNoRows(err) {
		return workflow.Workflow{}, fmt.Errorf("get workflow %q in app %s/%s: %w", id, userID, appID, workflow.ErrNotFound)
	}
	if err != nil {
		return workflow.Workflow{}, fmt.Errorf("get workflow %q in app %s/%s: %w", id, userID, appID, err)
	}
	return w, nil
}

func listWorkflows(ctx context.Context, q querier, userID, appID string, offset, limit int) ([]workflow.Workflow, error) {
	off, lim := pageBounds(offset, limit)
	var out []workflow.Workflow
	err := q.queryEach(ctx, func(row rowScanner) error {
		w, err := scanWorkflow(row)
		if err != nil {
			return err
		}
		out = append(out, w)
		return nil
	}, `SELECT `+workflowColumns+` FROM workflows
WHERE user_id = $1 AND app_id = $2
ORDER BY created_at, id
LIMIT $3 OFFSET $4`, userID, appID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list workflows of app %s/%s: %w", userID, appID, err)
	}
	return out, nil
}

// deleteWorkflowRow deletes a workflow inside the caller's transaction and
// returns how many rows it deleted. When a collector of the app names the
// workflow, it returns an error wrapping workflow.ErrInUse, and the caller
// rolls the delete back. A workflow that does not exist is not in use, so
// its delete reports 0 rows even when a collector names its ID.
func deleteWorkflowRow(ctx context.Context, q querier, userID, appID, id string) (int64, error) {
	affected, err := q.exec(ctx, `DELETE FROM workflows
WHERE user_id = $1 AND app_id = $2 AND id = $3`, userID, appID, id)
	if err != nil || affected == 0 {
		return affected, err
	}

	var collectorID, preQueueID string
	err = q.queryRow(ctx, `SELECT id, pre_queue_workflow_id FROM collectors
WHERE user_id = $1 AND app_id = $2
    AND (pre_queue_workflow_id = $3 OR post_queue_workflow_id = $3)
ORDER BY id
LIMIT 1`, userID, appID, id).Scan(&collectorID, &preQueueID)
	if isNoRows(err) {
		return affected, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find collectors that use it: %w", err)
	}

	role := "post-queue"
	if preQueueID == id {
		role = "pre-queue"
	}
	return 0, fmt.Errorf("%w: collector %q names it as its %s workflow", workflow.ErrInUse, collectorID, role)
}

func scanWorkflow(row rowScanner) (workflow.Workflow, error) {
	var (
		w                     workflow.Workflow
		createdAt, modifiedAt int64
		nodes                 []byte
		metadata              string
	)
	err := row.Scan(&w.UserID, &w.AppID, &w.ID, &w.Description, &createdAt, &modifiedAt,
		&nodes, &metadata, &w.Version)
	if err != nil {
		return workflow.Workflow{}, err
	}
	w.CreatedAt = fromNanos(createdAt)
	w.ModifiedAt = fromNanos(modifiedAt)

	var decoded clarifaipb.Workflow
	if err := proto.Unmarshal(nodes, &decoded); err != nil {
		return workflow.Workflow{}, fmt.Errorf("decode nodes of workflow %q: %w", w.ID, err)
	}
	w.Nodes = decoded.GetNodes()
	if metadata != "" {
		if err := json.Unmarshal([]byte(metadata), &w.Metadata); err != nil {
			return workflow.Workflow{}, fmt.Errorf("decode metadata of workflow %q: %w", w.ID, err)
		}
	}
	return w, nil
}
