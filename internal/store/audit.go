package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/collectord/collectord/internal/audit"
)

const auditColumns = `id, time, actor_user_id, actor_key_id, action, resource,
    user_id, app_id, resource_id, details`

// auditRow checks an entry and returns its time in Unix nanoseconds (now
// when e.Time is zero) and its details, "{}" when empty.
func auditRow(e audit.Entry, now int64) (int64, string, error) {
	if e.Action == "" || e.Resource == "" {
		return 0, "", errors.New("append audit entry: Action and Resource are required")
	}
	details := e.Details
	if details == "" {
		details = "{}"
	}
	if !json.Valid([]byte(details)) {
		return 0, "", fmt.Errorf("append audit entry for %s %q: Details is not valid JSON", e.Resource, e.ResourceID)
	}

	at := now
	if !e.Time.IsZero() {
		at = e.Time.UnixNano()
	}
	return at, details, nil
}

// AppendAudit stores an entry under the next ID. A zero Time is set to the
// current time and empty Details to "{}". An entry without Action or
// Resource, or whose Details is not JSON, is rejected.
func (s *SQLite) AppendAudit(ctx context.Context, e audit.Entry) error {
	at, details, err := auditRow(e, s.clock.Now())
	if err != nil {
		return err
	}

	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_log
    (time, actor_user_id, actor_key_id, action, resource, user_id, app_id, resource_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			at, e.ActorUserID, e.ActorKeyID, e.Action, e.Resource, e.UserID, e.AppID, e.ResourceID, details)
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit entry for %s %q: %w", e.Resource, e.ResourceID, err)
	}
	return nil
}

// ListAudit returns one page of an app's entries, newest first. A limit of
// zero or less returns every entry from offset.
func (s *SQLite) ListAudit(ctx context.Context, userID, appID string, offset, limit int) ([]audit.Entry, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.reader.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log
WHERE user_id = $1 AND app_id = $2
ORDER BY id DESC
LIMIT $3 OFFSET $4`, userID, appID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list audit entries of app %s/%s: %w", userID, appID, err)
	}
	defer rows.Close()

	var out []audit.Entry
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("list audit entries of app %s/%s: %w", userID, appID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit entries of app %s/%s: %w", userID, appID, err)
	}
	return out, nil
}

func scanAudit(row rowScanner) (audit.Entry, error) {
	var (
		e  audit.Entry
		at int64
	)
	err := row.Scan(&e.ID, &at, &e.ActorUserID, &e.ActorKeyID, &e.Action, &e.Resource,
		&e.UserID, &e.AppID, &e.ResourceID, &e.Details)
	if err != nil {
		return audit.Entry{}, err
	}
	e.Time = fromNanos(at)
	return e, nil
}
