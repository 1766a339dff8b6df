package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/localapp"
)

// InsertApp returns localapp.ErrAppExists when the user already has an app
// with that ID. A zero CreatedAt is set to the current time.
func (s *Postgres) InsertApp(ctx context.Context, a localapp.App) error {
	createdAt := s.clock.Now()
	if !a.CreatedAt.IsZero() {
		createdAt = a.CreatedAt.UnixNano()
	}

	_, err := s.pool.Exec(ctx, `INSERT INTO apps (`+appColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		a.UserID, a.ID, a.Name, a.Description, createdAt)
	if isUniqueViolation(err) {
		return fmt.Errorf("insert app %s/%s: %w", a.UserID, a.ID, localapp.ErrAppExists)
	}
	if err != nil {
		return fmt.Errorf("insert app %s/%s: %w", a.UserID, a.ID, err)
	}
	return nil
}

// GetApp returns localapp.ErrAppNotFound when the user has no app with that ID.
func (s *Postgres) GetApp(ctx context.Context, userID, appID string) (localapp.App, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE user_id = $1 AND id = $2`, userID, appID)

	a, err := scanApp(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return localapp.App{}, fmt.Errorf("get app %s/%s: %w", userID, appID, localapp.ErrAppNotFound)
	}
	if err != nil {
		return localapp.App{}, fmt.Errorf("get app %s/%s: %w", userID, appID, err)
	}
	return a, nil
}

// ListApps returns one page of a user's apps ordered by creation time, then
// ID. A limit of zero or less returns every app from offset.
func (s *Postgres) ListApps(ctx context.Context, userID string, offset, limit int) ([]localapp.App, error) {
	off, lim := pageBounds(offset, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+appColumns+` FROM apps
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
