package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/collectord/collectord/internal/localapp"
)

const appColumns = `user_id, id, name, description, created_at`

// InsertApp returns localapp.ErrAppExists when the user already has an app
// with that ID. A zero CreatedAt is set to the current time.
func (s *SQLite) InsertApp(ctx context.Context, a localapp.App) error {
	createdAt := s.clock.Now()
	if !a.CreatedAt.IsZero() {
		createdAt = a.CreatedAt.UnixNano()
	}

	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO apps (`+appColumns+`) VALUES ($1, $2, $3, $4, $5)`,
			a.UserID, a.ID, a.Name, a.Description, createdAt)
		return err
	})
	if isConstraint(err) {
		return fmt.Errorf("insert app %s/%s: %w", a.UserID, a.ID, localapp.ErrAppExists)
	}
	if err != nil {
		return fmt.Errorf("insert app %s/%s: %w", a.UserID, a.ID, err)
	}
	return nil
}

// GetApp returns localapp.ErrAppNotFound when the user has no app with that ID.
func (s *SQLite) GetApp(ctx context.Context, userID, appID string) (localapp.App, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+appColumns+` FROM apps WHERE user_id = $1 AND id = $2`, userID, appID)

	a, err := scanApp(row)
	if errors.Is(err, sql.ErrNoRows) {
		return localapp.App{}, fmt.Errorf("get app %s/%s: %w", userID, appID, localapp.ErrAppNotFound)
	}
	if err != nil {
		return localapp.App{}, fmt.Errorf("get app %s/%s: %w", userID, appID, err)
	}
	return a, nil
}

// ListApps returns one page of a user's apps ordered by creation time, then
// ID. A limit of zero or less returns every app from offset.
func (s *SQLite) ListApps(ctx context.Context, userID string, offset, limit int) ([]localapp.App, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.reader.QueryContext(ctx, `SELECT `+appColumns+` FROM apps
WHERE user_id = $1
ORDER BY created_at, id
LIMIT $2 OFFSET $3`, userID, lim, off)
	if err != nil {
		return nil, fmt.Errorf("list apps of user %s: %w", userID, err)
	}
	defer rows.Close()

	var out []localapp.App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, fmt.Errorf("list apps of user %s: %w", userID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list apps of user %s: %w", userID, err)
	}
	return out, nil
}

func scanApp(row rowScanner) (localapp.App, error) {
	var (
		a         localapp.App
		createdAt int64
	)
	if err := row.Scan(&a.UserID, &a.ID, &a.Name, &a.Description, &createdAt); err != nil {
		return localapp.App{}, err
	}
	a.CreatedAt = fromNanos(createdAt)
	return a, nil
}
