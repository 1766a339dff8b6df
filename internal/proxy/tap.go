package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"sync"

	"github.com/collectord/collectord/internal/capture"
)

// Phases of an exchange: the bounded values of the phase label of
// collectord_proxy_capture_panics_total.
const (
	phaseBegin            = "begin"
	phaseRequestBody      = "request_body"
	phaseRequestTrailers  = "request_trailers"
	phaseResponseHeaders  = "response_headers"
	phaseResponseBody     = "response_body"
	phaseResponseTrailers = "response_trailers"
	phaseClose            = "close"
)

// tapKey is the context key of a request's tap.
type tapKey struct{}

func tapFrom(ctx context.Context) *tap {
	t, _ := ctx.Value(tapKey{}).(*tap)
	return t
}

// tap feeds one proxied request to its capture exchange, in the order and
// with the end_of_stream flags Envoy would use, and only the parts the
// exchange's plan requests.
//
// The upstream transport reads the request body on its own goroutine, which
// can overlap with the response, so mu serializes the calls: an Exchange
// accepts one caller at a time.
type tap struct {
	proxy *Proxy
	plan  capture.Plan

	mu sync.Mutex
	x  *capture.Exchange
	// done is set after Close or a panic in a capture call; later parts
	// are dropped.
	done bool
}

// begin starts an exchange for r, or returns nil when the engine does not
// want this request.
func (p *Proxy) begin(r *http.Request) *tap {
	if p.engine == nil {
		return nil
	}

	var x *capture.Exchange
	ok := p.safely(phaseBegin, func() {
		x = p.engine.Begin(r.Context(), capture.RequestInfo{
			Headers:     requestHeaders{r: r},
			EndOfStream: r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0,
		})
	})
	if !ok || x == nil {
		return nil
	}

	t := &tap{proxy: p, x: x}
	if !p.safely(phaseBegin, func() { t.plan = x.Plan() }) {
		t.close()
		return nil
	}
	return t
}

// call runs fn on the exchange unless the tap is done. A panic in fn is
// recovered and ends the capture.
func (t *tap) call(phase string, fn func(x *capture.Exchange)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	if !t.proxy.safely(phase, func() { fn(t.x) }) {
		t.done = true
	}
}

// requestChunk copies a chunk read from the client's body.
func (t *tap) requestChunk(chunk []byte, endOfStream bool) {
	if !t.plan.RequestBody {
		return
	}
	t.call(phaseRequestBody, func(x *capture.Exchange) { x.RequestBody(chunk, endOfStream) })
}

// requestEnd reports the end of the request body. Like Envoy, it sends the
// trailers when the request has any, and otherwise an empty last chunk.
func (t *tap) requestEnd(trailer http.Header) {
	if hasValues(trailer) {
		if t.plan.RequestTrailers {
			t.call(phaseRequestTrailers, func(x *capture.Exchange) { x.RequestTrailers(headerMap(trailer)) })
		}
		return
	}
	t.requestChunk(nil, true)
}

func (t *tap) responseHeaders(res *http.Response, endOfStream bool) {
	if !t.plan.ResponseHeaders {
		return
	}
	t.call(phaseResponseHeaders, func(x *capture.Exchange) {
		x.ResponseHeaders(responseHeaders{res: res}, endOfStream)
	})
}

// wantsResponseBody reports whether the response body must be watched,
// either for its bytes or for where it ends.
func (t *tap) wantsResponseBody() bool {
	return t.plan.ResponseBody || t.plan.ResponseTrailers
}

func (t *tap) responseChunk(chunk []byte, endOfStream bool) {
	if !t.plan.ResponseBody {
		return
	}
	t.call(phaseResponseBody, func(x *capture.Exchange) { x.ResponseBody(chunk, endOfStream) })
}

// responseEnd reports the end of the response body: the trailers when the
// response has any, and otherwise an empty last chunk.
func (t *tap) responseEnd(trailer http.Header) {
	if hasValues(trailer) {
		if t.plan.ResponseTrailers {
			t.call(phaseResponseTrailers, func(x *capture.Exchange) { x.ResponseTrailers(headerMap(trailer)) })
		}
		return
	}
	t.responseChunk(nil, true)
}

// close closes the exchange once; later parts are dropped.
func (t *tap) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.x == nil {
		return
	}
	x := t.x
	t.x = nil
	t.done = true
	t.proxy.safely(phaseClose, x.Close)
}

// safely runs fn and reports whether it returned normally. A panic is
// counted, logged at a limited rate, and swallowed, because capture must
// never fail a predict.
func (p *Proxy) safely(phase string, fn func()) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			p.metrics.capturePanic(phase)
			p.panicLog.Do(func() {
				p.logger.Error("capture call panicked; the request continues uncaptured",
					"phase", phase, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			})
		}
	}()
	fn()
	return true
}

// requestTee passes the request body to the upstream transport and copies
// each chunk to the tap as it is read.
type requestTee struct {
	body    io.ReadCloser
	tap     *tap
	trailer http.Header
	ended   bool
}

func (r *requestTee) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if r.ended {
		return n, err
	}

	atEnd := err == io.EOF
	switch {
	case n > 0 && atEnd && !hasValues(r.trailer):
		r.tap.requestChunk(p[:n], true)
	case n > 0:
		r.tap.requestChunk(p[:n], false)
		if atEnd {
			r.tap.requestEnd(r.trailer)
		}
	case atEnd:
		r.tap.requestEnd(r.trailer)
	}
	r.ended = atEnd
	return n, err
}

func (r *requestTee) Close() error { return r.body.Close() }

// responseTee passes the upstream's response body to the client and copies
// each chunk to the tap as ReverseProxy reads it to write it on.
type responseTee struct {
	body  io.ReadCloser
	tap   *tap
	res   *http.Response
	ended bool
}

func (r *responseTee) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if r.ended {
		return n, err
	}

	// The transports fill res.Trailer before the body reports io.EOF.
	atEnd := err == io.EOF
	switch {
	case n > 0 && atEnd && !hasValues(r.res.Trailer):
		r.tap.responseChunk(p[:n], true)
	case n > 0:
		r.tap.responseChunk(p[:n], false)
		if atEnd {
			r.tap.responseEnd(r.res.Trailer)
		}
	case atEnd:
		r.tap.responseEnd(r.res.Trailer)
	}
	r.ended = atEnd
	return n, err
}

func (r *responseTee) Close() error { return r.body.Close() }

// hasValues reports whether h has any header value. A trailer announced but
// never sent has a key with no values, and Envoy would report no trailers.
func hasValues(h http.Header) bool {
	for _, values := range h {
		if len(values) > 0 {
			return true
		}
	}
	return false
}
