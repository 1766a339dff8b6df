package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresConfig configures OpenPostgres.
type PostgresConfig struct {
	// URL is a PostgreSQL connection string in URL form
	// (postgres://user@host:5432/db?sslmode=require) or key=value form, as
	// pgx accepts it. A search_path parameter in it selects the schema
	// unless Schema is set.
	URL string
	// Schema, when set, is created if missing and becomes the search_path of
	// every connection. Several collectord deployments can then share one
	// database, each in its own schema.
	Schema string
	// MaxConns caps the connection pool. Zero keeps pgxpool's default, the
	// larger of 4 and the number of CPUs. The change feed uses one more
	// connection outside the pool.
	MaxConns int32
	// Logger receives the migrations applied at open and the change feed's
	// reconnects. It defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now. Tests set it to control timestamps.
	Now func() time.Time
}

// Postgres is the shared store: every collectord process of a deployment
// opens the same database. Collector and workflow writes notify the other
// processes through LISTEN/NOTIFY, so their caches drop stale entries at
// once instead of after their TTL.
type Postgres struct {
	pool   *pgxpool.Pool
	clock  clock
	logger *slog.Logger
	feed   *changeFeed

	// origin tags the change notifications of this store, so that its own
	// change feed skips the writes whose listeners already ran.
	origin string
	// schema is current_schema() of the store's connections. Notifications
	// are per database, so the feed ignores those sent from other schemas.
	schema string

	mu        sync.Mutex
	listeners []func()

	workflowListeners listenerList
}

// OpenPostgres connects to the database at cfg.URL, applies pending
// migrations under an advisory lock, starts the change feed and returns the
// store. Close releases it.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.URL == "" {
		return nil, errors.New("open PostgreSQL store: URL is empty; set it to a postgres:// URL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	// pgx removes the password from the errors of ParseConfig.
	poolCfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	if cfg.Schema != "" {
		poolCfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{cfg.Schema}.Sanitize()
	}
	if cfg.MaxConns > 0 {
		poolCfg.MaxConns = cfg.MaxConns
	}
	where := describeServer(poolCfg.ConnConfig)

	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store at %s: %w", where, err)
	}
	s, err := newPostgres(ctx, pool, cfg, poolCfg.ConnConfig)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open PostgreSQL store at %s: %w", where, err)
	}

	cfg.Logger.Info("opened PostgreSQL store", "server", where, "schema", s.schema)
	return s, nil
}

// newPostgres migrates the schema and starts the change feed on an open pool.
func newPostgres(ctx context.Context, pool *pgxpool.Pool, cfg PostgresConfig, connCfg *pgx.ConnConfig) (*Postgres, error) {
	if err := pool.Ping(ctx); err != nil {
		return nil, err
	}
	schema, err := migratePostgres(ctx, pool, cfg.Schema, cfg.Logger)
	if err != nil {
		return nil, err
	}

	origin, err := newOrigin()
	if err != nil {
		return nil, err
	}
	s := &Postgres{
		pool:   pool,
		clock:  clock{now: cfg.Now},
		logger: cfg.Logger,
		origin: origin,
		schema: schema,
	}

	s.feed, err = startChangeFeed(ctx, changeFeedConfig{
		conn:   connCfg.Copy(),
		schema: schema,
		origin: origin,
		logger: cfg.Logger,
		channels: []feedChannel{
			{name: changeChannel, subject: "collector", onChange: s.notifyChange},
			{name: workflowChangeChannel, subject: "workflow", onChange: s.workflowListeners.run},
		},
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// describeServer names the server and database for logs and errors, without
// the user or password.
func describeServer(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

func newOrigin() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("draw change feed origin: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Close stops the change feed and closes the connection pool.
func (s *Postgres) Close() error {
	s.feed.close()
	s.pool.Close()
	return nil
}

// OnChange registers fn to run after every change of a collector. For a
// write through this store, fn runs on the writing goroutine after the
// commit. For a write by another process, fn runs on the change feed's
// goroutine when its notification arrives. After the feed reconnects, fn
// runs once, because changes made while it was disconnected were missed.
// fn runs outside any lock of the store, so it may call back into it.
func (s *Postgres) OnChange(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *Postgres) notifyChange() {
	s.mu.Lock()
	listeners := make([]func(), len(s.listeners))
	copy(listeners, s.listeners)
	s.mu.Unlock()

	for _, fn := range listeners {
		fn()
	}
}

// inTx runs fn in a transaction and commits when fn returns nil.
func (s *Postgres) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		// The rollback error adds nothing: the transaction is void either way.
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation
// (SQLSTATE 23505), raised for primary keys and unique constraints.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
