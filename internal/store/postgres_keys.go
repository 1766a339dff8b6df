package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/identity"
)

// InsertKey stores a key by its hash. A zero CreatedAt is set to the current
// time. A key whose ID or hash is already stored is rejected.
func (s *Postgres) InsertKey(ctx context.Context, k identity.Key) error {
	if k.ID == "" || k.Hash == "" {
		return errors.New("insert API key: ID and Hash are required")
	}

	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	scopesJSON, err := json.Marshal(scopes)
	if err != nil {
		return fmt.Errorf("insert API key %q: encode scopes: %w", k.ID, err)
	}

	createdAt := s.clock.Now()
	if !k.CreatedAt.IsZero() {
		createdAt = k.CreatedAt.UnixNano()
	}

	_, err = s.pool.Exec(ctx, `INSERT INTO api_keys (`+keyColumns+`)
VALUES ($1, $2, $3, $4, $5, $6)`, k.ID, k.Hash, k.UserID, k.AppID, string(scopesJSON), createdAt)
	if isUniqueViolation(err) {
		return fmt.Errorf("insert API key %q: a key with this ID or secret already exists", k.ID)
	}
	if err != nil {
		return fmt.Errorf("insert API key %q: %w", k.ID, err)
	}
	return nil
}

// KeyByHash returns identity.ErrKeyNotFound when no key has that hash.
func (s *Postgres) KeyByHash(ctx context.Context, hash string) (identity.Key, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1`, hash)

	k, err := scanKey(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return identity.Key{}, identity.ErrKeyNotFound
	}
	if err != nil {
		// The hash is left out of the message: it identifies a secret.
		return identity.Key{}, fmt.Errorf("look up API key by hash: %w", err)
	}
	return k, nil
}

// ListKeys returns the keys of one user, or of all users when userID is
// empty, ordered by creation time, then ID.
func (s *Postgres) ListKeys(ctx context.Context, userID string) ([]identity.Key, error) {
	var (
		rows pgx.Rows
		err  error
	)
	if userID == "" {
		rows, err = s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	} else {
		rows, err = s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys
WHERE user_id = $1 ORDER BY created_at, id`, userID)
	}
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	defer rows.Close()

	var out []identity.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list API keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return out, nil
}

// DeleteKey returns identity.ErrKeyNotFound when no key has that ID.
//
// NOTE: other processes keep serving a deleted key from their key caches
// until the entry expires (identity.key_cache_ttl). Only collector writes
// go through the change feed.
func (s *Postgres) DeleteKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete API key %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete API key %q: %w", id, identity.ErrKeyNotFound)
	}
	return nil
}
