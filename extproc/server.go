// Package extproc is the Envoy-facing side of collectord: a gRPC
// ExternalProcessor that feeds each HTTP exchange to the capture engine.
//
// The server never changes a predict. Every reply is a plain CONTINUE, and
// the only setting it sends is a mode_override in the reply to the request
// headers. A stream always ends with OK, so a fault in the sidecar does not
// fail a request even when Envoy is configured to fail closed.
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"time"

	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/collectord/collectord/internal/capture"
)

// maxReplyBytes caps the size of a reply. Replies are a CONTINUE with at most
// a mode_override, tens of bytes; the cap makes sure a body is never echoed.
const maxReplyBytes = 4 << 10

// DefaultIdleTimeout is the idle timeout of a stream when Config.IdleTimeout
// is zero.
const DefaultIdleTimeout = 5 * time.Minute

// Config tunes the server.
type Config struct {
	// MetadataNamespaces lists the dynamic metadata namespaces (for example
	// envoy.filters.http.jwt_authn) passed to the capture engine. Empty
	// passes every namespace Envoy forwards.
	MetadataNamespaces []string

	// IdleTimeout ends a stream that has waited this long for its next
	// message: the server ends it with OK and closes its exchange, so a
	// stream that its peer abandoned without a reset frees its state. Zero
	// means DefaultIdleTimeout and a negative value turns the timeout off.
	//
	// Envoy sends nothing while the model computes the response, so the
	// timeout must exceed the slowest predict. A stream ended too early
	// loses its capture, never its predict: after an OK close Envoy stops
	// sending messages and the request goes on.
	IdleTimeout time.Duration
}

func (c Config) idleTimeout() time.Duration {
	if c.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

// Server implements the ext_proc ExternalProcessor service over a capture
// engine. It is safe for concurrent streams.
type Server struct {
	extprocpb.UnimplementedExternalProcessorServer

	cfg     Config
	begin   func(context.Context, capture.RequestInfo) exchange
	logger  *slog.Logger
	metrics *metrics
	replies *replies
}

var _ extprocpb.ExternalProcessorServer = (*Server)(nil)

// exchange is the part of *capture.Exchange the server drives. Tests
// substitute it to make a phase panic.
type exchange interface {
	Plan() capture.Plan
	RequestBody(chunk []byte, endOfStream bool)
	RequestTrailers(h capture.Headers)
	ResponseHeaders(h capture.Headers, endOfStream bool)
	ResponseBody(chunk []byte, endOfStream bool)
	ResponseTrailers(h capture.Headers)
	Close()
	Abandon()
}

// New builds a server over engine.
func New(cfg Config, engine *capture.Engine, logger *slog.Logger, meter metric.Meter) (*Server, error) {
	if engine == nil {
		return nil, errors.New("extproc: a capture engine is required")
	}
	begin := func(ctx context.Context, info capture.RequestInfo) exchange {
		// A nil *capture.Exchange must become a nil interface.
		if x := engine.Begin(ctx, info); x != nil {
			return x
		}
		return nil
	}
	return newServer(cfg, begin, logger, meter)
}

func newServer(cfg Config, begin func(context.Context, capture.RequestInfo) exchange, logger *slog.Logger, meter metric.Meter) (*Server, error) {
	if logger == nil || meter == nil {
		return nil, errors.New("extproc: a logger and a meter are required")
	}
	m, err := newMetrics(meter)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		begin:   begin,
		logger:  logger,
		metrics: m,
		replies: newReplies(),
	}, nil
}

// Register registers the server on g.
func (s *Server) Register(g *grpc.Server) {
	extprocpb.RegisterExternalProcessorServer(g, s)
}

// ServerOptions returns the gRPC server options an ext_proc server needs
// for a capture cap of maxCaptureBytes (0 or less means
// capture.DefaultMaxCaptureBytes).
//
// A message carries at most one body chunk, but Envoy may pass on a large
// chunk in one piece, so the receive limit is the cap plus 1 MiB instead of
// gRPC's default 4 MiB, which would fail large predicts. A chunk over the
// cap cannot be captured anyway; if one passes the limit, the stream fails
// and Envoy, with failure_mode_allow, continues without the processor.
func ServerOptions(maxCaptureBytes int64) []grpc.ServerOption {
	if maxCaptureBytes <= 0 {
		maxCaptureBytes = capture.DefaultMaxCaptureBytes
	}
	recv := min(maxCaptureBytes+1<<20, math.MaxInt32)
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(recv)),
		grpc.MaxSendMsgSize(maxReplyBytes),
	}
}

// Process serves one ext_proc stream, which Envoy opens for one HTTP
// request. It always returns nil: Envoy ends streams by half-closing or
// cancelling them, and an error status would fail the request when
// failure_mode_allow is off.
//
// A second goroutine runs the Recv loop while Process watches the idle
// timeout, because only the return of Process makes a blocked Recv return.
// Process waits for that goroutine on every end but the idle timeout, so
// the exchange is closed when Process returns. After an idle timeout the
// goroutine returns, and closes the exchange, as soon as gRPC cancels the
// stream's context.
func (s *Server) Process(stream grpc.BidiStreamingServer[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]) error {
	ctx := stream.Context()
	st := newStreamState(s, ctx)

	idle := s.cfg.idleTimeout()
	if idle < 0 {
		s.endStream(ctx, st.receive(stream))
		return nil
	}

	ended := make(chan streamEnd, 1)
	go func() { ended <- st.receive(stream) }()
	end, ok := st.await(ended, idle)
	if !ok {
		s.metrics.streams.Add(ctx, 1, s.metrics.ends[endIdleTimeout]...)
		s.logger.LogAttrs(ctx, slog.LevelDebug, "ext_proc stream reached the idle timeout and was ended with OK",
			slog.Duration("idle_timeout", idle))
		return nil
	}
	s.endStream(ctx, end)
	return nil
}

// endStream counts how a stream ended and logs the abnormal ends.
func (s *Server) endStream(ctx context.Context, end streamEnd) {
	label := endError
	switch {
	case errors.Is(end.err, io.EOF):
		label = endEOF
	case end.replying && ctx.Err() != nil:
		// Envoy resets the stream when a reply is late (message_timeout),
		// so this end is the server-side sign of a slow reply.
		label = endReplyCanceled
		s.logger.LogAttrs(ctx, slog.LevelDebug, "ext_proc stream reset while a reply was due")
	case ctx.Err() != nil, errors.Is(end.err, context.Canceled), status.Code(end.err) == codes.Canceled:
		// Envoy usually resets the stream after its half-close.
		label = endCanceled
	default:
		s.logger.LogAttrs(ctx, slog.LevelWarn, "ext_proc stream ended with an error",
			slog.String("code", status.Code(end.err).String()), slog.Any("error", end.err))
	}
	s.metrics.streams.Add(ctx, 1, s.metrics.ends[label]...)
}
