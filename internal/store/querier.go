package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is the part of a database handle that the SQL shared by both
// stores needs. Its queries use $n placeholders, which SQLite and
// PostgreSQL both accept. sqlExecer adapts database/sql (SQLite) and
// pgxExecer adapts pgx (PostgreSQL).
type querier interface {
	// exec runs a statement and returns the number of rows it affected.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	// queryRow runs a query that returns at most one row. Its Scan returns
	// an error that isNoRows accepts when there is no row.
	queryRow(ctx context.Context, query string, args ...any) rowScanner
	// queryEach runs fn on every row of a query.
	queryEach(ctx context.Context, fn func(rowScanner) error, query string, args ...any) error
}

// sqlHandle is the method set that *sql.DB and *sql.Tx share.
type sqlHandle interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type sqlExecer struct{ h sqlHandle }

func (e sqlExecer) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := e.h.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (e sqlExecer) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	return e.h.QueryRowContext(ctx, query, args...)
}

func (e sqlExecer) queryEach(ctx context.Context, fn func(rowScanner) error, query string, args ...any) error {
	rows, err := e.h.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()

	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// pgxHandle is the method set that pgx.Tx and *pgxpool.Pool share.
type pgxHandle interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

type pgxExecer struct{ h pgxHandle }

func (e pgxExecer) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := e.h.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (e pgxExecer) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	return e.h.QueryRow(ctx, query, args...)
}

func (e pgxExecer) queryEach(ctx context.Context, fn func(rowScanner) error, query string, args ...any) error {
	rows, err := e.h.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()

	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// isNoRows reports whether err is the "no row" error of either driver.
func isNoRows(err error) bool {
	return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}

// listenerList is a set of change callbacks that may be added to while
// others run.
type listenerList struct {
	mu  sync.Mutex
	fns []func()
}

func (l *listenerList) add(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fns = append(l.fns, fn)
}

// run calls every callback outside the list's lock, so a callback may call
// back into the store or register another callback.
func (l *listenerList) run() {
	l.mu.Lock()
	fns := make([]func(), len(l.fns))
	copy(fns, l.fns)
	l.mu.Unlock()

	for _, fn := range fns {
		fn()
	}
}
