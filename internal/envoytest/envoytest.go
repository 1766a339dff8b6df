// Package envoytest is an ext_proc client that behaves like Envoy's ext_proc
// HTTP filter, for tests and benchmarks of processors. No Envoy binary is
// needed: the client plays one HTTP exchange per Process stream, sends the
// messages Envoy would send for the configured processing mode, checks every
// reply the way Envoy does, and reports what the HTTP client and the upstream
// would then see.
//
// The behaviour follows Envoy 1.32 and later. Header values travel in
// raw_value only, mode_override is honoured only in replies to headers, and
// message_timeout bounds each reply. A failing processor fails the request
// (500, or 504 on a timeout) unless failure_mode_allow is set, in which case
// Envoy continues without it. Either way Envoy stops processing the exchange
// and closes the stream at once, a half-close followed by a reset, as it does
// after an immediate response or an OK close by the processor.
package envoytest

import (
	"fmt"
	"time"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy's defaults for the settings Config leaves at zero.
const (
	// DefaultMessageTimeout is Envoy's message_timeout default.
	DefaultMessageTimeout = 200 * time.Millisecond
	// DefaultDeferredCloseTimeout is how long Envoy keeps an observability
	// mode stream open after the HTTP exchange ends.
	DefaultDeferredCloseTimeout = 5 * time.Second
	// DefaultBufferLimit is Envoy's per_connection_buffer_limit_bytes default.
	DefaultBufferLimit = 1 << 20
)

// Config is the part of the ext_proc filter configuration the client honours,
// plus the listener's buffer limit.
type Config struct {
	// ProcessingMode is the filter's processing_mode; nil means Envoy's
	// defaults: headers SEND, bodies NONE, trailers SKIP.
	ProcessingMode *filterpb.ProcessingMode
	// AllowModeOverride lets replies to headers change the processing mode.
	AllowModeOverride bool
	// AllowedOverrideModes, when non-empty, lists the only modes an override
	// may set. request_header_mode is ignored in the comparison.
	AllowedOverrideModes []*filterpb.ProcessingMode
	// MessageTimeout bounds the wait for each reply; zero means
	// DefaultMessageTimeout. Envoy reads an explicit zero as "expire at once",
	// which this client cannot express.
	MessageTimeout time.Duration
	// FailureModeAllow lets the request continue when the processor fails.
	FailureModeAllow bool
	// ObservabilityMode sends every message without waiting for replies and
	// ignores the replies.
	ObservabilityMode bool
	// DeferredCloseTimeout bounds how long an observability mode stream stays
	// open after the exchange; zero means DefaultDeferredCloseTimeout.
	DeferredCloseTimeout time.Duration
	// ForwardRules selects the headers and trailers sent to the processor;
	// nil forwards all of them.
	ForwardRules *filterpb.HeaderForwardingRules
	// AllowContentLengthHeader keeps content-length when a body mode lets the
	// processor change the body; Envoy removes it otherwise.
	AllowContentLengthHeader bool
	// BufferLimit is the listener's per_connection_buffer_limit_bytes, which
	// bounds BUFFERED bodies; zero means DefaultBufferLimit.
	BufferLimit int
	// AwaitClose makes the client wait up to this long, after its last
	// message, for the processor to end the stream, and counts every reply
	// that arrives meanwhile as spurious. Zero cancels the stream right after
	// CloseSend, as Envoy does. Tests use it to know that the processor has
	// finished with the stream.
	AwaitClose time.Duration
}

// ConfigFromFilter converts an ext_proc filter configuration into a Config.
// bufferLimit is the listener's per_connection_buffer_limit_bytes, or 0.
func ConfigFromFilter(f *filterpb.ExternalProcessor, bufferLimit int) Config {
	cfg := Config{
		ProcessingMode:           f.GetProcessingMode(),
		AllowModeOverride:        f.GetAllowModeOverride(),
		AllowedOverrideModes:     f.GetAllowedOverrideModes(),
		FailureModeAllow:         f.GetFailureModeAllow(),
		ObservabilityMode:        f.GetObservabilityMode(),
		ForwardRules:             f.GetForwardRules(),
		AllowContentLengthHeader: f.GetAllowContentLengthHeader(),
		BufferLimit:              bufferLimit,
	}
	if t := f.GetMessageTimeout(); t != nil {
		cfg.MessageTimeout = t.AsDuration()
	}
	if t := f.GetDeferredCloseTimeout(); t != nil {
		cfg.DeferredCloseTimeout = t.AsDuration()
	}
	return cfg
}

func (c Config) messageTimeout() time.Duration {
	if c.MessageTimeout > 0 {
		return c.MessageTimeout
	}
	return DefaultMessageTimeout
}

func (c Config) deferredCloseTimeout() time.Duration {
	if c.DeferredCloseTimeout > 0 {
		return c.DeferredCloseTimeout
	}
	return DefaultDeferredCloseTimeout
}

func (c Config) bufferLimit() int {
	if c.BufferLimit > 0 {
		return c.BufferLimit
	}
	return DefaultBufferLimit
}

// Header is one header or trailer field. Pseudo-headers (":method", ":path",
// ":authority", ":scheme", ":status") are ordinary entries.
type Header struct {
	Name  string
	Value string
}

// Exchange describes one HTTP request and the upstream's response as they
// reach Envoy.
type Exchange struct {
	// RequestHeaders include the pseudo-headers; see Request.
	RequestHeaders []Header
	// RequestBody holds the chunks in which the body reaches Envoy.
	RequestBody [][]byte
	// RequestTrailers, when non-empty, follow the request body.
	RequestTrailers []Header
	// ResponseHeaders include ":status"; see Response.
	ResponseHeaders []Header
	// ResponseBody holds the chunks of the upstream's response body.
	ResponseBody [][]byte
	// ResponseTrailers, when non-empty, end the response (grpc-status).
	ResponseTrailers []Header
	// Metadata is the dynamic metadata forwarded as
	// metadata_context.filter_metadata on every message, or nil.
	Metadata map[string]*structpb.Struct
	// AfterMessage, when set, runs after each message's reply was checked
	// (after each send in observability mode). Tests use it to stop the
	// processor at a chosen point.
	AfterMessage func(Step)
}

// Request returns request headers with the pseudo-headers Envoy always sends
// (":scheme" is "http") and content-type when it is not empty.
func Request(method, path, authority, contentType string, extra ...Header) []Header {
	h := []Header{
		{Name: ":method", Value: method},
		{Name: ":path", Value: path},
		{Name: ":authority", Value: authority},
		{Name: ":scheme", Value: "http"},
	}
	if contentType != "" {
		h = append(h, Header{Name: "content-type", Value: contentType})
	}
	return append(h, extra...)
}

// Response returns response headers with ":status" first.
func Response(status int, extra ...Header) []Header {
	h := []Header{{Name: ":status", Value: fmt.Sprint(status)}}
	return append(h, extra...)
}

// Chunks splits body into n chunks of nearly equal size, the first ones
// larger. n below 1 counts as 1; an empty body yields no chunk.
func Chunks(body []byte, n int) [][]byte {
	if len(body) == 0 {
		return nil
	}
	n = max(1, min(n, len(body)))
	chunks := make([][]byte, 0, n)
	size, extra := len(body)/n, len(body)%n
	for i := range n {
		end := size
		if i < extra {
			end++
		}
		chunks = append(chunks, body[:end])
		body = body[end:]
	}
	return chunks
}

// Phase is one part of an HTTP exchange that Envoy may send to a processor.
type Phase int

// Phases in the order Envoy sends them.
const (
	PhaseRequestHeaders Phase = iota + 1
	PhaseRequestBody
	PhaseRequestTrailers
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
)

var phaseNames = [...]string{
	PhaseRequestHeaders:   "request_headers",
	PhaseRequestBody:      "request_body",
	PhaseRequestTrailers:  "request_trailers",
	PhaseResponseHeaders:  "response_headers",
	PhaseResponseBody:     "response_body",
	PhaseResponseTrailers: "response_trailers",
}

// String returns the oneof field name of the phase.
func (p Phase) String() string {
	if p > 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Step names one message of an exchange: its phase and, for bodies, the
// index of the chunk (0 otherwise).
type Step struct {
	Phase Phase
	Chunk int
}

// String returns the phase, with the chunk index for bodies.
func (s Step) String() string {
	if s.Phase == PhaseRequestBody || s.Phase == PhaseResponseBody {
		return fmt.Sprintf("%s[%d]", s.Phase, s.Chunk)
	}
	return s.Phase.String()
}

// ViolationKind classifies a processor fault that Envoy would notice.
type ViolationKind string

// Violation kinds.
const (
	// KindStreamError: the stream failed with a non-OK status or could not
	// be opened. Envoy fails the request unless failure_mode_allow is set.
	KindStreamError ViolationKind = "stream_error"
	// KindTimeout: no reply within message_timeout. Envoy replies 504 unless
	// failure_mode_allow is set.
	KindTimeout ViolationKind = "timeout"
	// KindSpuriousReply: a reply of the wrong oneof type, or one that no
	// message was waiting for. Envoy fails the request unless
	// failure_mode_allow is set.
	KindSpuriousReply ViolationKind = "spurious_reply"
	// KindMutation: a reply that changes headers, body or trailers, clears
	// the route cache, or is not a plain CONTINUE. Envoy applies it.
	KindMutation ViolationKind = "mutation"
	// KindImmediateResponse: the processor sent the client its own
	// response.
	KindImmediateResponse ViolationKind = "immediate_response"
	// KindClosedEarly: the processor ended the stream with OK while a reply
	// was due. Envoy then stops processing and lets the request continue.
	KindClosedEarly ViolationKind = "closed_early"
)

// Violation is one fault of the processor.
type Violation struct {
	Kind   ViolationKind
	Step   Step
	Detail string
}

// String returns the violation in one line.
func (v Violation) String() string {
	return fmt.Sprintf("%s at %s: %s", v.Kind, v.Step, v.Detail)
}

// Result is the outcome of one exchange.
type Result struct {
	// Sent lists the messages sent to the processor, in order.
	Sent []*extprocpb.ProcessingRequest
	// Replies lists every message received from the processor, in order.
	Replies []*extprocpb.ProcessingResponse
	// Violations lists the processor's faults, in the order noticed.
	Violations []Violation
	// Overrides counts the mode overrides Envoy applied; IgnoredOverrides
	// counts those it dropped (not allowed, or in a reply to a body or
	// trailers).
	Overrides        int
	IgnoredOverrides int
	// Mode is the processing mode in force at the end of the exchange.
	Mode *filterpb.ProcessingMode

	// Status is the HTTP status the client receives: the upstream's, or that
	// of Envoy's local reply (413, 500, 504, or an immediate response).
	Status int
	// Succeeded is true when the request reached the upstream and the client
	// received the upstream's response.
	Succeeded bool
	// FailedOpen is true when the processor failed and Envoy continued
	// without it because of failure_mode_allow.
	FailedOpen bool

	// UpstreamHeaders and UpstreamBody are what the upstream receives, nil
	// when the request never reached it.
	UpstreamHeaders []Header
	UpstreamBody    []byte
	// ClientHeaders and ClientBody are the upstream response as the client
	// receives it, nil when Envoy replied locally.
	ClientHeaders []Header
	ClientBody    []byte
}

// Has reports whether the result contains a violation of kind.
func (r *Result) Has(kind ViolationKind) bool {
	for _, v := range r.Violations {
		if v.Kind == kind {
			return true
		}
	}
	return false
}

// SentPhases returns the phase of every sent message, in order.
func (r *Result) SentPhases() []Phase {
	phases := make([]Phase, 0, len(r.Sent))
	for _, m := range r.Sent {
		phases = append(phases, RequestPhase(m))
	}
	return phases
}

// RequestPhase returns the phase of a message sent to a processor, or 0 when
// it carries none.
func RequestPhase(m *extprocpb.ProcessingRequest) Phase {
	switch m.GetRequest().(type) {
	case *extprocpb.ProcessingRequest_RequestHeaders:
		return PhaseRequestHeaders
	case *extprocpb.ProcessingRequest_RequestBody:
		return PhaseRequestBody
	case *extprocpb.ProcessingRequest_RequestTrailers:
		return PhaseRequestTrailers
	case *extprocpb.ProcessingRequest_ResponseHeaders:
		return PhaseResponseHeaders
	case *extprocpb.ProcessingRequest_ResponseBody:
		return PhaseResponseBody
	case *extprocpb.ProcessingRequest_ResponseTrailers:
		return PhaseResponseTrailers
	}
	return 0
}

// ReplyPhase returns the phase a processor reply belongs to, or 0 for an
// immediate response or an empty reply.
func ReplyPhase(m *extprocpb.ProcessingResponse) Phase {
	switch m.GetResponse().(type) {
	case *extprocpb.ProcessingResponse_RequestHeaders:
		return PhaseRequestHeaders
	case *extprocpb.ProcessingResponse_RequestBody:
		return PhaseRequestBody
	case *extprocpb.ProcessingResponse_RequestTrailers:
		return PhaseRequestTrailers
	case *extprocpb.ProcessingResponse_ResponseHeaders:
		return PhaseResponseHeaders
	case *extprocpb.ProcessingResponse_ResponseBody:
		return PhaseResponseBody
	case *extprocpb.ProcessingResponse_ResponseTrailers:
		return PhaseResponseTrailers
	}
	return 0
}
