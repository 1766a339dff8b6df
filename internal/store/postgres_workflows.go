package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/workflow"
)

// InsertWorkflow stores a new workflow with Version 1 and notifies the other
// processes. A zero CreatedAt is set to the current time, and ModifiedAt is
// always the current time.
func (s *Postgres) InsertWorkflow(ctx context.Context, w workflow.Workflow) error {
	nodes, metadata, err := encodeWorkflow(w)
	if err != nil {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}
	now := s.clock.Now()

	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertWorkflowRow(ctx, pgxExecer{tx}, w, now, nodes, metadata); err != nil {
			return err
		}
		return s.notifyWorkflowChange(ctx, tx, w.UserID, w.AppID, w.ID)
	})
	if isUniqueViolation(err) {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, workflow.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("insert workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}

	s.workflowListeners.run()
	return nil
}

// UpdateWorkflow replaces the description, nodes and metadata, sets
// ModifiedAt to the current time, increments Version and notifies the other
// processes. w.CreatedAt and w.Version are ignored.
func (s *Postgres) UpdateWorkflow(ctx context.Context, w workflow.Workflow) error {
	nodes, metadata, err := encodeWorkflow(w)
	if err != nil {
		return fmt.Errorf("update workflow %q in app %s/%s: %w", w.ID, w.UserID, w.AppID, err)
	}

	var affected int64
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		affected, err = updateWorkflowRow(ctx, pgxExecer{tx}, w, s.clock.Now(), nodes, metadata)
		if err != nil || affected == 0 {
			return err
		}
		return s.notifyWorkflowChange(ctx, tx, w.UserID, w.AppID, w.ID)
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
func (s *Postgres) GetWorkflow(ctx context.Context, userID, appID, id string) (workflow.Workflow, error) {
	return getWorkflow(ctx, pgxExecer{s.pool}, userID, appID, id)
}

// ListWorkflows returns one page of an app's workflows ordered by creation
// time, then ID. A limit of zero or less returns every workflow from offset.
func (s *Postgres) ListWorkflows(ctx context.Context, userID, appID string, offset, limit int) ([]workflow.Workflow, error) {
	return listWorkflows(ctx, pgxExecer{s.pool}, userID, appID, offset, limit)
}

// DeleteWorkflow returns workflow.ErrNotFound when the app has no workflow
// with that ID, and an error wrapping workflow.ErrInUse that names the
// collector when a collector of the app names the workflow.
//
// The transaction first locks the collectors table in SHARE mode. That lock
// waits for collector writes in progress and blocks new ones until the
// commit. The in-use check therefore reads every committed collector, and
// no collector can start naming the workflow before the delete commits. Readers are not
// blocked. Workflow deletes are rare, so the short stall of collector
// writes costs little.
func (s *Postgres) DeleteWorkflow(ctx context.Context, userID, appID, id string) error {
	var affected int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE collectors IN SHARE MODE`); err != nil {
			return fmt.Errorf("lock collectors: %w", err)
		}
		var err error
		affected, err = deleteWorkflowRow(ctx, pgxExecer{tx}, userID, appID, id)
		if err != nil || affected == 0 {
			return err
		}
		return s.notifyWorkflowChange(ctx, tx, userID, appID, id)
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

// OnWorkflowChange registers fn to run after every change of a workflow.
// For a write through this store, fn runs on the writing goroutine after
// the commit. For a write by another process, fn runs on the change feed's
// goroutine when its notification arrives. After the feed reconnects, fn
// runs once, because changes made while it was disconnected were missed.
// fn runs outside any lock of the store, so it may call back into it.
func (s *Postgres) OnWorkflowChange(fn func()) {
	s.workflowListeners.add(fn)
}
