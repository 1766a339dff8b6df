package store

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

func openPragmaTestStore(t *testing.T, dir string, busyTimeout time.Duration, maxReaders int) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), SQLiteConfig{
		Path:        filepath.Join(dir, "collectord.db"),
		BlobDir:     filepath.Join(dir, "blobs"),
		BusyTimeout: busyTimeout,
		MaxReaders:  maxReaders,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// requirePragmas reads the pragmas of one connection and compares them with
// want, keyed by pragma name.
func requirePragmas(t *testing.T, pool string, conn *sql.Conn, want map[string]string) {
	t.Helper()
	for name, value := range want {
		var got string
		if err := conn.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&got); err != nil {
			t.Fatalf("%s: read PRAGMA %s: %v", pool, name, err)
		}
		if !strings.EqualFold(got, value) {
			t.Errorf("%s: PRAGMA %s = %q, want %q", pool, name, got, value)
		}
	}
}

// TestSQLite_Pragmas reads the settings back from every connection of both
// pools, because the driver ignores a DSN parameter name it does not know.
func TestSQLite_Pragmas(t *testing.T) {
	const maxReaders = 3
	s := openPragmaTestStore(t, t.TempDir(), 4321*time.Millisecond, maxReaders)
	ctx := context.Background()

	writer, err := s.writer.Conn(ctx)
	if err != nil {
		t.Fatalf("writer connection: %v", err)
	}
	defer writer.Close()
	requirePragmas(t, "writer", writer, map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "4321",
		"query_only":   "0",
	})

	// Holding every reader connection at once makes the pool open each of
	// them, so none is checked twice.
	for i := range maxReaders {
		reader, err := s.reader.Conn(ctx)
		if err != nil {
			t.Fatalf("reader connection %d: %v", i, err)
		}
		defer reader.Close()
		requirePragmas(t, "reader", reader, map[string]string{
			"journal_mode": "wal",
			"synchronous":  "2",
			"foreign_keys": "1",
			"busy_timeout": "4321",
			"query_only":   "1",
		})
	}
	if got := s.reader.Stats().OpenConnections; got != maxReaders {
		t.Errorf("reader pool has %d open connections, want %d", got, maxReaders)
	}
}

func TestSQLite_ReaderRejectsWrites(t *testing.T) {
	s := openPragmaTestStore(t, t.TempDir(), 0, 0)

	_, err := s.reader.ExecContext(context.Background(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'x', 0)`)
	if err == nil {
		t.Fatal("INSERT on the reader pool succeeded, want a read-only error")
	}
	var serr sqlite3.Error
	if !errors.As(err, &serr) || serr.Code != sqlite3.ErrReadonly {
		t.Errorf("INSERT on the reader pool error = %v, want SQLITE_READONLY", err)
	}
}

// TestSQLite_WriterBeginsImmediate holds a writer transaction that has not
// written yet. BEGIN IMMEDIATE has already taken the write lock, so a write
// from another connection that does not wait must fail with SQLITE_BUSY.
// After a deferred BEGIN it would succeed.
func TestSQLite_WriterBeginsImmediate(t *testing.T) {
	dir := t.TempDir()
	s := openPragmaTestStore(t, dir, 0, 0)
	ctx := context.Background()

	other, err := sql.Open("sqlite3", filepath.Join(dir, "collectord.db")+"?_busy_timeout=0")
	if err != nil {
		t.Fatalf("open second connection: %v", err)
	}
	defer other.Close()
	const insert = `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'x', 0)`

	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin writer transaction: %v", err)
	}
	_, err = other.ExecContext(ctx, insert)
	var serr sqlite3.Error
	if !errors.As(err, &serr) || serr.Code != sqlite3.ErrBusy {
		t.Errorf("write during a writer transaction error = %v, want SQLITE_BUSY", err)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if _, err := other.ExecContext(ctx, insert); err != nil {
		t.Errorf("write after the writer transaction ended: %v", err)
	}
}

// TestSQLiteConn_NumberedPlaceholders binds arguments through the store's
// connector to placeholders that appear out of numeric order.
func TestSQLiteConn_NumberedPlaceholders(t *testing.T) {
	db := sql.OpenDB(newSQLiteConnector(filepath.Join(t.TempDir(), "x.db")))
	defer db.Close()
	ctx := context.Background()

	var got string
	if err := db.QueryRowContext(ctx, `SELECT $2 || $1 || $2`, "a", "b").Scan(&got); err != nil {
		t.Fatalf("query: %v", err)
	}
	if got != "bab" {
		t.Errorf("SELECT $2 || $1 || $2 with (a, b) = %q, want %q", got, "bab")
	}

	// A prepared statement and a transaction go through the same rewrite.
	stmt, err := db.PrepareContext(ctx, `SELECT $3 - $1`)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	defer stmt.Close()
	var diff int64
	if err := stmt.QueryRowContext(ctx, 1, 2, 10).Scan(&diff); err != nil {
		t.Fatalf("prepared query: %v", err)
	}
	if diff != 9 {
		t.Errorf("SELECT $3 - $1 with (1, 2, 10) = %d, want 9", diff)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE t (a TEXT, b TEXT)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO t (b, a) VALUES ($2, $1)`, "first", "second"); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var a, b string
	if err := tx.QueryRowContext(ctx, `SELECT a, b FROM t`).Scan(&a, &b); err != nil {
		t.Fatalf("select: %v", err)
	}
	if a != "first" || b != "second" {
		t.Errorf("row = (%q, %q), want (first, second)", a, b)
	}
}

func TestSQLiteSQL(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"no placeholder", `SELECT 1`, `SELECT 1`},
		{"in order", `VALUES ($1,$2)`, `VALUES (?1,?2)`},
		{"out of order", `SET b = $2 WHERE a = $1`, `SET b = ?2 WHERE a = ?1`},
		{"several digits", `LIMIT $10 OFFSET $11`, `LIMIT ?10 OFFSET ?11`},
		{"at end", `a = $3`, `a = ?3`},
		{"string literal", `'$1' || 'it''s $2' || $3`, `'$1' || 'it''s $2' || ?3`},
		{"quoted identifier", `"c$1" = $1`, `"c$1" = ?1`},
		{"backquoted identifier", "`c$1` = $1", "`c$1` = ?1"},
		{"bracketed identifier", `[c$1] = $1`, `[c$1] = ?1`},
		{"inside identifier", `a$1 = $1`, `a$1 = ?1`},
		{"line comment", "-- $1\na = $1", "-- $1\na = ?1"},
		{"block comment", `/* $1 */ a = $1`, `/* $1 */ a = ?1`},
		{"named parameter", `a = $name`, `a = $name`},
		{"digits then letters", `a = $1x`, `a = $1x`},
		{"lone dollar", `a = $`, `a = $`},
		{"unclosed literal", `'$1`, `'$1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := sqliteSQL(tc.in); got != tc.want {
				t.Errorf("sqliteSQL(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
