package extproc

import (
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/capture"
)

// planCount is the number of distinct capture.Plan values: five booleans.
const planCount = 1 << 5

// planIndex packs a plan into [0, planCount).
func planIndex(p capture.Plan) int {
	i := 0
	for bit, on := range []bool{p.RequestBody, p.RequestTrailers, p.ResponseHeaders, p.ResponseBody, p.ResponseTrailers} {
		if on {
			i |= 1 << bit
		}
	}
	return i
}

// planAt is the inverse of planIndex.
func planAt(i int) capture.Plan {
	return capture.Plan{
		RequestBody:      i&(1<<0) != 0,
		RequestTrailers:  i&(1<<1) != 0,
		ResponseHeaders:  i&(1<<2) != 0,
		ResponseBody:     i&(1<<3) != 0,
		ResponseTrailers: i&(1<<4) != 0,
	}
}

// modeFor returns the mode_override that makes Envoy send exactly the parts
// of the exchange that plan names, and nothing else.
//
// Every field is set explicitly (SEND or SKIP, never DEFAULT), because Envoy
// compares an override with allowed_override_modes field by field, and the
// shipped config lists these exact values. request_header_mode stays unset:
// Envoy ignores it in an override, since the request headers have already
// been sent.
func modeFor(plan capture.Plan) *filterpb.ProcessingMode {
	mode := &filterpb.ProcessingMode{
		ResponseHeaderMode:  filterpb.ProcessingMode_SKIP,
		RequestBodyMode:     filterpb.ProcessingMode_NONE,
		ResponseBodyMode:    filterpb.ProcessingMode_NONE,
		RequestTrailerMode:  filterpb.ProcessingMode_SKIP,
		ResponseTrailerMode: filterpb.ProcessingMode_SKIP,
	}

	if plan.RequestBody {
		// STREAMED, never BUFFERED: Envoy replies 413 to a BUFFERED request
		// body over its per-connection buffer limit, which would break large
		// predicts. STREAMED chunks pass through whatever their size.
		mode.RequestBodyMode = filterpb.ProcessingMode_STREAMED
	}
	if plan.RequestBody || plan.RequestTrailers {
		// When a request has trailers, Envoy sets end_of_stream on no body
		// chunk, so the trailers are the only sign that the body is
		// complete. Envoy sends trailers only when the request has them.
		mode.RequestTrailerMode = filterpb.ProcessingMode_SEND
	}

	if plan.ResponseHeaders || plan.ResponseBody || plan.ResponseTrailers {
		// The response status decides whether the predict succeeded, and a
		// response body cannot be read without it.
		mode.ResponseHeaderMode = filterpb.ProcessingMode_SEND
	}
	if plan.ResponseBody {
		// STREAMED for the same reason as the request: Envoy replies 500
		// to a BUFFERED response over its buffer limit.
		mode.ResponseBodyMode = filterpb.ProcessingMode_STREAMED
	}
	if plan.ResponseBody || plan.ResponseTrailers {
		// gRPC carries grpc-status in the trailers, and with trailers no
		// body chunk has end_of_stream set.
		mode.ResponseTrailerMode = filterpb.ProcessingMode_SEND
	}
	return mode
}

// OverrideModes returns every mode_override the server can send, the fast
// path's included. An Envoy config that sets allowed_override_modes must list
// all of them, or Envoy ignores the overrides it does not list.
func OverrideModes() []*filterpb.ProcessingMode {
	var modes []*filterpb.ProcessingMode
	for i := range planCount {
		mode := modeFor(planAt(i))
		if !containsMode(modes, mode) {
			modes = append(modes, mode)
		}
	}
	return modes
}

func containsMode(modes []*filterpb.ProcessingMode, mode *filterpb.ProcessingMode) bool {
	for _, m := range modes {
		if proto.Equal(m, mode) {
			return true
		}
	}
	return false
}

// replies holds the immutable replies the server sends. gRPC marshals a
// reply before Send returns and protobuf allows concurrent marshalling of
// one message, so streams share them and a reply allocates nothing.
type replies struct {
	requestHeaders   *extprocpb.ProcessingResponse
	requestBody      *extprocpb.ProcessingResponse
	requestTrailers  *extprocpb.ProcessingResponse
	responseHeaders  *extprocpb.ProcessingResponse
	responseBody     *extprocpb.ProcessingResponse
	responseTrailers *extprocpb.ProcessingResponse

	// byPlan holds the request-headers reply with the mode_override of each
	// plan, indexed by planIndex. byPlan[0] is the fast path's.
	byPlan [planCount]*extprocpb.ProcessingResponse
}

func newReplies() *replies {
	r := &replies{
		requestHeaders: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocpb.HeadersResponse{Response: continueResponse()},
		}},
		requestBody: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestBody{
			RequestBody: &extprocpb.BodyResponse{Response: continueResponse()},
		}},
		requestTrailers: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocpb.TrailersResponse{},
		}},
		responseHeaders: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocpb.HeadersResponse{Response: continueResponse()},
		}},
		responseBody: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocpb.BodyResponse{Response: continueResponse()},
		}},
		responseTrailers: &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocpb.TrailersResponse{},
		}},
	}
	for i := range planCount {
		r.byPlan[i] = &extprocpb.ProcessingResponse{
			Response: &extprocpb.ProcessingResponse_RequestHeaders{
				RequestHeaders: &extprocpb.HeadersResponse{Response: continueResponse()},
			},
			ModeOverride: modeFor(planAt(i)),
		}
	}
	return r
}

// continueResponse is a plain CONTINUE: no header, body or trailer mutation
// and no route cache clearing, so Envoy passes the predict on unchanged.
func continueResponse() *extprocpb.CommonResponse {
	return &extprocpb.CommonResponse{Status: extprocpb.CommonResponse_CONTINUE}
}
