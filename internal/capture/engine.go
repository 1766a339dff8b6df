package capture

import (
	"context"
	"errors"
)

// NOTE: placeholder bodies; the capture engine is being written in this file.

// Engine starts exchanges and runs the background assemblers.
type Engine struct{}

// New builds an engine; call Start before the first Begin.
func New(cfg Config, deps Deps) (*Engine, error) { return nil, errors.New("not built yet") }

// Start launches the background assemblers; they stop when Close is called.
func (e *Engine) Start(ctx context.Context) {}

// Close stops taking finished exchanges, lets the assemblers empty their
// queue into the sink, and returns when they are done or ctx ends.
func (e *Engine) Close(ctx context.Context) error { return nil }

// Begin starts an exchange from the request headers. It returns nil on the
// fast path: not a predict, no caller, or no candidate collector. The caller
// must call Close on a non-nil exchange exactly once.
func (e *Engine) Begin(ctx context.Context, req RequestInfo) *Exchange { return nil }

// Exchange is the capture state of one request. Its methods are called from
// one goroutine at a time (one ext_proc stream or one proxied request).
type Exchange struct{}

// Plan returns the parts of the exchange the engine wants to see.
func (x *Exchange) Plan() Plan { return Plan{} }

// RequestBody appends a chunk of the request body. chunk is copied; the
// caller may reuse it.
func (x *Exchange) RequestBody(chunk []byte, endOfStream bool) {}

// RequestTrailers records the request trailers, which end the request.
func (x *Exchange) RequestTrailers(h Headers) {}

// ResponseHeaders records the response status and headers.
func (x *Exchange) ResponseHeaders(h Headers, endOfStream bool) {}

// ResponseBody appends a chunk of the response body.
func (x *Exchange) ResponseBody(chunk []byte, endOfStream bool) {}

// ResponseTrailers records the response trailers (grpc-status for gRPC).
func (x *Exchange) ResponseTrailers(h Headers) {}

// Close ends the exchange. A complete, successful exchange goes to the
// assemblers; an incomplete one is counted as aborted and emits nothing.
func (x *Exchange) Close() {}
