package extproc

import (
	"context"
	"log/slog"
	"runtime/debug"

	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/collectord/collectord/internal/capture"
)

// streamState is the state of one ext_proc stream. Only the goroutine that
// runs its Recv loop uses it, except clock.
type streamState struct {
	server *Server
	ctx    context.Context
	clock  idleClock

	// begun is set by the first request_headers message; x is the capture
	// exchange it started, nil on the fast path or once abandoned.
	begun bool
	x     exchange
}

// handle dispatches one message by its oneof type and returns the reply of
// the matching type. It never returns nil.
func (st *streamState) handle(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
	s := st.server
	switch r := req.GetRequest().(type) {
	case *extprocpb.ProcessingRequest_RequestHeaders:
		return st.requestHeaders(r.RequestHeaders, req)
	case *extprocpb.ProcessingRequest_RequestBody:
		st.run(phaseRequestBody, func() { st.x.RequestBody(r.RequestBody.GetBody(), r.RequestBody.GetEndOfStream()) })
		return s.replies.requestBody
	case *extprocpb.ProcessingRequest_RequestTrailers:
		st.run(phaseRequestTrailers, func() { st.x.RequestTrailers(headerMap{r.RequestTrailers.GetTrailers()}) })
		return s.replies.requestTrailers
	case *extprocpb.ProcessingRequest_ResponseHeaders:
		h := r.ResponseHeaders
		st.run(phaseResponseHeaders, func() { st.x.ResponseHeaders(headerMap{h.GetHeaders()}, h.GetEndOfStream()) })
		return s.replies.responseHeaders
	case *extprocpb.ProcessingRequest_ResponseBody:
		st.run(phaseResponseBody, func() { st.x.ResponseBody(r.ResponseBody.GetBody(), r.ResponseBody.GetEndOfStream()) })
		return s.replies.responseBody
	case *extprocpb.ProcessingRequest_ResponseTrailers:
		st.run(phaseResponseTrailers, func() { st.x.ResponseTrailers(headerMap{r.ResponseTrailers.GetTrailers()}) })
		return s.replies.responseTrailers
	}

	// No oneof Envoy documents, so no reply type matches. A plain
	// request-headers CONTINUE keeps the peer from waiting for a reply.
	s.metrics.messages.Add(st.ctx, 1, s.metrics.byPhase[phaseUnknown]...)
	return s.replies.requestHeaders
}

// requestHeaders starts the exchange and replies with the mode_override that
// requests from Envoy what the capture needs.
func (st *streamState) requestHeaders(h *extprocpb.HttpHeaders, req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
	s := st.server
	s.metrics.messages.Add(st.ctx, 1, s.metrics.byPhase[phaseRequestHeaders]...)
	if st.begun {
		// Envoy sends request headers once per stream. A second set starts
		// nothing; the first exchange goes on.
		return s.replies.requestHeaders
	}
	st.begun = true

	plan, ok := st.start(h, req)
	if !ok {
		// Fast path: not a predict, no caller or no candidate collector.
		// The override makes Envoy send nothing more for this request,
		// so almost all traffic costs one round trip.
		return s.replies.byPlan[0]
	}
	// The plan names the parts the capture needs; modeFor gives the reason
	// for each mode it picks.
	return s.replies.byPlan[planIndex(plan)]
}

// start begins the capture exchange and returns its plan; ok is false on the
// fast path and after a panic.
func (st *streamState) start(h *extprocpb.HttpHeaders, req *extprocpb.ProcessingRequest) (plan capture.Plan, ok bool) {
	s := st.server
	st.protect(phaseRequestHeaders, func() {
		st.x = s.begin(st.ctx, capture.RequestInfo{
			Headers:     headerMap{h.GetHeaders()},
			EndOfStream: h.GetEndOfStream(),
			Metadata:    metadataOf(req.GetMetadataContext(), s.cfg.MetadataNamespaces),
		})
		if st.x != nil {
			s.metrics.exchangesOpen.Add(st.ctx, 1)
			plan = st.x.Plan()
		}
	})
	return plan, st.x != nil
}

// run counts a message of phase p and passes it to the exchange through fn.
// Messages before request headers, or after a fast-path or abandoned start,
// have no exchange and only get their CONTINUE.
func (st *streamState) run(p phase, fn func()) {
	s := st.server
	s.metrics.messages.Add(st.ctx, 1, s.metrics.byPhase[p]...)
	if st.x == nil {
		return
	}
	st.protect(p, fn)
}

// protect runs fn and recovers a panic in it: the panic is counted and
// logged, and the exchange is abandoned, so the phase still gets its reply
// and nothing of the exchange is captured.
func (st *streamState) protect(p phase, fn func()) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		s := st.server
		s.metrics.panics.Add(st.ctx, 1, s.metrics.byPhase[p]...)
		s.logger.LogAttrs(st.ctx, slog.LevelError, "recovered from a panic in an ext_proc phase; the exchange is abandoned",
			slog.String("phase", p.String()), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		// Abandon rather than Close: Close could still hand off an exchange
		// that looked complete although a phase failed halfway.
		if st.x != nil {
			abandon(st.x)
			st.x = nil
			s.metrics.exchangesOpen.Add(st.ctx, -1)
		}
	}()
	fn()
}

// close ends the exchange when the stream ends, however it ends.
func (st *streamState) close() {
	if st.x == nil {
		return
	}
	x := st.x
	st.x = nil
	defer st.server.metrics.exchangesOpen.Add(st.ctx, -1)
	st.protect(phaseStreamEnd, x.Close)
}

// abandon discards an exchange whose state a panic may have broken; a second
// panic inside it is swallowed, because the stream must still get its reply.
func abandon(x exchange) {
	defer func() { _ = recover() }()
	x.Abandon()
}
