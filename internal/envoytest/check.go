package envoytest

import (
	"fmt"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// check applies Envoy's rules to the reply of one message.
func (p *player) check(step Step, reply *extprocpb.ProcessingResponse) {
	if ir := reply.GetImmediateResponse(); ir != nil {
		// Envoy sends nothing more after an immediate response and closes
		// the stream.
		p.violate(KindImmediateResponse, step, fmt.Sprintf("status %d", ir.GetStatus().GetCode()))
		p.closeStream()
		if p.localStatus == 0 {
			p.localStatus = int(ir.GetStatus().GetCode())
		}
		if p.localStatus == 0 {
			p.localStatus = 200
		}
		return
	}

	if got := ReplyPhase(reply); got != step.Phase {
		p.fail(KindSpuriousReply, step, fmt.Sprintf("got a %s reply", got))
		return
	}

	if detail := Mutation(reply); detail != "" {
		p.violate(KindMutation, step, detail)
	}
	p.override(step, reply.GetModeOverride())
}

// override applies a mode_override the way Envoy does: only in replies to
// headers, only with allow_mode_override, only when allowed_override_modes
// is empty or lists it, and never for request_header_mode.
func (p *player) override(step Step, mode *filterpb.ProcessingMode) {
	if mode == nil {
		return
	}
	isHeaders := step.Phase == PhaseRequestHeaders || step.Phase == PhaseResponseHeaders
	if !isHeaders || !p.cfg.AllowModeOverride || !overrideAllowed(mode, p.cfg.AllowedOverrideModes) {
		p.result.IgnoredOverrides++
		return
	}

	next := resolveMode(mode)
	next.RequestHeaderMode = p.mode.RequestHeaderMode
	p.mode = next
	p.result.Overrides++
}

// overrideAllowed compares whole modes, request_header_mode aside.
func overrideAllowed(mode *filterpb.ProcessingMode, allowed []*filterpb.ProcessingMode) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		if sameOverride(mode, a) {
			return true
		}
	}
	return false
}

// sameOverride compares every field of ProcessingMode but
// request_header_mode.
func sameOverride(a, b *filterpb.ProcessingMode) bool {
	return a.GetResponseHeaderMode() == b.GetResponseHeaderMode() &&
		a.GetRequestBodyMode() == b.GetRequestBodyMode() &&
		a.GetResponseBodyMode() == b.GetResponseBodyMode() &&
		a.GetRequestTrailerMode() == b.GetRequestTrailerMode() &&
		a.GetResponseTrailerMode() == b.GetResponseTrailerMode()
}

// Mutation describes what a reply would change, or returns "" for a plain
// CONTINUE.
func Mutation(reply *extprocpb.ProcessingResponse) string {
	var common *extprocpb.CommonResponse
	switch r := reply.GetResponse().(type) {
	case *extprocpb.ProcessingResponse_RequestHeaders:
		common = r.RequestHeaders.GetResponse()
	case *extprocpb.ProcessingResponse_ResponseHeaders:
		common = r.ResponseHeaders.GetResponse()
	case *extprocpb.ProcessingResponse_RequestBody:
		common = r.RequestBody.GetResponse()
	case *extprocpb.ProcessingResponse_ResponseBody:
		common = r.ResponseBody.GetResponse()
	case *extprocpb.ProcessingResponse_RequestTrailers:
		return headerMutation(r.RequestTrailers.GetHeaderMutation())
	case *extprocpb.ProcessingResponse_ResponseTrailers:
		return headerMutation(r.ResponseTrailers.GetHeaderMutation())
	}

	switch {
	case common.GetStatus() != extprocpb.CommonResponse_CONTINUE:
		return "status " + common.GetStatus().String()
	case common.GetBodyMutation() != nil:
		return "body mutation"
	case len(common.GetTrailers().GetHeaders()) > 0:
		return "trailers added"
	case common.GetClearRouteCache():
		return "route cache cleared"
	}
	return headerMutation(common.GetHeaderMutation())
}

func headerMutation(m *extprocpb.HeaderMutation) string {
	if len(m.GetSetHeaders()) > 0 || len(m.GetRemoveHeaders()) > 0 {
		return "header mutation"
	}
	return ""
}

// metadata builds the metadata_context Envoy forwards on every message.
func metadata(ex *Exchange) *corepb.Metadata {
	if len(ex.Metadata) == 0 {
		return nil
	}
	return &corepb.Metadata{FilterMetadata: map[string]*structpb.Struct(ex.Metadata)}
}
