package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/collectord/collectord/internal/collector"
)

const collectorColumns = `user_id, app_id, id, description, created_at, modified_at,
    model_user_id, model_app_id, model_id, model_version_id, caller_user_id,
    post_inputs_key, pre_queue_workflow_id, post_queue_workflow_id,
    random_sample, collect_outputs, paused,
    max_per_hour, max_per_day, dedup_window_ms, max_per_concept, balance_window_ms, preview,
    version`

// InsertCollector stores a new collector with Version 1. A zero CreatedAt is
// set to the current time; ModifiedAt is always the current time.
func (s *SQLite) InsertCollector(ctx context.Context, c collector.Collector) error {
	now := s.clock.Now()
	createdAt := now
	if !c.CreatedAt.IsZero() {
		createdAt = c.CreatedAt.UnixNano()
	}

	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO collectors (`+collectorColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
    $18, $19, $20, $21, $22, $23, 1)`,
			c.UserID, c.AppID, c.ID, c.Description, createdAt, now,
			c.Model.UserID, c.Model.AppID, c.Model.ModelID, c.Model.VersionID, c.CallerUserID,
			c.PostInputsKey, c.PreQueueWorkflowID, c.PostQueueWorkflowID,
			c.RandomSample, c.CollectOutputs, c.Paused,
			c.Policy.MaxPerHour, c.Policy.MaxPerDay, c.Policy.DedupWindow.Milliseconds(),
			c.Policy.MaxPerConcept, c.Policy.BalanceWindow.Milliseconds(), c.Policy.Preview)
		return err
	})
	if isConstraint(err) {
		return fmt.Errorf("insert collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, collector.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("insert collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, err)
	}

	s.notifyChange()
	return nil
}

// UpdateCollector replaces every field but CreatedAt, sets ModifiedAt to the
// current time and increments Version; c.CreatedAt and c.Version are ignored.
func (s *SQLite) UpdateCollector(ctx context.Context, c collector.Collector) error {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE collectors SET
    description = $4, modified_at = $5,
    model_user_id = $6, model_app_id = $7, model_id = $8, model_version_id = $9,
    caller_user_id = $10, post_inputs_key = $11,
    pre_queue_workflow_id = $12, post_queue_workflow_id = $13,
    random_sample = $14, collect_outputs = $15, paused = $16,
    max_per_hour = $17, max_per_day = $18, dedup_window_ms = $19,
    max_per_concept = $20, balance_window_ms = $21, preview = $22,
    version = version + 1
WHERE user_id = $1 AND app_id = $2 AND id = $3`,
			c.UserID, c.AppID, c.ID, c.Description, s.clock.Now(),
			c.Model.UserID, c.Model.AppID, c.Model.ModelID, c.Model.VersionID,
			c.CallerUserID, c.PostInputsKey,
			c.PreQueueWorkflowID, c.PostQueueWorkflowID,
			c.RandomSample, c.CollectOutputs, c.Paused,
			c.Policy.MaxPerHour, c.Policy.MaxPerDay, c.Policy.DedupWindow.Milliseconds(),
			c.Policy.MaxPerConcept, c.Policy.BalanceWindow.Milliseconds(), c.Policy.Preview)
		if err != nil {
			return err
		}
		affected, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("update collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, err)
	}
	if affected == 0 {
		return fmt.Errorf("update collector %q in app %s/%s: %w", c.ID, c.UserID, c.AppID, collector.ErrNotFound)
	}

	s.notifyChange()
	return nil
}

// GetCollector returns collector.ErrNotFound when the app has no collector
// with that ID.
func (s *SQLite) GetCollector(ctx context.Context, userID, appID, id string) (collector.Collector, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+collectorColumns+` FROM collectors
WHERE user_id = $1 AND app_id = $2 AND id = $3`, userID, appID, id)

	c, err := scanCollector(row)
	if errors.Is(err, sql.ErrNoRows) {
		return collector.Collector{}, fmt.Errorf("get collector %q in app %s/%s: %w", id, userID, appID, collector.ErrNotFound)
	}
	if err != nil {
		return collector.Collector{}, fmt.Errorf("get collector %q in app %s/%s: %w", id, userID, appID, err)
	}
	return c, nil
}

// ListCollectors returns one page of an app's collectors ordered by creation
// time, then ID. A limit of zero or less returns every collector from offset.
func (s *SQLite) ListCollectors(ctx context.Context, userID, appID string, offset, limit int) ([]collector.Collector, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.reader.QueryContext(ctx, `SELECT `+collectorColumns+` FROM collectors
WHERE user_id = $1 AND app_id = $2
ORDER BY created_at, id
LIMIT $3 OFFSET $4`, userID, appID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list collectors of app %s/%s: %w", userID, appID, err)
	}

	out, err := scanCollectors(rows)
	if err != nil {
		return nil, fmt.Errorf("list collectors of app %s/%s: %w", userID, appID, err)
	}
	return out, nil
}

// DeleteCollector returns collector.ErrNotFound when the app has no collector
// with that ID. The same transaction deletes the collector's admissions and
// preview.
func (s *SQLite) DeleteCollector(ctx context.Context, userID, appID, id string) error {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := deleteCollectorState(ctx, sqlExecer{tx}, userID, appID, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM collectors
WHERE user_id = $1 AND app_id = $2 AND id = $3`, userID, appID, id)
		if err != nil {
			return err
		}
		affected, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete collector %q in app %s/%s: %w", id, userID, appID, err)
	}
	if affected == 0 {
		return fmt.Errorf("delete collector %q in app %s/%s: %w", id, userID, appID, collector.ErrNotFound)
	}

	s.notifyChange()
	return nil
}

// DeleteAllCollectors removes every collector of an app, with their
// admissions and previews, and returns how many collectors it removed.
// Listeners run even when the app had none.
func (s *SQLite) DeleteAllCollectors(ctx context.Context, userID, appID string) (int, error) {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := deleteCollectorState(ctx, sqlExecer{tx}, userID, appID, ""); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM collectors WHERE user_id = $1 AND app_id = $2`, userID, appID)
		if err != nil {
			return err
		}
		affected, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete collectors of app %s/%s: %w", userID, appID, err)
	}

	s.notifyChange()
	return int(affected), nil
}

// MatchCollectors returns the active collectors of callerUserID, or of any
// caller, whose source model is model. An empty model.ModelID matches every
// model and model.VersionID is ignored (see collector.Store). The result is
// ordered by owner and ID.
func (s *SQLite) MatchCollectors(ctx context.Context, callerUserID string, model collector.ModelRef) ([]collector.Collector, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if model.ModelID == "" {
		rows, err = s.stmts.matchAnyModel.QueryContext(ctx, callerUserID)
	} else {
		rows, err = s.stmts.matchModel.QueryContext(ctx, callerUserID, model.UserID, model.AppID, model.ModelID)
	}
	if err != nil {
		return nil, fmt.Errorf("match collectors: %w", err)
	}

	out, err := scanCollectors(rows)
	if err != nil {
		return nil, fmt.Errorf("match collectors: %w", err)
	}
	return out, nil
}

// Queries of MatchCollectors, prepared once because every collector table
// miss on the request path runs one.
const (
	matchAnyModelQuery = `SELECT ` + collectorColumns + ` FROM collectors
WHERE paused = FALSE AND caller_user_id IN ($1, '')
ORDER BY user_id, app_id, id`
	matchModelQuery = `SELECT ` + collectorColumns + ` FROM collectors
WHERE paused = FALSE AND caller_user_id IN ($1, '')
    AND model_user_id = $2 AND model_app_id = $3 AND model_id = $4
ORDER BY user_id, app_id, id`
)

// rowScanner is the Scan method shared by *sql.Row and *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

func scanCollector(row rowScanner) (collector.Collector, error) {
	var (
		c                          collector.Collector
		createdAt, modifiedAt      int64
		dedupMillis, balanceMillis int64
	)
	err := row.Scan(&c.UserID, &c.AppID, &c.ID, &c.Description, &createdAt, &modifiedAt,
		&c.Model.UserID, &c.Model.AppID, &c.Model.ModelID, &c.Model.VersionID, &c.CallerUserID,
		&c.PostInputsKey, &c.PreQueueWorkflowID, &c.PostQueueWorkflowID,
		&c.RandomSample, &c.CollectOutputs, &c.Paused,
		&c.Policy.MaxPerHour, &c.Policy.MaxPerDay, &dedupMillis,
		&c.Policy.MaxPerConcept, &balanceMillis, &c.Policy.Preview,
		&c.Version)
	if err != nil {
		return collector.Collector{}, err
	}
	c.CreatedAt = fromNanos(createdAt)
	c.ModifiedAt = fromNanos(modifiedAt)
	c.Policy.DedupWindow = time.Duration(dedupMillis) * time.Millisecond
	c.Policy.BalanceWindow = time.Duration(balanceMillis) * time.Millisecond
	return c, nil
}

func scanCollectors(rows *sql.Rows) ([]collector.Collector, error) {
	defer rows.Close()

	var out []collector.Collector
	for rows.Next() {
		c, err := scanCollector(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
