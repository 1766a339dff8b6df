package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURLEnv names the environment variable that holds the URL of the
// PostgreSQL server the tests use; DefaultPostgresURL applies when it is
// empty.
const (
	PostgresURLEnv     = "COLLECTORD_TEST_POSTGRES_URL"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// PostgresURL returns the URL of the test server and fails t when the
// server does not accept a connection.
func PostgresURL(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(PostgresURLEnv)
	if dsn == "" {
		dsn = DefaultPostgresURL
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("PostgreSQL not reachable at %s: start it or set %s: %v", redactURL(dsn), PostgresURLEnv, err)
	}
	conn.Close(ctx)
	return dsn
}

// NewPostgresSchema creates a schema with a random name on the test server
// and drops it, with everything in it, when t ends. Each test that uses
// its own schema can run in parallel with the others.
func NewPostgresSchema(t testing.TB) (dsn, schema string) {
	t.Helper()
	dsn = PostgresURL(t)

	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("draw schema name: %v", err)
	}
	schema = "collectord_test_" + hex.EncodeToString(b)
	execPostgres(t, dsn, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())

	// Registered before any store of the test opens, so it runs after
	// their cleanups have closed them.
	t.Cleanup(func() {
		execPostgres(t, dsn, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	})
	return dsn, schema
}

// WithSearchPath returns the URL dsn with search_path set to schema, so that
// every connection opened from it works in that schema.
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse PostgreSQL URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func execPostgres(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s: %v", redactURL(dsn), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// redactURL hides the password of a URL for a test message.
func redactURL(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		// A key=value connection string may hold a password anywhere.
		return "the connection string in " + PostgresURLEnv
	}
	return u.Redacted()
}
