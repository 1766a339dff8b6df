package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Client plays HTTP exchanges against one processor, one Process stream per
// exchange over a shared connection, as Envoy does with its ext_proc cluster.
// It is safe for concurrent use.
type Client struct {
	cfg    Config
	conn   *grpc.ClientConn
	client extprocpb.ExternalProcessorClient
}

// Dial connects to a processor over plaintext gRPC. target is a gRPC target
// such as "127.0.0.1:50051" or "unix:///run/collectord.sock"; the connection
// is made lazily, so a dead processor shows up as a failed stream.
func Dial(target string, cfg Config) (*Client, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Envoy's buffers, not gRPC's default 4 MiB, bound what it accepts.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial ext_proc processor %q: %w", target, err)
	}
	if err := validate(cfg); err != nil {
		conn.Close()
		return nil, err
	}
	return &Client{cfg: cfg, conn: conn, client: extprocpb.NewExternalProcessorClient(conn)}, nil
}

// validate rejects body modes the client does not play.
func validate(cfg Config) error {
	for _, mode := range append([]*filterpb.ProcessingMode{cfg.ProcessingMode}, cfg.AllowedOverrideModes...) {
		for _, body := range []filterpb.ProcessingMode_BodySendMode{mode.GetRequestBodyMode(), mode.GetResponseBodyMode()} {
			if body == filterpb.ProcessingMode_FULL_DUPLEX_STREAMED || body == filterpb.ProcessingMode_GRPC {
				return fmt.Errorf("body mode %s is not supported by envoytest", body)
			}
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Play runs one exchange on a new Process stream and returns its result.
func (c *Client) Play(ctx context.Context, ex *Exchange) *Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	p := &player{
		cfg:    c.cfg,
		client: c.client,
		ex:     ex,
		mode:   resolveMode(c.cfg.ProcessingMode),
		result: &Result{},
	}
	p.request(ctx)
	if p.localStatus == 0 {
		p.upstreamRequest()
		p.response(ctx)
	}
	p.end(ctx)
	p.finish()
	return p.result
}

// player holds the state of one exchange.
type player struct {
	cfg    Config
	client extprocpb.ExternalProcessorClient
	ex     *Exchange
	mode   *filterpb.ProcessingMode
	result *Result

	stream    *sideStream
	firstSent bool
	// stopped is set once Envoy stops talking to the processor for this
	// exchange: after a failure with failure_mode_allow, or an OK close.
	stopped bool
	// localStatus is the status of Envoy's local reply, 0 while the
	// exchange follows the upstream.
	localStatus int
	// stripRequestLength and stripResponseLength record whether Envoy
	// removes content-length, decided when the headers were processed.
	stripRequestLength  bool
	stripResponseLength bool
}

// resolveMode fills in Envoy's defaults: DEFAULT headers are SEND and
// DEFAULT trailers are SKIP.
func resolveMode(m *filterpb.ProcessingMode) *filterpb.ProcessingMode {
	out := &filterpb.ProcessingMode{}
	if m != nil {
		out = proto.Clone(m).(*filterpb.ProcessingMode)
	}
	if out.RequestHeaderMode == filterpb.ProcessingMode_DEFAULT {
		out.RequestHeaderMode = filterpb.ProcessingMode_SEND
	}
	if out.ResponseHeaderMode == filterpb.ProcessingMode_DEFAULT {
		out.ResponseHeaderMode = filterpb.ProcessingMode_SEND
	}
	if out.RequestTrailerMode == filterpb.ProcessingMode_DEFAULT {
		out.RequestTrailerMode = filterpb.ProcessingMode_SKIP
	}
	if out.ResponseTrailerMode == filterpb.ProcessingMode_DEFAULT {
		out.ResponseTrailerMode = filterpb.ProcessingMode_SKIP
	}
	return out
}

// request plays the request side: headers, body, trailers.
func (p *player) request(ctx context.Context) {
	ex := p.ex
	hasBody, hasTrailers := len(ex.RequestBody) > 0, len(ex.RequestTrailers) > 0

	if p.mode.RequestHeaderMode == filterpb.ProcessingMode_SEND {
		msg := &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocpb.HttpHeaders{
				Headers:     headerMap(ex.RequestHeaders, p.cfg.ForwardRules),
				EndOfStream: !hasBody && !hasTrailers,
			},
		}}
		p.exchange(ctx, Step{Phase: PhaseRequestHeaders}, msg)
	}
	// Envoy decides on content-length once the headers reply is applied.
	p.stripRequestLength = hasBody && !p.cfg.AllowContentLengthHeader &&
		bodyMayChange(p.mode.RequestBodyMode, p.mode.RequestHeaderMode)

	p.body(ctx, PhaseRequestBody, ex.RequestBody, hasTrailers, p.mode.RequestBodyMode)

	if hasTrailers && p.mode.RequestTrailerMode == filterpb.ProcessingMode_SEND {
		msg := &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestTrailers{
			RequestTrailers: &extprocpb.HttpTrailers{Trailers: headerMap(ex.RequestTrailers, p.cfg.ForwardRules)},
		}}
		p.exchange(ctx, Step{Phase: PhaseRequestTrailers}, msg)
	}
}

// response plays the response side: headers, body, trailers.
func (p *player) response(ctx context.Context) {
	ex := p.ex
	hasBody, hasTrailers := len(ex.ResponseBody) > 0, len(ex.ResponseTrailers) > 0

	if p.mode.ResponseHeaderMode == filterpb.ProcessingMode_SEND {
		msg := &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocpb.HttpHeaders{
				Headers:     headerMap(ex.ResponseHeaders, p.cfg.ForwardRules),
				EndOfStream: !hasBody && !hasTrailers,
			},
		}}
		p.exchange(ctx, Step{Phase: PhaseResponseHeaders}, msg)
	}
	p.stripResponseLength = hasBody && !p.cfg.AllowContentLengthHeader &&
		bodyMayChange(p.mode.ResponseBodyMode, p.mode.ResponseHeaderMode)

	p.body(ctx, PhaseResponseBody, ex.ResponseBody, hasTrailers, p.mode.ResponseBodyMode)

	if hasTrailers && p.mode.ResponseTrailerMode == filterpb.ProcessingMode_SEND {
		msg := &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseTrailers{
			ResponseTrailers: &extprocpb.HttpTrailers{Trailers: headerMap(ex.ResponseTrailers, p.cfg.ForwardRules)},
		}}
		p.exchange(ctx, Step{Phase: PhaseResponseTrailers}, msg)
	}
}

// body sends one direction's body under mode. end_of_stream is set on the
// last body message only when no trailers follow, as Envoy does.
func (p *player) body(ctx context.Context, phase Phase, chunks [][]byte, hasTrailers bool, mode filterpb.ProcessingMode_BodySendMode) {
	if len(chunks) == 0 {
		return
	}
	// In observability mode Envoy sends only STREAMED bodies.
	if p.cfg.ObservabilityMode && mode != filterpb.ProcessingMode_STREAMED {
		return
	}

	switch mode {
	case filterpb.ProcessingMode_STREAMED:
		for i, chunk := range chunks {
			last := i == len(chunks)-1
			p.exchange(ctx, Step{Phase: phase, Chunk: i}, bodyMessage(phase, chunk, last && !hasTrailers))
		}
	case filterpb.ProcessingMode_BUFFERED:
		whole := concat(chunks)
		if len(whole) > p.cfg.bufferLimit() {
			p.overBufferLimit(phase)
			return
		}
		p.exchange(ctx, Step{Phase: phase}, bodyMessage(phase, whole, !hasTrailers))
	case filterpb.ProcessingMode_BUFFERED_PARTIAL:
		// Envoy sends what fits in the buffer and passes the rest through
		// unseen.
		whole := concat(chunks)
		complete := len(whole) <= p.cfg.bufferLimit()
		if !complete {
			whole = whole[:p.cfg.bufferLimit()]
		}
		p.exchange(ctx, Step{Phase: phase}, bodyMessage(phase, whole, complete && !hasTrailers))
	}
}

// overBufferLimit sets the local reply Envoy sends when a BUFFERED body
// passes the buffer limit: 413 for a request, 500 for a response.
func (p *player) overBufferLimit(phase Phase) {
	if p.localStatus != 0 {
		return
	}
	if phase == PhaseRequestBody {
		p.localStatus = 413
		return
	}
	p.localStatus = 500
}

func bodyMessage(phase Phase, chunk []byte, endOfStream bool) *extprocpb.ProcessingRequest {
	body := &extprocpb.HttpBody{Body: chunk, EndOfStream: endOfStream}
	if phase == PhaseRequestBody {
		return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestBody{RequestBody: body}}
	}
	return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_ResponseBody{ResponseBody: body}}
}

func concat(chunks [][]byte) []byte {
	var out []byte
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

// exchange sends one message and, unless in observability mode, waits for
// its reply and checks it. Nothing is sent once Envoy has stopped talking to
// the processor or has replied locally.
func (p *player) exchange(ctx context.Context, step Step, msg *extprocpb.ProcessingRequest) {
	if p.stopped || p.localStatus != 0 {
		return
	}
	if err := p.send(ctx, msg); err != nil {
		p.streamFailed(step, err)
		p.after(step)
		return
	}
	if p.cfg.ObservabilityMode {
		p.after(step)
		return
	}

	reply, err := p.stream.next(ctx, p.cfg.messageTimeout())
	if err != nil {
		p.streamFailed(step, err)
	} else {
		p.check(step, reply)
	}
	p.after(step)
}

func (p *player) after(step Step) {
	if p.ex.AfterMessage != nil {
		p.ex.AfterMessage(step)
	}
}

// send opens the stream on the first message, as Envoy does, and sends msg.
func (p *player) send(ctx context.Context, msg *extprocpb.ProcessingRequest) error {
	if p.stream == nil {
		s, err := openStream(ctx, p.client)
		if err != nil {
			return err
		}
		p.stream = s
	}

	msg.ObservabilityMode = p.cfg.ObservabilityMode
	msg.MetadataContext = metadata(p.ex)
	if !p.firstSent {
		// Envoy 2025 and later tell the processor the body modes on the
		// first message.
		msg.ProtocolConfig = &extprocpb.ProtocolConfiguration{
			RequestBodyMode:  p.mode.RequestBodyMode,
			ResponseBodyMode: p.mode.ResponseBodyMode,
		}
		p.firstSent = true
	}
	p.result.Sent = append(p.result.Sent, msg)

	err := p.stream.stream.Send(msg)
	if errors.Is(err, io.EOF) {
		// gRPC reports the real end of the stream through Recv.
		err = p.stream.endError(p.cfg.messageTimeout())
		if err == nil {
			err = io.EOF
		}
	}
	return err
}

// streamFailed handles a stream that ended, failed or timed out while a
// reply was due.
func (p *player) streamFailed(step Step, err error) {
	switch {
	case errors.Is(err, io.EOF):
		// Envoy reads an OK close as the processor needing nothing more,
		// and closes its side of the stream.
		p.violate(KindClosedEarly, step, "stream ended with OK before the reply")
		p.stopped = true
		p.closeStream()
	case errors.Is(err, errTimeout):
		p.fail(KindTimeout, step, err.Error())
	default:
		p.fail(KindStreamError, step, describe(err))
	}
}

func describe(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}

// fail records a violation that Envoy treats as a processor failure: with
// failure_mode_allow the exchange continues without the processor, without
// it Envoy replies 504 on a timeout and 500 otherwise. Either way Envoy
// closes the stream at once (half-close, then reset). The processor gets
// the end while it may still be working on the message, and a late reply is
// discarded.
func (p *player) fail(kind ViolationKind, step Step, detail string) {
	p.violate(kind, step, detail)
	p.closeStream()
	if p.cfg.FailureModeAllow {
		p.stopped = true
		p.result.FailedOpen = true
		return
	}
	if p.localStatus == 0 {
		p.localStatus = 500
		if kind == KindTimeout {
			p.localStatus = 504
		}
	}
}

// closeStream closes the stream the way Envoy does once it stops processing
// an exchange.
func (p *player) closeStream() {
	if p.stream != nil {
		p.stream.close()
	}
}

func (p *player) violate(kind ViolationKind, step Step, detail string) {
	p.result.Violations = append(p.result.Violations, Violation{Kind: kind, Step: step, Detail: detail})
}

// upstreamRequest records what the upstream receives.
func (p *player) upstreamRequest() {
	headers := p.ex.RequestHeaders
	if p.stripRequestLength {
		headers = withoutContentLength(headers)
	}
	p.result.UpstreamHeaders = append([]Header{}, headers...)
	p.result.UpstreamBody = concat(p.ex.RequestBody)
}

// end closes the stream the way Envoy does: CloseSend, then cancel. In
// observability mode Envoy first waits for the processor to close, up to
// deferred_close_timeout.
func (p *player) end(ctx context.Context) {
	if p.stream == nil || p.stream.closed {
		return
	}
	defer p.stream.close()
	if err := p.stream.stream.CloseSend(); err != nil {
		return
	}

	wait := p.cfg.AwaitClose
	if p.cfg.ObservabilityMode {
		wait = p.cfg.deferredCloseTimeout()
	}
	if wait <= 0 {
		p.flagUnread()
		return
	}

	err := p.stream.endError(wait)
	if !p.cfg.ObservabilityMode {
		p.flagUnread()
	}
	if err != nil && !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled && !p.stopped {
		// A failure after the last reply still fails the stream in Envoy
		// while the exchange is open.
		p.fail(KindStreamError, Step{}, describe(err))
	}
}

// flagUnread reports replies no message was waiting for.
func (p *player) flagUnread() {
	if p.cfg.ObservabilityMode || p.stopped || p.stream.closed {
		return
	}
	for _, reply := range p.stream.unread() {
		p.fail(KindSpuriousReply, Step{Phase: ReplyPhase(reply)}, "reply with no message waiting")
	}
}

// finish fills in the outcome.
func (p *player) finish() {
	r := p.result
	r.Mode = p.mode
	if p.stream != nil {
		r.Replies = p.stream.all()
	}
	if p.localStatus != 0 {
		r.Status = p.localStatus
		r.ClientHeaders, r.ClientBody = nil, nil
		return
	}

	r.Succeeded = true
	r.Status = statusOf(p.ex.ResponseHeaders)
	headers := p.ex.ResponseHeaders
	if p.stripResponseLength {
		headers = withoutContentLength(headers)
	}
	r.ClientHeaders = append([]Header{}, headers...)
	r.ClientBody = concat(p.ex.ResponseBody)
}

func statusOf(headers []Header) int {
	for _, h := range headers {
		if h.Name == ":status" {
			var code int
			fmt.Sscan(h.Value, &code)
			return code
		}
	}
	return 0
}
