package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// NOTIFY channels of collector and workflow changes. Each kind has a channel
// of its own, so collector listeners run only for collector changes and
// workflow listeners only for workflow changes.
const (
	changeChannel         = "collectord_collectors"
	workflowChangeChannel = "collectord_workflows"
)

// notifyChangeQuery sends one change on channel $1 from inside the writing
// transaction, so PostgreSQL delivers it only if the transaction commits.
// An empty id stands for every collector of the app.
const notifyChangeQuery = `SELECT pg_notify($1::text, json_build_object(
    'schema', current_schema(), 'origin', $2::text,
    'user_id', $3::text, 'app_id', $4::text, 'id', $5::text)::text)`

// Timing of the change feed.
const (
	// feedHealthInterval is how long the feed waits for a notification
	// before it pings the server, so a silently dropped connection is found
	// within this interval plus the ping timeout.
	feedHealthInterval = 30 * time.Second
	feedPingTimeout    = 5 * time.Second
	// The reconnect delay doubles after each failure, from the minimum up to
	// the maximum.
	feedMinReconnectDelay = 100 * time.Millisecond
	feedMaxReconnectDelay = 10 * time.Second
	// feedStableSession is how long a connection must last before the next
	// reconnect starts again from the minimum delay, so a connection that
	// drops right after LISTEN does not reconnect in a tight loop.
	feedStableSession = time.Minute
)

// changeNotification is the JSON payload of a change notification.
type changeNotification struct {
	Schema string `json:"schema"`
	Origin string `json:"origin"`
	UserID string `json:"user_id"`
	AppID  string `json:"app_id"`
	ID     string `json:"id"`
}

// notifyCollectorChange queues a change notification in tx.
func (s *Postgres) notifyCollectorChange(ctx context.Context, tx pgx.Tx, userID, appID, id string) error {
	if _, err := tx.Exec(ctx, notifyChangeQuery, changeChannel, s.origin, userID, appID, id); err != nil {
		return fmt.Errorf("notify collector change: %w", err)
	}
	return nil
}

// notifyWorkflowChange queues a workflow change notification in tx.
func (s *Postgres) notifyWorkflowChange(ctx context.Context, tx pgx.Tx, userID, appID, id string) error {
	if _, err := tx.Exec(ctx, notifyChangeQuery, workflowChangeChannel, s.origin, userID, appID, id); err != nil {
		return fmt.Errorf("notify workflow change: %w", err)
	}
	return nil
}

type changeFeedConfig struct {
	// conn configures the feed's own connection: LISTEN holds a session,
	// so the feed cannot borrow one from the pool.
	conn     *pgx.ConnConfig
	schema   string
	origin   string
	logger   *slog.Logger
	channels []feedChannel
}

// feedChannel is one NOTIFY channel of the change feed and the callback that
// runs for each change announced on it.
type feedChannel struct {
	name string
	// subject names what changes, such as "collector", in log messages.
	subject  string
	onChange func()
}

// changeFeed listens for changes made by other processes and runs the
// onChange of their channel for each, reconnecting with backoff when the
// connection drops.
type changeFeed struct {
	cfg    changeFeedConfig
	cancel context.CancelFunc
	done   chan struct{}
}

// startChangeFeed connects and runs LISTEN before it returns, so that no
// change committed after the store opened goes unnoticed.
func startChangeFeed(ctx context.Context, cfg changeFeedConfig) (*changeFeed, error) {
	f := &changeFeed{cfg: cfg, done: make(chan struct{})}
	conn, err := f.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("start change feed: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(runCtx, conn)
	return f, nil
}

// close stops the feed and waits for its goroutine.
func (f *changeFeed) close() {
	f.cancel()
	<-f.done
}

// listen opens a connection and subscribes it to every channel.
func (f *changeFeed) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, f.cfg.conn)
	if err != nil {
		return nil, err
	}
	for _, ch := range f.cfg.channels {
		if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{ch.name}.Sanitize()); err != nil {
			closeConn(conn)
			return nil, err
		}
	}
	return conn, nil
}

// changedAll runs the onChange of every channel.
func (f *changeFeed) changedAll() {
	for _, ch := range f.cfg.channels {
		ch.onChange()
	}
}

// run receives notifications until ctx ends. When the connection fails, it
// reconnects and then runs the onChange of every channel once, because
// the notifications of changes committed while it was disconnected never
// reached it.
func (f *changeFeed) run(ctx context.Context, conn *pgx.Conn) {
	defer close(f.done)

	delay := feedMinReconnectDelay
	for {
		connectedAt := time.Now()
		err := f.receive(ctx, conn)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		f.cfg.logger.Warn("PostgreSQL change feed disconnected, reconnecting", "error", err, "schema", f.cfg.schema)

		if time.Since(connectedAt) >= feedStableSession {
			delay = feedMinReconnectDelay
		}
		conn, delay = f.reconnect(ctx, delay)
		if conn == nil {
			return
		}
		f.changedAll()
	}
}

// reconnect retries listen with a doubling delay until it succeeds or ctx
// ends, and returns the connection (nil when ctx ended) and the next delay.
func (f *changeFeed) reconnect(ctx context.Context, delay time.Duration) (*pgx.Conn, time.Duration) {
	for attempt := 1; ; attempt++ {
		if !sleepContext(ctx, delay) {
			return nil, delay
		}
		next := min(2*delay, feedMaxReconnectDelay)

		conn, err := f.listen(ctx)
		if err == nil {
			f.cfg.logger.Info("PostgreSQL change feed reconnected", "attempts", attempt, "schema", f.cfg.schema)
			return conn, next
		}
		if ctx.Err() != nil {
			return nil, next
		}
		f.cfg.logger.Warn("PostgreSQL change feed reconnect failed", "error", err, "attempt", attempt, "retry_in", next)
		delay = next
	}
}

// receive handles notifications until the connection fails or ctx ends. It
// pings the server after each feedHealthInterval without a notification.
func (f *changeFeed) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, feedHealthInterval)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()

		switch {
		case err == nil:
			f.handle(n.Channel, n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			if err := ping(ctx, conn); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}

// handle runs the channel's onChange for a change made by another store on
// the same schema. A payload it cannot read still counts as a change, since
// dropping it could leave a stale collector or workflow in use.
func (f *changeFeed) handle(channel, payload string) {
	var ch *feedChannel
	for i := range f.cfg.channels {
		if f.cfg.channels[i].name == channel {
			ch = &f.cfg.channels[i]
		}
	}
	if ch == nil {
		// Only a channel this feed listens on can deliver a notification.
		f.cfg.logger.Warn("change notification on an unknown channel ignored", "channel", channel)
		return
	}

	var n changeNotification
	if err := json.Unmarshal([]byte(payload), &n); err != nil {
		f.cfg.logger.Warn("invalid "+ch.subject+" change notification, treated as a change", "error", err)
		ch.onChange()
		return
	}
	if n.Schema != f.cfg.schema || n.Origin == f.cfg.origin {
		return
	}

	f.cfg.logger.Debug(ch.subject+" changed by another process",
		"user_id", n.UserID, "app_id", n.AppID, ch.subject+"_id", n.ID)
	ch.onChange()
}

func ping(ctx context.Context, conn *pgx.Conn) error {
	pingCtx, cancel := context.WithTimeout(ctx, feedPingTimeout)
	defer cancel()
	return conn.Ping(pingCtx)
}

// closeConn closes a connection, waiting at most feedPingTimeout for the
// server to take the termination message.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), feedPingTimeout)
	defer cancel()
	// A failed close leaves nothing to do: the connection is gone either way.
	_ = conn.Close(ctx)
}

// sleepContext waits for d and reports false when ctx ended first.
func sleepContext(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
