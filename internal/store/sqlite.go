// Package store persists collectors, API keys and the local destination's apps
// and inputs. SQLite serves a single machine. Its SQL is kept to what
// PostgreSQL also accepts, so that a shared store can follow with the same
// contract and the same storetest suite.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
)

// The SQLite store implements every store contract of the product.
var (
	_ collector.Store     = (*SQLite)(nil)
	_ identity.KeyStore   = (*SQLite)(nil)
	_ localapp.AppStore   = (*SQLite)(nil)
	_ localapp.InputStore = (*SQLite)(nil)
)

// DefaultBusyTimeout is how long a connection waits for a lock held by
// another connection or process before SQLite returns SQLITE_BUSY.
const DefaultBusyTimeout = 10 * time.Second

// DefaultMaxReaders caps the read-only connection pool.
const DefaultMaxReaders = 8

// SQLiteConfig configures OpenSQLite.
type SQLiteConfig struct {
	// Path is the database file; it is created when missing.
	Path string
	// BlobDir holds the image, video and audio bytes of inputs, one file per
	// distinct content named by its SHA-256. It is created when missing.
	BlobDir string
	// BusyTimeout defaults to DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxReaders defaults to DefaultMaxReaders.
	MaxReaders int
	// Logger receives the migrations applied at open; it defaults to
	// slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now; tests set it to control timestamps.
	Now func() time.Time
}

// SQLite is the embedded store. All writes go through one connection, so
// writers queue in the connection pool instead of failing with SQLITE_BUSY,
// while reads run in parallel on a separate read-only pool (WAL mode lets
// readers proceed during a write).
type SQLite struct {
	writer *sql.DB
	reader *sql.DB
	stmts  statements
	blobs  blobDir
	clock  clock

	mu        sync.Mutex
	listeners []func()

	workflowListeners listenerList
}

// OpenSQLite opens or creates the database at cfg.Path, applies pending
// migrations and returns the store. Close releases it.
func OpenSQLite(ctx context.Context, cfg SQLiteConfig) (*SQLite, error) {
	if cfg.Path == "" {
		return nil, errors.New("open SQLite store: Path is empty; set it to a database file")
	}
	if strings.ContainsAny(cfg.Path, "?#") {
		return nil, fmt.Errorf("open SQLite store: Path %q contains '?' or '#'; choose a file name without them", cfg.Path)
	}
	if cfg.BlobDir == "" {
		return nil, errors.New("open SQLite store: BlobDir is empty; set it to a directory for input files")
	}
	applyDefaults(&cfg)

	if err := os.MkdirAll(cfg.BlobDir, 0o750); err != nil {
		return nil, fmt.Errorf("open SQLite store: create blob directory: %w", err)
	}

	writer, err := openPool(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, writer, cfg.Logger); err != nil {
		writer.Close()
		return nil, err
	}

	reader, err := openPool(ctx, cfg, true)
	if err != nil {
		writer.Close()
		return nil, err
	}

	stmts, err := prepareStatements(ctx, reader)
	if err != nil {
		writer.Close()
		reader.Close()
		return nil, err
	}

	return &SQLite{
		writer: writer,
		reader: reader,
		stmts:  stmts,
		blobs:  blobDir{path: cfg.BlobDir},
		clock:  clock{now: cfg.Now},
	}, nil
}

// statements are the read queries prepared on the reader pool.
type statements struct {
	matchModel    *sql.Stmt
	matchAnyModel *sql.Stmt
}

func prepareStatements(ctx context.Context, reader *sql.DB) (statements, error) {
	var st statements
	var err error
	if st.matchModel, err = reader.PrepareContext(ctx, matchModelQuery); err != nil {
		return statements{}, fmt.Errorf("prepare collector match query: %w", err)
	}
	if st.matchAnyModel, err = reader.PrepareContext(ctx, matchAnyModelQuery); err != nil {
		st.matchModel.Close()
		return statements{}, fmt.Errorf("prepare collector match query: %w", err)
	}
	return st, nil
}

func (st statements) close() error {
	return errors.Join(st.matchModel.Close(), st.matchAnyModel.Close())
}

func applyDefaults(cfg *SQLiteConfig) {
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = DefaultBusyTimeout
	}
	if cfg.MaxReaders <= 0 {
		cfg.MaxReaders = DefaultMaxReaders
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

// openPool opens the single-connection writer pool or the read-only pool.
// The writer starts every transaction with BEGIN IMMEDIATE, which takes the
// write lock up front and waits up to busy_timeout for it. A deferred
// transaction would instead fail with SQLITE_BUSY when another process wrote
// between its first read and its first write.
//
// synchronous is set to FULL: each commit is synced, so inputs acknowledged
// to the ingest queue survive a power loss. NORMAL would skip that sync and,
// in WAL mode, could roll back the last commits after a power loss or an OS
// crash. The setting must be explicit because github.com/mattn/go-sqlite3
// (v1.14.53) runs PRAGMA synchronous = NORMAL on every connection unless the
// DSN sets _synchronous.
//
// The driver applies these DSN parameters to each connection it opens, so
// every connection of a pool gets them. It rejects an invalid value but
// ignores a parameter name it does not know, so TestSQLite_Pragmas reads
// the settings back from both pools.
func openPool(ctx context.Context, cfg SQLiteConfig, readOnly bool) (*sql.DB, error) {
	params := []string{
		fmt.Sprintf("_busy_timeout=%d", cfg.BusyTimeout.Milliseconds()),
		"_foreign_keys=1",
		"_synchronous=FULL",
	}
	if readOnly {
		params = append(params, "_query_only=1")
	} else {
		params = append(params, "_journal_mode=WAL", "_txlock=immediate")
	}
	db := sql.OpenDB(newSQLiteConnector(cfg.Path + "?" + strings.Join(params, "&")))
	if readOnly {
		db.SetMaxOpenConns(cfg.MaxReaders)
		db.SetMaxIdleConns(cfg.MaxReaders)
	} else {
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
	}
	// Idle connections are kept: reopening one repeats the pragmas.
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)

	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open SQLite store %s: %w", cfg.Path, err)
	}
	return db, nil
}

// Close closes the prepared statements and both connection pools.
func (s *SQLite) Close() error {
	return errors.Join(s.stmts.close(), s.writer.Close(), s.reader.Close())
}

// OnChange registers fn to run after every successful write of a collector.
// fn runs on the writing goroutine, after the transaction committed and
// outside any lock of the store, so it may call back into the store.
//
// NOTE: writes by another process that opened the same file are not
// reported; a cache over this store bounds their delay with its TTL.
func (s *SQLite) OnChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *SQLite) notifyChange() {
	s.mu.Lock()
	listeners := make([]func(), len(s.listeners))
	copy(listeners, s.listeners)
	s.mu.Unlock()

	for _, fn := range listeners {
		fn()
	}
}

// inTx runs fn in a write transaction and commits when fn returns nil.
func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// isConstraint reports whether err is a primary key or unique constraint
// violation.
func isConstraint(err error) bool {
	var serr sqlite3.Error
	if !errors.As(err, &serr) {
		return false
	}
	switch serr.ExtendedCode {
	case sqlite3.ErrConstraintPrimaryKey, sqlite3.ErrConstraintUnique:
		return true
	}
	return false
}

// clock returns strictly increasing times, so rows created in one batch keep
// their order when sorted by created_at.
type clock struct {
	now func() time.Time

	mu   sync.Mutex
	last int64
}

// Now returns the current time in Unix nanoseconds, at least one nanosecond
// after the previous call.
func (c *clock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()

	t := c.now().UnixNano()
	if t <= c.last {
		t = c.last + 1
	}
	c.last = t
	return t
}

func fromNanos(ns int64) time.Time {
	return time.Unix(0, ns).UTC()
}

// pageBounds turns an offset and limit into SQL values: a negative offset
// reads from the start, and a limit of zero or less returns every row.
func pageBounds(offset, limit int) (int64, int64) {
	if offset < 0 {
		offset = 0
	}
	if limit <= 0 {
		return int64(offset), maxPageLimit
	}
	return int64(offset), int64(limit)
}

// maxPageLimit stands for "no limit": SQLite and PostgreSQL both accept a
// bound LIMIT, and this one is larger than any table here.
const maxPageLimit = 1 << 62
