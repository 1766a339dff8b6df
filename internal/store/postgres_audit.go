package store

import (
	"context"
	"fmt"

	"github.com/collectord/collectord/internal/audit"
)

// AppendAudit stores an entry under the next ID. A zero Time is set to the
// current time and empty Details to "{}". An entry without Action or
// Resource, or whose Details is not JSON, is rejected.
//
// NOTE: IDs come from a sequence, drawn before commit, so entries appended
// at the same moment by several processes may commit in a different order
// than their IDs; ListAudit orders by ID.
func (s *Postgres) AppendAudit(ctx context.Context, e audit.Entry) error {
	at, details, err := auditRow(e, s.clock.Now())
	if err != nil {
		return err
	}

	_, err = s.pool.Exec(ctx, `INSERT INTO audit_log
    (time, actor_user_id, actor_key_id, action, resource, user_id, app_id, resource_id, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		at, e.ActorUserID, e.ActorKeyID, e.Action, e.Resource, e.UserID, e.AppID, e.ResourceID, details)
	if err != nil {
		return fmt.Errorf("append audit entry for %s %q: %w", e.Resource, e.ResourceID, err)
	}
	return nil
}

// ListAudit returns one page of an app's entries, newest first. A limit of
// zero or less returns every entry from offset.
func (s *Postgres) ListAudit(ctx context.Context, userID, appID string, offset, limit int) ([]audit.Entry, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+auditColumns+` FROM audit_log
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
