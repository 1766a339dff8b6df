// Package node assembles one collectord process: the store, the embedded
// JetStream server, the ingest path, the capture engine and every listener.
// Start brings the parts up in dependency order; Close drains them in the
// reverse order, so no accepted capture is lost on SIGTERM.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/extproc"
	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/api"
	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/ingest"
	"github.com/collectord/collectord/internal/proxy"
	"github.com/collectord/collectord/internal/secret"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/telemetry"
	"github.com/collectord/collectord/internal/workflow"
)

// Addrs are the addresses the listeners are bound to, which differ from the
// configuration when it asked for port 0.
type Addrs struct {
	ExtProc string
	API     string
	GRPC    string
	Admin   string
	Proxy   string
}

// Node is one running collectord process.
type Node struct {
	cfg    config.Config
	roles  Roles
	logger *slog.Logger
	addrs  Addrs

	metrics   *telemetry.Metrics
	db        store.Store
	resolver  *identity.Resolver
	table     *collector.Table
	workflows *workflow.Table
	// filters compiles workflows, with the remote models the configuration
	// names, for the API's validation and for the workflow table.
	filters   filter.Config
	nats      *ingest.Embedded
	natsConn  *nats.Conn
	queue     *ingest.Queue
	publisher *ingest.Publisher
	router    *ingest.Router
	workers   *ingest.Workers
	engine    *capture.Engine

	// collectors is db with post-inputs keys encrypted at rest. Every
	// collector read and write goes through it.
	collectors collector.Store

	extprocServer *grpc.Server
	apiGRPC       *grpc.Server
	apiHTTP       *http.Server
	adminHTTP     *http.Server
	proxyHTTP     *http.Server

	ready chan struct{}
}

// Roles selects the parts one process runs. `collectord run` runs them all;
// the many-pod mode runs each role in its own processes on a shared
// PostgreSQL store and an external JetStream cluster.
type Roles struct {
	// Capture runs the ext_proc server, the interceptor (when configured),
	// the capture engine and the publisher: `collectord sidecar`.
	Capture bool
	// Ingest runs the delivery workers: `collectord ingest`.
	Ingest bool
	// API runs the management API: `collectord api`.
	API bool
}

// AllRoles is the one-process mode.
var AllRoles = Roles{Capture: true, Ingest: true, API: true}

// Start runs every role in one process; see StartRoles.
func Start(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Node, error) {
	return StartRoles(ctx, cfg, AllRoles, logger)
}

// StartRoles opens the store and the queue, starts the ingest workers and
// the capture engine, then opens the listeners, each only when roles includes
// it. The admin listener always runs. On error, whatever started is
// closed again.
func StartRoles(ctx context.Context, cfg config.Config, roles Roles, logger *slog.Logger) (_ *Node, err error) {
	n := &Node{cfg: cfg, roles: roles, logger: logger, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Close(closeCtx)
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if n.metrics, err = telemetry.NewMetrics(); err != nil {
		return nil, err
	}

	// The admin listener comes first so /healthz responds while the rest
	// starts; /readyz turns ready only at the end of Start.
	if err := n.startAdmin(); err != nil {
		return nil, err
	}
	if err := n.openStores(ctx); err != nil {
		return nil, err
	}
	if roles.Capture || roles.Ingest {
		if err := n.startIngest(ctx); err != nil {
			return nil, err
		}
	}
	if roles.Capture {
		if err := n.startCapture(ctx); err != nil {
			return nil, err
		}
	}
	if roles.API {
		if err := n.startAPI(); err != nil {
			return nil, err
		}
	}
	if roles.Capture {
		if err := n.startExtProc(); err != nil {
			return nil, err
		}
		if err := n.startProxy(); err != nil {
			return nil, err
		}
	}

	close(n.ready)
	return n, nil
}

// Addrs returns the bound listener addresses.
func (n *Node) Addrs() Addrs { return n.addrs }

// CollectorTable returns the cached collector table the capture engine
// consults, so tests can observe when a change reaches this node.
func (n *Node) CollectorTable() *collector.Table { return n.table }

// LogAttrs returns the bound listener addresses as slog key-value pairs.
func (a Addrs) LogAttrs() []any {
	var attrs []any
	for _, l := range []struct{ name, addr string }{
		{"extproc", a.ExtProc}, {"api", a.API}, {"grpc", a.GRPC}, {"admin", a.Admin}, {"proxy", a.Proxy},
	} {
		if l.addr != "" {
			attrs = append(attrs, l.name, l.addr)
		}
	}
	return attrs
}

func (n *Node) meter(name string) metric.Meter { return n.metrics.Meter(name) }

func (n *Node) openStores(ctx context.Context) error {
	db, err := n.openDB(ctx)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	n.db = db

	// Only a process with its own SQLite store may make up a key: processes
	// sharing PostgreSQL must all be given the same keys.
	keys, err := secret.OpenKeyring(secret.KeyringConfig{
		File:          n.cfg.Secrets.KeyFile,
		Env:           string(n.cfg.Secrets.Key),
		DefaultFile:   filepath.Join(n.cfg.DataDir, "secret.key"),
		CreateDefault: n.cfg.Store.PostgresURL == "",
	}, n.logger)
	if err != nil {
		return fmt.Errorf("open data-encryption keys: %w", err)
	}
	n.collectors = secret.NewEncryptingStore(db, keys, n.logger)

	n.resolver, err = identity.NewResolver(db, identity.ResolverConfig{
		TrustedHeader: n.cfg.Identity.TrustedHeader,
		CacheTTL:      time.Duration(n.cfg.Identity.KeyCacheTTL),
		JWT:           jwtConfig(n.cfg.Identity.JWT),
		Introspection: introspectionConfig(n.cfg.Identity.Introspection),
	}, identity.ResolverDeps{Logger: n.logger, Meter: n.meter("identity")})
	if err != nil {
		return err
	}

	n.table, err = collector.NewTable(n.collectors, collector.TableConfig{}, collector.TableDeps{Logger: n.logger, Meter: n.meter("collector")})
	if err != nil {
		return err
	}

	endpoints, err := n.cfg.Workflows.RemoteModelEndpoints()
	if err != nil {
		return err
	}
	n.filters = filter.Config{RemoteEndpoints: endpoints}
	n.workflows, err = workflow.NewTable(db, n.filters, workflow.TableConfig{}, workflow.TableDeps{Meter: n.meter("workflow")})
	return err
}

// openDB opens the shared PostgreSQL store when store.postgres_url is set,
// and the embedded SQLite store in the data directory otherwise.
func (n *Node) openDB(ctx context.Context) (store.Store, error) {
	if n.cfg.Store.PostgresURL != "" {
		db, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: n.cfg.Store.PostgresURL, Logger: n.logger})
		if err != nil {
			return nil, err
		}
		return db, nil
	}

	db, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    filepath.Join(n.cfg.DataDir, "collectord.db"),
		BlobDir: filepath.Join(n.cfg.DataDir, "blobs"),
		Logger:  n.logger,
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// connectNATS connects to the external cluster when nats.url is set, and
// starts the embedded server otherwise.
func (n *Node) connectNATS() (*nats.Conn, error) {
	if n.cfg.NATS.URL != "" {
		conn, err := ingest.Connect(ingest.ExternalConfig{
			URL:         n.cfg.NATS.URL,
			CredsFile:   n.cfg.NATS.CredsFile,
			TLSCAFile:   n.cfg.NATS.TLSCAFile,
			TLSCertFile: n.cfg.NATS.TLSCertFile,
			TLSKeyFile:  n.cfg.NATS.TLSKeyFile,
			Logger:      n.logger,
		})
		if err != nil {
			return nil, err
		}
		n.natsConn = conn
		return conn, nil
	}

	var err error
	n.nats, err = ingest.OpenEmbedded(ingest.EmbeddedConfig{
		Dir:           filepath.Join(n.cfg.DataDir, "jetstream"),
		MaxStoreBytes: n.cfg.Ingest.MaxStoreBytes + n.cfg.Ingest.MaxStoreBytes/4,
		Logger:        n.logger,
		Meter:         n.meter("nats"),
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded JetStream: %w", err)
	}
	return n.nats.Conn(), nil
}

func (n *Node) startIngest(ctx context.Context) error {
	conn, err := n.connectNATS()
	if err != nil {
		return err
	}

	n.queue, err = ingest.OpenQueue(ctx, conn, ingest.QueueConfig{
		Prefix:   n.cfg.NATS.Prefix,
		MaxBytes: n.cfg.Ingest.MaxStoreBytes,
		Replicas: n.cfg.NATS.Replicas,
		Logger:   n.logger,
	})
	if err != nil {
		return err
	}

	if n.roles.Ingest {
		if err := n.startWorkers(); err != nil {
			return err
		}
	}
	if !n.roles.Capture {
		return nil
	}
	n.publisher, err = ingest.NewPublisher(n.queue, ingest.PublisherConfig{
		HandoffSize: n.cfg.Ingest.HandoffSize,
	}, ingest.PublisherDeps{Meter: n.meter("ingest"), Logger: n.logger})
	return err
}

func (n *Node) startWorkers() error {
	var err error

	n.router, err = ingest.NewRouter(ingest.RouterConfig{
		Remote: ingest.RemoteConfig{
			BaseURL: n.cfg.Ingest.RemoteBaseURL,
			Timeout: time.Duration(n.cfg.Ingest.RemoteTimeout),
		},
	}, ingest.RouterDeps{Inputs: n.db, Keys: postInputsKeys{n.collectors}, Logger: n.logger})
	if err != nil {
		return err
	}

	n.workers, err = ingest.StartWorkers(n.queue, n.router, ingest.WorkerConfig{
		Workers:        n.cfg.Ingest.Workers,
		MaxBatchInputs: n.cfg.Ingest.BatchSize,
	}, ingest.WorkerDeps{
		Meter:     n.meter("ingest"),
		Logger:    n.logger,
		Workflows: n.workflows,
		Ledger:    n.db,
		Previews:  n.db,
	})
	return err
}

func (n *Node) startCapture(ctx context.Context) error {
	var err error
	n.engine, err = capture.New(capture.Config{
		MaxCaptureBytes: n.cfg.Capture.MaxCaptureBytes,
		Assemblers:      n.cfg.Capture.Assemblers,
		QueueSize:       n.cfg.Capture.QueueSize,
	}, capture.Deps{
		Callers:    n.resolver,
		Collectors: n.table,
		Sink:       n.publisher,
		Workflows:  n.workflows,
		Meter:      n.meter("capture"),
		Logger:     n.logger,
	})
	if err != nil {
		return err
	}
	n.engine.Start(context.WithoutCancel(ctx))
	return nil
}

func (n *Node) startAPI() error {
	srv, err := api.New(api.Config{}, api.Deps{
		Collectors: n.collectors,
		Workflows:  n.db,
		Previews:   n.db,
		Filters:    n.filters,
		Apps:       n.db,
		Inputs:     n.db,
		Keys:       n.resolver,
		Logger:     n.logger,
		Meter:      n.meter("api"),
		Audit:      n.db,
	})
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", n.cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("listen for the REST API: %w", err)
	}
	n.addrs.API = l.Addr().String()
	n.apiHTTP = &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go serveHTTP(n.apiHTTP, l, n.logger, "api")

	if n.cfg.API.GRPCListen == "" {
		return nil
	}
	gl, err := net.Listen("tcp", n.cfg.API.GRPCListen)
	if err != nil {
		return fmt.Errorf("listen for the gRPC API: %w", err)
	}
	n.addrs.GRPC = gl.Addr().String()
	n.apiGRPC = srv.GRPCServer()
	go serveGRPC(n.apiGRPC, gl, n.logger, "api_grpc")
	return nil
}

func (n *Node) startExtProc() error {
	l, err := listen(n.cfg.ExtProc.Listen)
	if err != nil {
		return fmt.Errorf("listen for ext_proc: %w", err)
	}
	n.addrs.ExtProc = l.Addr().String()

	srv, err := extproc.New(extproc.Config{
		MetadataNamespaces: metadataNamespaces(n.cfg.Identity),
		IdleTimeout:        time.Duration(n.cfg.ExtProc.IdleTimeout),
	}, n.engine, n.logger, n.meter("extproc"))
	if err != nil {
		l.Close()
		return err
	}
	n.extprocServer = grpc.NewServer(extproc.ServerOptions(n.cfg.Capture.MaxCaptureBytes)...)
	srv.Register(n.extprocServer)
	go serveGRPC(n.extprocServer, l, n.logger, "extproc")
	return nil
}

func (n *Node) startProxy() error {
	if n.cfg.Proxy.Listen == "" {
		return nil
	}
	upstream, err := url.Parse(n.cfg.Proxy.Upstream)
	if err != nil {
		return fmt.Errorf("proxy upstream: %w", err)
	}
	handler, err := proxy.New(proxy.Config{Upstream: upstream}, n.engine, n.logger, n.meter("proxy"))
	if err != nil {
		return err
	}

	l, err := net.Listen("tcp", n.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("listen for the proxy: %w", err)
	}
	n.addrs.Proxy = l.Addr().String()
	n.proxyHTTP = proxy.NewServer(handler, n.logger)
	go serveHTTP(n.proxyHTTP, l, n.logger, "proxy")
	return nil
}

func (n *Node) startAdmin() error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-n.ready:
			w.Write([]byte("ready\n"))
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", n.metrics.Handler())

	l, err := net.Listen("tcp", n.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("listen for admin: %w", err)
	}
	n.addrs.Admin = l.Addr().String()
	n.adminHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go serveHTTP(n.adminHTTP, l, n.logger, "admin")
	return nil
}

// Close drains in the reverse order of Start: first no new streams or
// requests, then the capture engine empties into the publisher, the
// publisher flushes into JetStream, and the workers finish their in-flight
// batches. Parts that never started are skipped.
func (n *Node) Close(ctx context.Context) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	if n.proxyHTTP != nil {
		add(n.proxyHTTP.Shutdown(ctx))
	}
	if n.extprocServer != nil {
		stopGRPC(ctx, n.extprocServer)
	}
	if n.engine != nil {
		add(n.engine.Close(ctx))
	}
	if n.publisher != nil {
		add(n.publisher.Close(ctx))
	}
	if n.workers != nil {
		add(n.workers.Close(ctx))
	}
	if n.apiHTTP != nil {
		add(n.apiHTTP.Shutdown(ctx))
	}
	if n.apiGRPC != nil {
		stopGRPC(ctx, n.apiGRPC)
	}
	if n.natsConn != nil {
		// Drain flushes what the publisher handed over before closing.
		add(n.natsConn.Drain())
	}
	if n.nats != nil {
		add(n.nats.Close())
	}
	if n.table != nil {
		n.table.Close()
	}
	if n.resolver != nil {
		n.resolver.Close()
	}
	if n.db != nil {
		add(n.db.Close())
	}
	if n.adminHTTP != nil {
		add(n.adminHTTP.Shutdown(ctx))
	}
	if n.metrics != nil {
		add(n.metrics.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// stopGRPC stops taking streams and waits for open ones until ctx ends, then
// cuts the rest.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
	}
}

// listen opens a TCP listener for host:port or a Unix socket for unix:PATH,
// removing a stale socket file left by an earlier process.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func serveHTTP(srv *http.Server, l net.Listener, logger *slog.Logger, name string) {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("server stopped", "server", name, "error", err)
	}
}

func serveGRPC(srv *grpc.Server, l net.Listener, logger *slog.Logger, name string) {
	if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		logger.Error("server stopped", "server", name, "error", err)
	}
}

// postInputsKeys finds a collector's post-inputs key at delivery time, so
// the key never travels in a capture record.
type postInputsKeys struct {
	store collector.Store
}

func (k postInputsKeys) PostInputsKey(ctx context.Context, userID, appID, collectorID string) (string, error) {
	c, err := k.store.GetCollector(ctx, userID, appID, collectorID)
	if err != nil {
		return "", err
	}
	return c.PostInputsKey, nil
}
