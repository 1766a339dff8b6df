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

// Config tunes the server.
type Config struct {
	// MetadataNamespaces lists the dynamic metadata namespaces (for example
	// envoy.filters.http.jwt_authn) passed to the capture engine. Empty
	// passes every namespace Envoy forwards.
	MetadataNamespaces []string
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
func (s *Server) Process(stream grpc.BidiStreamingServer[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]) error {
	ctx := stream.Context()
	st := &streamState{server: s, ctx: ctx}
	defer st.close()

	for {
		if ctx.Err() != nil {
			s.endStream(ctx, ctx.Err())
			return nil
		}
		req, err := stream.Recv()
		if err != nil {
			s.endStream(ctx, err)
			return nil
		}

		reply := st.handle(req)
		// In observability mode Envoy ignores replies, so none is sent and
		// the loop returns to Recv at once.
		if req.GetObservabilityMode() {
			continue
		}
		if err := stream.Send(reply); err != nil {
			s.endStream(ctx, err)
			return nil
		}
	}
}

// endStream counts how a stream ended and logs the abnormal ends.
func (s *Server) endStream(ctx context.Context, err error) {
	end := endError
	switch {
	case errors.Is(err, io.EOF):
		end = endEOF
	case errors.Is(err, context.Canceled), status.Code(err) == codes.Canceled:
		// Envoy usually resets the stream after its half-close.
		end = endCanceled
	default:
		s.logger.LogAttrs(ctx, slog.LevelWarn, "ext_proc stream ended with an error",
			slog.String("code", status.Code(err).String()), slog.Any("error", err))
	}
	s.metrics.streams.Add(ctx, 1, s.metrics.ends[end]...)
}
