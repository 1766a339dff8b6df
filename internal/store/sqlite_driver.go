package store

import (
	"bytes"
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// The store's SQL, shared with PostgreSQL, numbers its parameters $1, $2, ...
// SQLite reads "$1" as a named parameter and numbers named parameters in
// the order they first appear. github.com/mattn/go-sqlite3 binds arguments
// by those numbers, so in "SET b = $2 WHERE a = $1" the first argument
// would go to $2. SQLite's "?NNN" form takes its number from the text, like
// PostgreSQL's $NNN, so sqliteConn rewrites $NNN to ?NNN in every
// statement before the driver prepares it.

// sqliteConnector opens the driver's connections wrapped in sqliteConn.
type sqliteConnector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func newSQLiteConnector(dsn string) sqliteConnector {
	return sqliteConnector{dsn: dsn, driver: &sqlite3.SQLiteDriver{}}
}

// Connect opens a connection and applies the DSN's pragmas to it. The
// driver's Open takes no context, so ctx cannot cancel the open.
func (c sqliteConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*sqlite3.SQLiteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("SQLite driver returned a %T connection, want *sqlite3.SQLiteConn", conn)
	}
	return &sqliteConn{SQLiteConn: sc}, nil
}

func (c sqliteConnector) Driver() driver.Driver {
	return c.driver
}

// sqliteConn is a driver connection whose statements may use $NNN
// placeholders. The embedded connection provides every other method,
// including transactions and the optional database/sql interfaces.
type sqliteConn struct {
	*sqlite3.SQLiteConn
}

func (c *sqliteConn) Prepare(query string) (driver.Stmt, error) {
	return c.SQLiteConn.Prepare(sqliteSQL(query))
}

func (c *sqliteConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.SQLiteConn.PrepareContext(ctx, sqliteSQL(query))
}

func (c *sqliteConn) Exec(query string, args []driver.Value) (driver.Result, error) {
	return c.SQLiteConn.Exec(sqliteSQL(query), args)
}

func (c *sqliteConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.SQLiteConn.ExecContext(ctx, sqliteSQL(query), args)
}

func (c *sqliteConn) Query(query string, args []driver.Value) (driver.Rows, error) {
	return c.SQLiteConn.Query(sqliteSQL(query), args)
}

func (c *sqliteConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.SQLiteConn.QueryContext(ctx, sqliteSQL(query), args)
}

// rewrittenSQL caches sqliteSQL's results. The store runs a fixed set of
// query texts, so the cache stays small. maxRewrittenSQL bounds it in case
// a caller builds query texts at run time: past the bound, queries are
// rewritten on every call.
var (
	rewrittenSQL      sync.Map // query text -> rewritten text
	rewrittenSQLCount atomic.Int64
)

const maxRewrittenSQL = 1024

// sqliteSQL returns query with each $NNN placeholder replaced by ?NNN.
// Text inside string literals, quoted identifiers and comments is kept, as
// is a '$' inside an identifier (SQLite and PostgreSQL both allow "a$1").
func sqliteSQL(query string) string {
	if !strings.Contains(query, "$") {
		return query
	}
	if cached, ok := rewrittenSQL.Load(query); ok {
		return cached.(string)
	}

	out := rewritePlaceholders(query)
	if rewrittenSQLCount.Load() < maxRewrittenSQL {
		if _, loaded := rewrittenSQL.LoadOrStore(query, out); !loaded {
			rewrittenSQLCount.Add(1)
		}
	}
	return out
}

// rewritePlaceholders follows SQLite's tokenizer far enough to tell where
// a '$' starts a parameter.
func rewritePlaceholders(query string) string {
	b := []byte(query)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\'' || c == '"' || c == '`':
			i = skipQuoted(b, i, c)
		case c == '[':
			i = skipUntil(b, i+1, "]")
		case c == '-' && i+1 < len(b) && b[i+1] == '-':
			i = skipUntil(b, i+2, "\n")
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			i = skipUntil(b, i+2, "*/")
		case c == '$':
			end := i + 1
			for end < len(b) && b[end] >= '0' && b[end] <= '9' {
				end++
			}
			if end > i+1 && (end == len(b) || !isIdentChar(b[end])) {
				b[i] = '?'
			}
			// A '$' that starts no $NNN parameter is left for SQLite to
			// parse, together with the name that follows it.
			for i+1 < len(b) && isIdentChar(b[i+1]) {
				i++
			}
		case isIdentChar(c):
			// Skip the rest of an identifier, keyword or number, so that
			// a '$' inside it is not read as a parameter.
			for i+1 < len(b) && isIdentChar(b[i+1]) {
				i++
			}
		}
	}
	return string(b)
}

// skipQuoted returns the index of the quote that closes the literal or
// identifier opened at b[start]. A doubled quote inside it is an escape.
func skipQuoted(b []byte, start int, quote byte) int {
	for i := start + 1; i < len(b); i++ {
		if b[i] != quote {
			continue
		}
		if i+1 < len(b) && b[i+1] == quote {
			i++
			continue
		}
		return i
	}
	return len(b)
}

// skipUntil returns the index of the last byte of the first end at or
// after from, or the end of b when there is none.
func skipUntil(b []byte, from int, end string) int {
	if from > len(b) {
		return len(b)
	}
	n := bytes.Index(b[from:], []byte(end))
	if n < 0 {
		return len(b)
	}
	return from + n + len(end) - 1
}

// isIdentChar reports whether SQLite's tokenizer lets c continue an
// identifier: ASCII letters, digits, '_', '$' and every byte of a
// multi-byte UTF-8 character.
func isIdentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '$' || c >= 0x80
}
