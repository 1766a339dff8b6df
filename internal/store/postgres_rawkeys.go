package store

import (
	"context"
	"fmt"

	"github.com/collectord/collectord/internal/collector"
)

// ListAllCollectors returns up to limit collectors of every app ordered by
// user ID, app ID and ID, starting after the collector named by afterUserID,
// afterAppID and afterID (all empty: from the first). The keyset order stays
// stable while other writers insert or delete, so a walk of every page sees
// each collector that existed throughout the walk. Key rotation uses it.
func (s *Postgres) ListAllCollectors(ctx context.Context, afterUserID, afterAppID, afterID string, limit int) ([]collector.Collector, error) {
	_, lim := pageBounds(0, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+collectorColumns+` FROM collectors
WHERE (user_id, app_id, id) > ($1, $2, $3)
ORDER BY user_id, app_id, id
LIMIT $4`, afterUserID, afterAppID, afterID, lim)
	if err != nil {
		return nil, fmt.Errorf("list all collectors: %w", err)
	}

	out, err := scanPgCollectors(rows)
	if err != nil {
		return nil, fmt.Errorf("list all collectors: %w", err)
	}
	return out, nil
}

// ReplacePostInputsKey sets the stored post_inputs_key of one collector to
// newValue if it still equals oldValue, and reports whether it did. Version
// and modified_at stay, and no change is notified, because the collector's
// definition is the same: only the encryption of its key changed.
func (s *Postgres) ReplacePostInputsKey(ctx context.Context, userID, appID, id, oldValue, newValue string) (bool, error) {
	res, err := s.pool.Exec(ctx, `UPDATE collectors SET post_inputs_key = $5
WHERE user_id = $1 AND app_id = $2 AND id = $3 AND post_inputs_key = $4`,
		userID, appID, id, oldValue, newValue)
	if err != nil {
		return false, fmt.Errorf("replace post_inputs_key of collector %q in app %s/%s: %w", id, userID, appID, err)
	}
	return res.RowsAffected() == 1, nil
}
