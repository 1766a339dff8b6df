package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/collectord/collectord/internal/identity"
)

const keyColumns = `id, hash, user_id, app_id, scopes, created_at`

// InsertKey stores a key by its hash. A zero CreatedAt is set to the current
// time. A key whose ID or hash is already stored is rejected.
func (s *SQLite) InsertKey(ctx context.Context, k identity.Key) error {
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

	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`)
VALUES ($1, $2, $3, $4, $5, $6)`, k.ID, k.Hash, k.UserID, k.AppID, string(scopesJSON), createdAt)
		return err
	})
	if isConstraint(err) {
		return fmt.Errorf("insert API key %q: a key with this ID or secret already exists", k.ID)
	}
	if err != nil {
		return fmt.Errorf("insert API key %q: %w", k.ID, err)
	}
	return nil
}

// KeyByHash returns identity.ErrKeyNotFound when no key has that hash.
func (s *SQLite) KeyByHash(ctx context.Context, hash string) (identity.Key, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1`, hash)

	k, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
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
func (s *SQLite) ListKeys(ctx context.Context, userID string) ([]identity.Key, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if userID == "" {
		rows, err = s.reader.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	} else {
		rows, err = s.reader.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys
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

// DeleteKey returns identity.ErrKeyNotFound when no key has that ID. Callers
// that cache keys must also drop the key from their cache.
func (s *SQLite) DeleteKey(ctx context.Context, id string) error {
	var affected int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
		if err != nil {
			return err
		}
		affected, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("delete API key %q: %w", id, err)
	}
	if affected == 0 {
		return fmt.Errorf("delete API key %q: %w", id, identity.ErrKeyNotFound)
	}
	return nil
}

func scanKey(row rowScanner) (identity.Key, error) {
	var (
		k          identity.Key
		scopesJSON string
		createdAt  int64
	)
	if err := row.Scan(&k.ID, &k.Hash, &k.UserID, &k.AppID, &scopesJSON, &createdAt); err != nil {
		return identity.Key{}, err
	}
	if err := json.Unmarshal([]byte(scopesJSON), &k.Scopes); err != nil {
		return identity.Key{}, fmt.Errorf("decode scopes of API key %q: %w", k.ID, err)
	}
	k.CreatedAt = fromNanos(createdAt)
	return k, nil
}
