package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgMigrationFiles holds the PostgreSQL schema changes, numbered like the
// SQLite ones but separately: the two schemas need not change in step. A
// released file is never edited: a change to the schema is a new file.
//
//go:embed pgmigrations/*.sql
var pgMigrationFiles embed.FS

// migrationLockKey is the advisory lock that serializes migrations of every
// collectord process on one database, whatever their schema, so that pods
// starting at once apply each migration once.
const migrationLockKey int64 = 0x636f6c6c65637464 // "collectd" in ASCII

// migratePostgres creates the schema when one is configured, applies every
// pending migration and returns current_schema(). Everything runs in one
// transaction that holds the advisory lock, so a failed migration leaves
// the database as it was, and PostgreSQL releases the lock at the end of
// the transaction even when this process dies.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, schema string, logger *slog.Logger) (string, error) {
	migrations, err := loadMigrations(pgMigrationFiles, "pgmigrations")
	if err != nil {
		return "", err
	}

	var current string
	var applied []migration
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if current, err = prepareSchema(ctx, tx, schema); err != nil {
			return err
		}
		applied, err = applyPostgresMigrations(ctx, tx, migrations)
		return err
	})
	if err != nil {
		return "", err
	}

	for _, m := range applied {
		logger.Info("applied store migration", "version", m.version, "name", m.name, "schema", current)
	}
	return current, nil
}

// prepareSchema creates the configured schema when missing, then the
// schema_migrations table, and returns the schema they live in.
func prepareSchema(ctx context.Context, tx pgx.Tx, schema string) (string, error) {
	if schema != "" {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return "", fmt.Errorf("create schema %q: %w", schema, err)
		}
	}

	var current *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
		return "", fmt.Errorf("read current schema: %w", err)
	}
	if current == nil {
		return "", errors.New("no schema of the search_path exists: create it, or set search_path in the URL to an existing schema")
	}

	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL
)`
	if _, err := tx.Exec(ctx, createTable); err != nil {
		return "", fmt.Errorf("create schema_migrations in schema %q: %w", *current, err)
	}
	return *current, nil
}

// applyPostgresMigrations applies the migrations newer than the schema's
// version and returns them. It rejects a schema written by a newer
// collectord.
func applyPostgresMigrations(ctx context.Context, tx pgx.Tx, migrations []migration) ([]migration, error) {
	var version *int64
	if err := tx.QueryRow(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&version); err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	var have int64
	if version != nil {
		have = *version
	}

	known := int64(0)
	if len(migrations) > 0 {
		known = int64(migrations[len(migrations)-1].version)
	}
	if have > known {
		return nil, fmt.Errorf("database schema version %d is newer than this binary's %d; run a newer collectord", have, known)
	}

	var applied []migration
	for _, m := range migrations {
		if int64(m.version) <= have {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("migration %s: %w", m.name, err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, time.Now().UnixNano())
		if err != nil {
			return nil, fmt.Errorf("migration %s: record version: %w", m.name, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}
