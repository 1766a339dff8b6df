// Package proxy is the reverse-proxy interceptor for deployments without
// Envoy: it forwards every request to one upstream model server and drives
// the same capture exchange as the ext_proc server, in-process.
//
// The client receives the upstream's status, headers, body and trailers
// (gRPC trailers and trailers-only responses included). Bodies stream
// through: chunks are copied to the exchange as they pass, never held back.
// A panic in a capture call is recovered, counted and logged, and the
// request continues uncaptured.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/time/rate"

	"github.com/collectord/collectord/internal/capture"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxIdleConnsPerHost = 256
	DefaultDialTimeout         = 5 * time.Second
	DefaultIdleConnTimeout     = 90 * time.Second
)

// copyBufferSize is the size of the buffers that copy response bodies, the
// same as httputil.ReverseProxy's own.
const copyBufferSize = 32 << 10

// Config sets the upstream and the connection pool of the proxy.
type Config struct {
	// Upstream is the model server, an http:// URL. A path in it prefixes
	// every request path.
	Upstream *url.URL
	// MaxIdleConnsPerHost bounds the idle HTTP/1.1 connections kept to the
	// upstream for reuse. Default DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// DialTimeout bounds connecting to the upstream. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleConnTimeout closes upstream connections idle for longer. Default
	// DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers once the request is sent; 0 waits as long as the client does,
	// because a predict may legitimately take minutes.
	ResponseHeaderTimeout time.Duration
}

// Engine starts capture exchanges; *capture.Engine implements it.
type Engine interface {
	Begin(ctx context.Context, req capture.RequestInfo) *capture.Exchange
}

// Proxy is an http.Handler that forwards requests to the upstream and feeds
// predicts to the capture engine.
type Proxy struct {
	engine  Engine
	reverse *httputil.ReverseProxy
	http1   *http.Transport
	h2c     *http.Transport
	logger  *slog.Logger
	metrics *metrics

	// logSometimes rate-limits the logs of repeated failures, which the
	// metrics count in full.
	panicLog    rate.Sometimes
	upstreamLog rate.Sometimes
}

// New returns a Proxy in front of cfg.Upstream. A nil engine forwards
// without capturing. A nil meter records nothing.
func New(cfg Config, engine Engine, logger *slog.Logger, meter metric.Meter) (*Proxy, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if e, ok := engine.(*capture.Engine); ok && e == nil {
		engine = nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("collectord/proxy")
	}
	m, err := newMetrics(meter)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}

	p := &Proxy{
		engine:      engine,
		logger:      logger,
		metrics:     m,
		panicLog:    rate.Sometimes{First: 1, Interval: time.Minute},
		upstreamLog: rate.Sometimes{First: 1, Interval: 10 * time.Second},
	}
	p.http1, p.h2c = newTransports(cfg)
	p.reverse = &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { p.rewrite(pr, cfg.Upstream) },
		Transport:      upstreamTransport{http1: p.http1, h2c: p.h2c},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.handleUpstreamError,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BufferPool:     newBufferPool(),
		// Zero, not -1: ReverseProxy already flushes every write of a body
		// of unknown length (gRPC, chunked, server-sent events), while a
		// negative interval would also flush the headers of a trailers-only
		// gRPC response before grpc-status could end the stream with them.
		FlushInterval: 0,
	}
	return p, nil
}

// withDefaults validates cfg and fills its zero fields.
func withDefaults(cfg Config) (Config, error) {
	u := cfg.Upstream
	if u == nil {
		return cfg, errors.New("proxy: Config.Upstream is missing; set it to the model server's http:// URL")
	}
	if u.Scheme != "http" || u.Host == "" {
		return cfg, fmt.Errorf("proxy: upstream %q is invalid; use an http:// URL with a host, such as http://127.0.0.1:8000", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return cfg, fmt.Errorf("proxy: upstream %q is invalid; remove its user info, query and fragment", u.Redacted())
	}
	if cfg.MaxIdleConnsPerHost < 0 || cfg.DialTimeout < 0 || cfg.IdleConnTimeout < 0 || cfg.ResponseHeaderTimeout < 0 {
		return cfg, errors.New("proxy: connection limits and timeouts must not be negative")
	}

	if cfg.MaxIdleConnsPerHost == 0 {
		cfg.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleConnTimeout == 0 {
		cfg.IdleConnTimeout = DefaultIdleConnTimeout
	}
	return cfg, nil
}

// ServeHTTP forwards one request and, for a predict the engine wants,
// copies its parts to a capture exchange.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.begin(r)
	if t == nil {
		p.reverse.ServeHTTP(w, r)
		return
	}

	// close runs even when ReverseProxy panics with http.ErrAbortHandler
	// because the client went away, and counts the exchange as aborted.
	defer t.close()
	p.reverse.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tapKey{}, t)))
}

// Close closes the idle upstream connections. Requests in flight are not
// affected.
func (p *Proxy) Close() {
	p.http1.CloseIdleConnections()
	p.h2c.CloseIdleConnections()
}

// rewrite points the outbound request at the upstream. It keeps the
// client's Host and raw query, as Envoy does, so that the upstream receives
// the request the client sent, and tees the request body into the exchange.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest, upstream *url.URL) {
	pr.SetURL(upstream)
	pr.Out.Host = pr.In.Host
	// ReverseProxy drops query parameters it cannot parse; forward them.
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery

	// Append this hop to the forwarding headers instead of replacing them.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()

	// Request.Clone copied the trailer map before the body was read, so
	// share the inbound map: the transport reads it after the body ends,
	// when the server has filled in the values.
	pr.Out.Trailer = pr.In.Trailer

	if t := tapFrom(pr.In.Context()); t != nil && pr.Out.Body != nil && (t.plan.RequestBody || t.plan.RequestTrailers) {
		pr.Out.Body = &requestTee{body: pr.Out.Body, tap: t, trailer: pr.In.Trailer}
	}
}

// modifyResponse reports the response headers to the exchange and tees the
// response body.
func (p *Proxy) modifyResponse(res *http.Response) error {
	t := tapFrom(res.Request.Context())
	if t == nil {
		return nil
	}

	// A response without a body ends at its headers; for gRPC these are the
	// trailers-only headers that carry grpc-status.
	endOfStream := res.ContentLength == 0 || res.Body == http.NoBody
	t.responseHeaders(res, endOfStream)

	// ReverseProxy needs the writable body of a 101 Switching Protocols
	// response to join the two connections, so that body is never wrapped.
	if !endOfStream && t.wantsResponseBody() && res.StatusCode != http.StatusSwitchingProtocols {
		res.Body = &responseTee{body: res.Body, tap: t, res: res}
	}
	return nil
}

// handleUpstreamError responds to a request the upstream could not serve: 502
// for HTTP, and for gRPC a trailers-only UNAVAILABLE status, which is how
// Envoy reports an unreachable gRPC upstream.
func (p *Proxy) handleUpstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away, so no response can reach it.
		return
	}

	p.metrics.upstreamErrors.Add(context.Background(), 1)
	p.upstreamLog.Do(func() {
		p.logger.Warn("upstream request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	})

	if isGRPC(r.Header.Get("Content-Type")) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14")
		w.Header().Set("Grpc-Message", "upstream unavailable")
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Error(w, "502 Bad Gateway: the upstream model server could not be reached", http.StatusBadGateway)
}

// NewServer returns an http.Server for handler that accepts HTTP/1.1 and
// unencrypted HTTP/2 with prior knowledge (as gRPC clients connect) on one
// listener. Run it with Serve and stop it with Shutdown.
func NewServer(handler http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// newTransports returns the HTTP/1.1 transport and the unencrypted HTTP/2
// transport to the upstream. Neither uses proxy environment variables, and
// neither requests compressed responses, so bodies pass unchanged.
func newTransports(cfg Config) (http1, h2c *http.Transport) {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}

	http1 = &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          0, // no total limit; MaxIdleConnsPerHost bounds the one upstream
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		WriteBufferSize:       copyBufferSize,
		ReadBufferSize:        copyBufferSize,
	}

	h2cProtocols := new(http.Protocols)
	h2cProtocols.SetUnencryptedHTTP2(true)
	h2c = &http.Transport{
		Protocols:             h2cProtocols,
		DialContext:           dialer.DialContext,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		DisableCompression:    true,
	}
	return http1, h2c
}

// upstreamTransport sends gRPC over unencrypted HTTP/2, which gRPC requires,
// and everything else over HTTP/1.1, which every model server speaks.
type upstreamTransport struct {
	http1 http.RoundTripper
	h2c   http.RoundTripper
}

func (u upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if isGRPC(r.Header.Get("Content-Type")) {
		return u.h2c.RoundTrip(r)
	}
	return u.http1.RoundTrip(r)
}

// isGRPC reports whether a Content-Type is application/grpc or one of its
// variants (application/grpc+proto, with parameters).
func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// bufferPool recycles the response copy buffers of httputil.ReverseProxy.
type bufferPool struct {
	pool sync.Pool
}

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any {
		buf := make([]byte, copyBufferSize)
		return &buf
	}}}
}

func (b *bufferPool) Get() []byte { return *b.pool.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }
