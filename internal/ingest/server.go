// Package ingest carries capture records from the sidecar to the destination
// app without losing any record JetStream accepted. A Publisher puts records
// on a JetStream stream. Workers fetch them in batches, post them to a
// Destination and acknowledge them only once the destination accepted them.
// Permanent rejections go to a dead-letter stream.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Defaults of EmbeddedConfig.
const (
	DefaultMaxStoreBytes  = 2 << 30
	DefaultMaxMemoryBytes = 64 << 20
	// DefaultMaxPayload leaves room for a record that holds a whole capture
	// (16 MiB of body bytes by default) plus its envelope.
	DefaultMaxPayload   = 32 << 20
	DefaultReadyTimeout = 10 * time.Second
	DefaultDrainTimeout = 30 * time.Second
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// Dir is the JetStream file storage directory; required.
	Dir string
	// MaxStoreBytes caps JetStream file storage for all streams; it must be at
	// least the sum of the streams' MaxBytes. Default 2 GiB.
	MaxStoreBytes int64
	// MaxMemoryBytes caps JetStream memory storage. Default 64 MiB.
	MaxMemoryBytes int64
	// MaxPayload is the largest message the server accepts, in bytes.
	// Default 32 MiB.
	MaxPayload int32
	// SyncAlways makes JetStream fsync every write before it acknowledges
	// it. Without it, a write reaches the operating system before the
	// acknowledgement (it survives a process crash) and is synced to disk
	// every SyncInterval (it may not survive a power loss). See
	// docs/delivery.md.
	SyncAlways bool
	// SyncInterval is how often JetStream syncs its files to disk when
	// SyncAlways is off. Default 2m (the server's own default).
	SyncInterval time.Duration
	// ServerName names the server in logs. Default "collectord".
	ServerName string
	// ReadyTimeout bounds the wait for the server to start. Default 10s.
	ReadyTimeout time.Duration
	// DrainTimeout bounds the drain of the client connection in Close.
	// Default 30s.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Meter receives collectord_nats_server_log_messages_total, which
	// counts the server's warnings and errors, among them its reports of
	// damaged store files it recovered from. Default: no metrics.
	Meter metric.Meter
}

func (c *EmbeddedConfig) setDefaults() {
	if c.MaxStoreBytes <= 0 {
		c.MaxStoreBytes = DefaultMaxStoreBytes
	}
	if c.MaxMemoryBytes <= 0 {
		c.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.ServerName == "" {
		c.ServerName = "collectord"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Embedded is a NATS server with JetStream running inside this process,
// reachable only through its in-process client connection: it binds no port.
type Embedded struct {
	srv    *server.Server
	nc     *nats.Conn
	closed chan struct{}
	logger *slog.Logger
}

// OpenEmbedded starts an in-process NATS server with JetStream file storage
// under cfg.Dir and connects to it in process. A Dir written by an earlier
// server keeps its streams, so records accepted before a restart are
// delivered after it.
func OpenEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded NATS: Dir is required: set the JetStream storage directory")
	}
	cfg.setDefaults()

	opts := &server.Options{
		ServerName:         cfg.ServerName,
		DontListen:         true,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           cfg.Dir,
		JetStreamMaxStore:  cfg.MaxStoreBytes,
		JetStreamMaxMemory: cfg.MaxMemoryBytes,
		MaxPayload:         cfg.MaxPayload,
		SyncAlways:         cfg.SyncAlways,
		SyncInterval:       cfg.SyncInterval,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: configure server: %w", err)
	}
	serverLog, err := newServerLogger(cfg.Logger.With("component", "nats"), meterOrNoop(cfg.Meter))
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: register metrics: %w", err)
	}
	srv.SetLoggerV2(serverLog, false, false, false)

	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS: server in %s not ready within %s", cfg.Dir, cfg.ReadyTimeout)
	}

	e := &Embedded{srv: srv, closed: make(chan struct{}), logger: cfg.Logger}
	nc, err := nats.Connect("",
		nats.InProcessServer(srv),
		nats.Name("collectord-embedded"),
		nats.DrainTimeout(cfg.DrainTimeout),
		nats.ClosedHandler(func(*nats.Conn) { close(e.closed) }),
	)
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS: connect in process: %w", err)
	}
	e.nc = nc
	cfg.Logger.Info("embedded NATS started", "store_dir", cfg.Dir, "max_store_bytes", cfg.MaxStoreBytes)
	return e, nil
}

// Conn returns the in-process client connection.
func (e *Embedded) Conn() *nats.Conn { return e.nc }

// Close drains the client connection, then shuts the server down and waits
// for it. Close publishers and workers first: Close ends their connection.
func (e *Embedded) Close() error {
	var drainErr error
	if err := e.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		drainErr = fmt.Errorf("embedded NATS: drain connection: %w", err)
	}
	<-e.closed

	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.logger.Info("embedded NATS stopped")
	return drainErr
}

// ExternalConfig configures the connection to an external NATS cluster.
type ExternalConfig struct {
	// URL lists the servers, comma separated, e.g. "nats://nats-1:4222".
	URL string
	// CredsFile is an optional NATS credentials file (JWT and NKey seed).
	CredsFile string
	// TLSCAFile is an optional PEM file of the CA certificates that verify
	// the servers, in place of the system roots. Setting it makes the
	// connection require TLS, even with nats:// URLs.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are an optional PEM client certificate and
	// its private key, for servers that require client certificates. Set
	// both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// Name identifies this client to the server. Default "collectord".
	Name string
	// ConnectTimeout bounds the first connection. Default 5s.
	ConnectTimeout time.Duration
	// DrainTimeout bounds the drain when the connection is closed with
	// Drain. Default 30s.
	DrainTimeout time.Duration
	Logger       *slog.Logger
}

// Connect connects to an external NATS cluster. After the first connection
// the client reconnects forever, so a restarted cluster does not stop
// ingestion; publishes that fail meanwhile are retried and then counted.
func Connect(cfg ExternalConfig) (*nats.Conn, error) {
	if cfg.URL == "" {
		return nil, errors.New("external NATS: URL is required, e.g. nats://127.0.0.1:4222")
	}
	if cfg.Name == "" {
		cfg.Name = "collectord"
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	logger := cfg.Logger.With("component", "nats")

	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.DrainTimeout(cfg.DrainTimeout),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Warn("NATS disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("NATS reconnected", "server", redactURL(nc.ConnectedUrl()))
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	tlsOpts, err := tlsOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, tlsOpts...)

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		hint := "check that the server is running and reachable"
		if len(tlsOpts) > 0 || strings.Contains(cfg.URL, "tls://") {
			hint += ", and that the TLS CA file and client certificate match the server's TLS settings"
		}
		return nil, fmt.Errorf("external NATS: connect to %s failed: %w; %s", redactURL(cfg.URL), err, hint)
	}
	return nc, nil
}

// tlsOptions returns the nats.go options for the TLS files of cfg. It loads
// each file once here, so that a missing or invalid file fails with its path
// before any connection attempt. nats.go (v1.56.0) loads the files again at
// every handshake, so renewed certificates take effect at the next reconnect.
func tlsOptions(cfg ExternalConfig) ([]nats.Option, error) {
	var opts []nats.Option

	if cfg.TLSCAFile != "" {
		opt := nats.RootCAs(cfg.TLSCAFile)
		if err := opt(&nats.Options{}); err != nil {
			return nil, fmt.Errorf("external NATS: load TLS CA file %s: %w", cfg.TLSCAFile, err)
		}
		opts = append(opts, opt)
	}

	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("external NATS: TLS client certificate %q and key %q must be set together", cfg.TLSCertFile, cfg.TLSKeyFile)
	}
	if cfg.TLSCertFile != "" {
		opt := nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err := opt(&nats.Options{}); err != nil {
			return nil, fmt.Errorf("external NATS: load TLS client certificate %s with key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		opts = append(opts, opt)
	}

	return opts, nil
}

// redactURL drops user info from NATS URLs so passwords and tokens never
// reach logs or errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil {
			return "(unparsable URL)"
		}
		return raw
	}
	u.User = nil
	return u.String()
}

// serverLogger forwards nats-server log lines to slog and counts warnings
// and errors.
type serverLogger struct {
	logger   *slog.Logger
	messages metric.Int64Counter
}

// Levels of counted server log messages: the level label of
// collectord_nats_server_log_messages_total.
const (
	serverLogWarn  = "warn"
	serverLogError = "error"
)

func newServerLogger(logger *slog.Logger, meter metric.Meter) (*serverLogger, error) {
	messages, err := meter.Int64Counter("collectord_nats_server_log_messages_total",
		metric.WithDescription("Warnings and errors of the embedded NATS server, by level; they include damaged store files found at start."))
	if err != nil {
		return nil, err
	}
	return &serverLogger{logger: logger, messages: messages}, nil
}

func (l *serverLogger) count(level string) {
	if l.messages != nil {
		l.messages.Add(context.Background(), 1, metric.WithAttributes(attribute.String("level", level)))
	}
}

// Noticef logs at debug: the embedded server's notices (its start banner,
// JetStream settings) are noise beside collectord's own start and stop lines.
func (l *serverLogger) Noticef(format string, v ...any) {
	l.logger.Debug(fmt.Sprintf(format, v...))
}

func (l *serverLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)

	// collectord raises the payload limit on purpose, so that one whole
	// capture (up to the 16 MiB capture cap) fits in a message. The server's
	// startup warning about it is expected and would only alarm operators.
	if strings.HasPrefix(msg, "Maximum payloads over") {
		l.logger.Debug(msg)
		return
	}
	l.count(serverLogWarn)
	l.logger.Warn(msg)
}

// Fatalf only logs: the embedded server must never end the process.
func (l *serverLogger) Fatalf(format string, v ...any) {
	l.count(serverLogError)
	l.logger.Error(fmt.Sprintf(format, v...))
}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.count(serverLogError)
	l.logger.Error(fmt.Sprintf(format, v...))
}

func (l *serverLogger) Debugf(format string, v ...any) {
	l.logger.Debug(fmt.Sprintf(format, v...))
}

func (l *serverLogger) Tracef(format string, v ...any) {
	l.logger.Debug(fmt.Sprintf(format, v...))
}

// Compile-time check that serverLogger satisfies the server's interface.
var _ server.Logger = (*serverLogger)(nil)
