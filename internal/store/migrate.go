package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds the schema changes, applied in the order of the number
// that starts each file name (0001_init.sql, 0002_...). A released file is
// never edited: a change to the schema is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and orders the migrations in dir of files.
func loadMigrations(files fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}

	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		number, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(number)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("migration file %q: name must start with a positive number and '_'", name)
		}
		if other, dup := seen[version]; dup {
			return nil, fmt.Errorf("migration files %q and %q have the same number", other, name)
		}
		seen[version] = name

		body, err := fs.ReadFile(files, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		out = append(out, migration{version: version, name: name, sql: string(body)})
	}

	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// migrate applies every migration newer than the database's schema, each in
// its own transaction together with its schema_migrations row, so a failed
// migration leaves the schema at the previous version.
func migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	migrations, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return err
	}

	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at BIGINT  NOT NULL
)`
	if _, err := db.ExecContext(ctx, createTable); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	if err := checkNotNewer(ctx, db, migrations); err != nil {
		return err
	}

	for _, m := range migrations {
		applied, err := applyMigration(ctx, db, m)
		if err != nil {
			return err
		}
		if applied {
			logger.Info("applied store migration", "version", m.version, "name", m.name)
		}
	}
	return nil
}

// checkNotNewer rejects a database written by a newer collectord, whose schema
// this binary does not know.
func checkNotNewer(ctx context.Context, db *sql.DB, migrations []migration) error {
	var current sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}

	known := 0
	if len(migrations) > 0 {
		known = migrations[len(migrations)-1].version
	}
	if current.Valid && current.Int64 > int64(known) {
		return fmt.Errorf("database schema version %d is newer than this binary's %d; run a newer collectord", current.Int64, known)
	}
	return nil
}

// applyMigration applies m unless the database already has it. The check runs
// inside the write transaction, so two processes opening one file at once
// apply each migration once.
func applyMigration(ctx context.Context, db *sql.DB, m migration) (bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migration %s: begin transaction: %w", m.name, err)
	}
	defer tx.Rollback()

	var count int
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&count)
	if err != nil {
		return false, fmt.Errorf("migration %s: read schema_migrations: %w", m.name, err)
	}
	if count > 0 {
		return false, nil
	}

	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("migration %s: %w", m.name, err)
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.version, m.name, time.Now().UnixNano())
	if err != nil {
		return false, fmt.Errorf("migration %s: record version: %w", m.name, err)
	}

	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return true, nil
}
