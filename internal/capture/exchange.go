package capture

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/predict"
	"github.com/collectord/collectord/internal/telemetry"
)

// maxRequestIDLen bounds an x-request-id taken from the request. Longer or
// non-printable values are replaced, because the ID is stored in every
// record of the request.
const maxRequestIDLen = 128

// Exchange is the capture state of one request. Its methods are called from
// one goroutine at a time (one ext_proc stream or one proxied request).
//
// The body methods only copy bytes: they run while Envoy waits for the
// reply, so all parsing happens later in the assemblers.
type Exchange struct {
	engine *Engine
	plan   Plan
	job    finished

	// bodyBytes counts the request and response body bytes kept so far.
	bodyBytes int64

	requestEnded    bool
	responseStarted bool
	responseEnded   bool
	// failed is set once the exchange can no longer be captured; the reason
	// has been counted and the buffers freed.
	failed bool
	closed bool
}

// finished is the part of a complete exchange that the assemblers use.
type finished struct {
	route        predict.Route
	callerUserID string
	candidates   []collector.Collector
	requestID    string

	requestBody      []byte
	requestEncoding  string
	responseBody     []byte
	responseEncoding string
	// hasResponse is set when the response body was kept, even if empty.
	hasResponse bool

	capturedAt time.Time
}

func (f *finished) size() int64 {
	return int64(len(f.requestBody) + len(f.responseBody))
}

func newExchange(e *Engine, route predict.Route, caller string, candidates []collector.Collector, headers Headers, contentLength int64) *Exchange {
	x := &Exchange{
		engine: e,
		plan:   planFor(route, candidates),
		job: finished{
			route:        route,
			callerUserID: caller,
			candidates:   candidates,
			requestID:    requestIDFrom(headers),
		},
	}
	if route.Protocol == predict.ProtocolGRPC {
		x.job.requestEncoding = headers.Get("grpc-encoding")
	}

	// One allocation of the declared size saves the copies of a growing
	// buffer; Begin has already rejected sizes over the cap.
	if contentLength > 0 {
		x.job.requestBody = make([]byte, 0, contentLength)
	}
	return x
}

// planFor decides which parts of the exchange to read.
//
// The response status is always needed, because a failed predict is never
// captured. The response body is needed when a collector posts outputs, is
// pinned to a version that only the response can tell, runs a pre-queue
// workflow (its operators read the outputs' concepts) or balances classes
// (which needs each input's top concept). For gRPC it is always
// read, because Clarifai's gRPC API reports a failed predict in the
// response body's status while grpc-status is 0. gRPC puts grpc-status in
// the trailers. REST responses rarely have trailers, but when they do Envoy
// sets end_of_stream on no body chunk, so trailers are read whenever the
// body is, to see where the response ends.
func planFor(route predict.Route, candidates []collector.Collector) Plan {
	plan := Plan{RequestBody: true, ResponseHeaders: true}

	if route.Protocol == predict.ProtocolGRPC {
		plan.ResponseBody = true
		plan.ResponseTrailers = true
		return plan
	}

	for i := range candidates {
		c := &candidates[i]
		if needsOutputs(c) || (c.Model.VersionID != "" && route.VersionID == "") {
			plan.ResponseBody = true
			plan.ResponseTrailers = true
			break
		}
	}
	return plan
}

// needsOutputs reports whether a collector reads the predict's outputs
// whichever model version ran.
func needsOutputs(c *collector.Collector) bool {
	return c.CollectOutputs || c.PreQueueWorkflowID != "" || c.Policy.MaxPerConcept > 0
}

// requestIDFrom returns the x-request-id header when it is a reasonable ID,
// else a random UUID.
func requestIDFrom(headers Headers) string {
	id := headers.Get("x-request-id")
	if id == "" || len(id) > maxRequestIDLen {
		return uuid.NewString()
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return uuid.NewString()
		}
	}
	return id
}

// Plan returns the parts of the exchange the engine wants to see.
func (x *Exchange) Plan() Plan {
	if x == nil {
		return Plan{}
	}
	return x.plan
}

// RequestBody appends a chunk of the request body. chunk is copied; the
// caller may reuse it.
func (x *Exchange) RequestBody(chunk []byte, endOfStream bool) {
	if x == nil || x.failed || x.closed {
		return
	}
	if x.requestEnded {
		x.fail(telemetry.OutcomeAborted, reasonUnexpectedMessage)
		return
	}

	if !x.appendBody(&x.job.requestBody, chunk) {
		return
	}
	if endOfStream {
		x.requestEnded = true
	}
}

// RequestTrailers records the request trailers, which end the request.
func (x *Exchange) RequestTrailers(h Headers) {
	if x == nil || x.failed || x.closed {
		return
	}
	if x.requestEnded {
		x.fail(telemetry.OutcomeAborted, reasonUnexpectedMessage)
		return
	}
	x.requestEnded = true
}

// ResponseHeaders records the response status and headers. A status other
// than 2xx (HTTP 200 for gRPC) ends the capture.
func (x *Exchange) ResponseHeaders(h Headers, endOfStream bool) {
	if x == nil || x.failed || x.closed {
		return
	}
	if x.responseStarted || h == nil {
		x.fail(telemetry.OutcomeAborted, reasonUnexpectedMessage)
		return
	}
	x.responseStarted = true

	if !httpStatusOK(h.Get(":status"), x.job.route.Protocol) {
		x.fail(telemetry.OutcomeUpstreamError, reasonResponseStatus)
		return
	}
	if x.job.route.Protocol == predict.ProtocolGRPC {
		x.job.responseEncoding = h.Get("grpc-encoding")
	}
	if !x.plan.ResponseBody {
		// The status is all this exchange needed of the response.
		x.responseEnded = true
		return
	}

	x.job.hasResponse = true
	if endOfStream {
		// For gRPC these are trailers-only headers that carry grpc-status.
		x.endResponse(h)
	}
}

// ResponseBody appends a chunk of the response body. Chunks of a body the
// plan did not ask for (observability mode sends them anyway) are ignored.
func (x *Exchange) ResponseBody(chunk []byte, endOfStream bool) {
	if x == nil || x.failed || x.closed || !x.plan.ResponseBody {
		return
	}
	if !x.responseStarted || x.responseEnded {
		x.fail(telemetry.OutcomeAborted, reasonUnexpectedMessage)
		return
	}

	if !x.appendBody(&x.job.responseBody, chunk) || !endOfStream {
		return
	}
	if x.job.route.Protocol == predict.ProtocolGRPC {
		// Envoy sets end_of_stream only when no trailers follow, and a gRPC
		// response without trailers carries no grpc-status: the call failed.
		x.fail(telemetry.OutcomeUpstreamError, reasonResponseStatus)
		return
	}
	x.responseEnded = true
}

// ResponseTrailers records the response trailers (grpc-status for gRPC).
func (x *Exchange) ResponseTrailers(h Headers) {
	if x == nil || x.failed || x.closed || !x.plan.ResponseTrailers {
		return
	}
	if !x.responseStarted || x.responseEnded || h == nil {
		x.fail(telemetry.OutcomeAborted, reasonUnexpectedMessage)
		return
	}
	x.endResponse(h)
}

// endResponse ends the response at its last headers or trailers. For gRPC,
// only grpc-status 0 is a success.
func (x *Exchange) endResponse(h Headers) {
	if x.job.route.Protocol == predict.ProtocolGRPC && h.Get("grpc-status") != "0" {
		x.fail(telemetry.OutcomeUpstreamError, reasonResponseStatus)
		return
	}
	x.responseEnded = true
}

// Close ends the exchange. A complete, successful exchange goes to the
// assemblers; an incomplete one is counted as aborted and emits nothing.
// Close is idempotent.
func (x *Exchange) Close() {
	if x == nil || x.closed {
		return
	}
	x.closed = true
	if x.failed {
		return
	}

	ctx := context.Background()
	captures := x.engine.metrics.captures
	switch {
	case !x.requestEnded:
		captures.Add(ctx, telemetry.OutcomeAborted, reasonRequestIncomplete, 1)
	case !x.responseEnded:
		captures.Add(ctx, telemetry.OutcomeAborted, reasonResponseIncomplete, 1)
	default:
		job := x.job
		job.capturedAt = x.engine.now()
		x.engine.handOff(&job)
	}
	x.free()
}

// Abandon ends the exchange without capturing it, whatever its state, and
// counts it as aborted. Use it when the exchange can no longer be driven
// correctly, for example after a recovered panic. Close after Abandon does
// nothing.
func (x *Exchange) Abandon() {
	if x == nil || x.closed {
		return
	}
	if !x.failed {
		x.fail(telemetry.OutcomeAborted, reasonAbandoned)
	}
	x.closed = true
}

// appendBody copies chunk into *buf unless the exchange would pass the
// capture cap, in which case it fails the exchange and returns false.
func (x *Exchange) appendBody(buf *[]byte, chunk []byte) bool {
	x.bodyBytes += int64(len(chunk))
	if x.bodyBytes > x.engine.cfg.MaxCaptureBytes {
		x.fail(telemetry.OutcomeTooLarge, "")
		return false
	}
	*buf = append(*buf, chunk...)
	return true
}

// fail ends the capture: it counts outcome once and frees the buffers.
func (x *Exchange) fail(outcome, reason string) {
	x.failed = true
	x.engine.metrics.captures.Add(context.Background(), outcome, reason, 1)
	x.free()
}

func (x *Exchange) free() {
	x.job.requestBody = nil
	x.job.responseBody = nil
	x.job.candidates = nil
}

// httpStatusOK reports whether a :status value is a success: any 2xx for
// REST, and 200 for gRPC, whose own status comes in grpc-status.
func httpStatusOK(status string, protocol predict.Protocol) bool {
	if protocol == predict.ProtocolGRPC {
		return status == "200"
	}
	return len(status) == 3 && status[0] == '2' &&
		status[1] >= '0' && status[1] <= '9' && status[2] >= '0' && status[2] <= '9'
}
