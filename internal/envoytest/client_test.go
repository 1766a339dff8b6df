package envoytest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
)

// streamedRequest sends request bodies in STREAMED mode and everything else
// as Envoy does by default.
var streamedRequest = &filterpb.ProcessingMode{RequestBodyMode: filterpb.ProcessingMode_STREAMED}

// restExchange is a POST with a three-chunk body and a one-chunk response.
func restExchange() *Exchange {
	body := bytes.Repeat([]byte("abcdefgh"), 300)
	return &Exchange{
		RequestHeaders: Request("POST", "/v2/models/m/outputs", "model.local", "application/json",
			Header{Name: "Authorization", Value: "Key secret"},
			Header{Name: "Cookie", Value: "session=1"},
			Header{Name: "content-length", Value: "2400"}),
		RequestBody:     Chunks(body, 3),
		ResponseHeaders: Response(200, Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    [][]byte{[]byte(`{"status":{"code":10000}}`)},
	}
}

func requireNoViolations(t *testing.T, r *Result) {
	t.Helper()
	for _, v := range r.Violations {
		t.Errorf("violation: %s", v)
	}
}

func TestClient_CorrectProcessor(t *testing.T) {
	p := startProcessor(t, correct)
	c := dial(t, p.addr, Config{ProcessingMode: streamedRequest})
	ex := restExchange()

	r := play(t, c, ex)

	requireNoViolations(t, r)
	want := []Phase{PhaseRequestHeaders, PhaseRequestBody, PhaseRequestBody, PhaseRequestBody, PhaseResponseHeaders}
	if got := r.SentPhases(); !slices.Equal(got, want) {
		t.Fatalf("sent phases = %v, want %v", got, want)
	}
	if len(r.Replies) != len(want) {
		t.Errorf("replies = %d, want %d", len(r.Replies), len(want))
	}
	if !r.Succeeded || r.Status != 200 {
		t.Errorf("Succeeded = %v, Status = %d, want true, 200", r.Succeeded, r.Status)
	}
	if !bytes.Equal(r.UpstreamBody, concat(ex.RequestBody)) {
		t.Errorf("upstream body differs from the request body")
	}
	if !bytes.Equal(r.ClientBody, concat(ex.ResponseBody)) {
		t.Errorf("client body differs from the response body")
	}
}

func TestClient_HeadersAsEnvoySends(t *testing.T) {
	p := startProcessor(t, correct)
	c := dial(t, p.addr, Config{})

	play(t, c, restExchange())

	got := p.messages()
	if len(got) != 2 {
		t.Fatalf("processor received %d messages, want request and response headers", len(got))
	}
	headers := got[0].GetRequestHeaders().GetHeaders().GetHeaders()
	names := map[string]string{}
	for _, h := range headers {
		if h.GetValue() != "" {
			t.Errorf("header %q has value %q, want it in raw_value only", h.GetKey(), h.GetValue())
		}
		names[h.GetKey()] = string(h.GetRawValue())
	}
	for _, name := range []string{":method", ":path", ":authority", ":scheme", "content-type", "authorization"} {
		if _, ok := names[name]; !ok {
			t.Errorf("header %q missing from %v", name, names)
		}
	}
	if names[":path"] != "/v2/models/m/outputs" {
		t.Errorf(":path = %q", names[":path"])
	}
	if _, ok := names["Authorization"]; ok {
		t.Errorf("header keys are not lowercase: %v", names)
	}
}

func TestClient_ForwardRulesDropCookie(t *testing.T) {
	p := startProcessor(t, correct)
	rules := &filterpb.HeaderForwardingRules{DisallowedHeaders: &matcherpb.ListStringMatcher{
		Patterns: []*matcherpb.StringMatcher{{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "cookie"}}},
	}}
	c := dial(t, p.addr, Config{ForwardRules: rules})

	r := play(t, c, restExchange())

	for _, h := range r.Sent[0].GetRequestHeaders().GetHeaders().GetHeaders() {
		if h.GetKey() == "cookie" {
			t.Errorf("cookie forwarded despite disallowed_headers")
		}
	}
	if !slices.Contains(r.UpstreamHeaders, Header{Name: "Cookie", Value: "session=1"}) {
		t.Errorf("upstream lost the cookie: forward rules only limit what the processor sees")
	}
}

func TestClient_EndOfStream(t *testing.T) {
	p := startProcessor(t, correct)
	mode := &filterpb.ProcessingMode{
		RequestBodyMode:     filterpb.ProcessingMode_STREAMED,
		RequestTrailerMode:  filterpb.ProcessingMode_SEND,
		ResponseBodyMode:    filterpb.ProcessingMode_STREAMED,
		ResponseTrailerMode: filterpb.ProcessingMode_SKIP,
	}
	c := dial(t, p.addr, Config{ProcessingMode: mode})

	t.Run("no body", func(t *testing.T) {
		r := play(t, c, &Exchange{
			RequestHeaders:  Request("GET", "/healthz", "model.local", ""),
			ResponseHeaders: Response(204),
		})
		requireNoViolations(t, r)
		if !r.Sent[0].GetRequestHeaders().GetEndOfStream() {
			t.Errorf("request headers without a body: end_of_stream = false")
		}
		if !r.Sent[1].GetResponseHeaders().GetEndOfStream() {
			t.Errorf("response headers without a body: end_of_stream = false")
		}
	})

	t.Run("trailers follow", func(t *testing.T) {
		ex := restExchange()
		ex.RequestTrailers = []Header{{Name: "x-checksum", Value: "1"}}
		ex.ResponseBody = Chunks(bytes.Repeat([]byte("r"), 90), 3)
		ex.ResponseTrailers = []Header{{Name: "grpc-status", Value: "0"}}
		r := play(t, c, ex)

		requireNoViolations(t, r)
		for _, m := range r.Sent {
			if m.GetRequestHeaders().GetEndOfStream() || m.GetRequestBody().GetEndOfStream() || m.GetResponseBody().GetEndOfStream() {
				t.Errorf("%s has end_of_stream although trailers follow", RequestPhase(m))
			}
		}
		want := []Phase{PhaseRequestHeaders, PhaseRequestBody, PhaseRequestBody, PhaseRequestBody, PhaseRequestTrailers,
			PhaseResponseHeaders, PhaseResponseBody, PhaseResponseBody, PhaseResponseBody}
		if got := r.SentPhases(); !slices.Equal(got, want) {
			t.Errorf("sent phases = %v, want %v (response trailers are SKIP)", got, want)
		}
	})

	t.Run("no trailers", func(t *testing.T) {
		r := play(t, c, restExchange())
		want := []Phase{PhaseRequestHeaders, PhaseRequestBody, PhaseRequestBody, PhaseRequestBody, PhaseResponseHeaders, PhaseResponseBody}
		if got := r.SentPhases(); !slices.Equal(got, want) {
			t.Fatalf("sent phases = %v, want %v", got, want)
		}
		if !r.Sent[3].GetRequestBody().GetEndOfStream() {
			t.Errorf("last request chunk: end_of_stream = false")
		}
		if r.Sent[1].GetRequestBody().GetEndOfStream() {
			t.Errorf("first request chunk: end_of_stream = true")
		}
		if !r.Sent[5].GetResponseBody().GetEndOfStream() {
			t.Errorf("only response chunk: end_of_stream = false")
		}
	})
}

func TestClient_ModeOverride(t *testing.T) {
	wantBody := &filterpb.ProcessingMode{
		RequestHeaderMode:  filterpb.ProcessingMode_SKIP,
		ResponseHeaderMode: filterpb.ProcessingMode_SKIP,
		RequestBodyMode:    filterpb.ProcessingMode_STREAMED,
	}
	other := &filterpb.ProcessingMode{ResponseHeaderMode: filterpb.ProcessingMode_SKIP}
	// The allowed entry differs only in request_header_mode, which Envoy
	// ignores in the comparison.
	allowedBody := &filterpb.ProcessingMode{
		RequestHeaderMode:  filterpb.ProcessingMode_SEND,
		ResponseHeaderMode: filterpb.ProcessingMode_SKIP,
		RequestBodyMode:    filterpb.ProcessingMode_STREAMED,
	}
	p := startProcessor(t, overriding(wantBody))

	cases := []struct {
		name       string
		cfg        Config
		wantPhases []Phase
	}{
		{"not allowed", Config{}, []Phase{PhaseRequestHeaders, PhaseResponseHeaders}},
		{"not listed", Config{AllowModeOverride: true, AllowedOverrideModes: []*filterpb.ProcessingMode{other}},
			[]Phase{PhaseRequestHeaders, PhaseResponseHeaders}},
		{"any allowed", Config{AllowModeOverride: true},
			[]Phase{PhaseRequestHeaders, PhaseRequestBody, PhaseRequestBody, PhaseRequestBody}},
		{"listed", Config{AllowModeOverride: true, AllowedOverrideModes: []*filterpb.ProcessingMode{other, allowedBody}},
			[]Phase{PhaseRequestHeaders, PhaseRequestBody, PhaseRequestBody, PhaseRequestBody}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, p.addr, tc.cfg)
			r := play(t, c, restExchange())
			requireNoViolations(t, r)
			if got := r.SentPhases(); !slices.Equal(got, tc.wantPhases) {
				t.Errorf("sent phases = %v, want %v", got, tc.wantPhases)
			}
			if r.Mode.GetRequestHeaderMode() != filterpb.ProcessingMode_SEND {
				t.Errorf("request_header_mode changed by an override to %s", r.Mode.GetRequestHeaderMode())
			}
		})
	}
}

func TestClient_ModeOverrideInBodyReplyIgnored(t *testing.T) {
	skipAll := &filterpb.ProcessingMode{ResponseHeaderMode: filterpb.ProcessingMode_SKIP}
	p := startProcessor(t, replyEach(func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
		reply := continueReply(req)
		if RequestPhase(req) == PhaseRequestBody {
			reply.ModeOverride = skipAll
		}
		return reply
	}))
	c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, AllowModeOverride: true})

	r := play(t, c, restExchange())

	requireNoViolations(t, r)
	if r.Overrides != 0 || r.IgnoredOverrides != 3 {
		t.Errorf("Overrides = %d, IgnoredOverrides = %d, want 0 and 3", r.Overrides, r.IgnoredOverrides)
	}
	if got := r.SentPhases(); got[len(got)-1] != PhaseResponseHeaders {
		t.Errorf("response headers not sent after overrides in body replies: %v", got)
	}
}

func TestClient_WrongTypeReply(t *testing.T) {
	p := startProcessor(t, wrongType)

	t.Run("fail closed", func(t *testing.T) {
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest})
		r := play(t, c, restExchange())
		if !r.Has(KindSpuriousReply) {
			t.Errorf("violations = %v, want a spurious reply", r.Violations)
		}
		if r.Succeeded || r.Status != 500 {
			t.Errorf("Succeeded = %v, Status = %d, want false, 500", r.Succeeded, r.Status)
		}
		if r.UpstreamBody != nil {
			t.Errorf("request reached the upstream after a failed request phase")
		}
	})

	t.Run("fail open", func(t *testing.T) {
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, FailureModeAllow: true})
		r := play(t, c, restExchange())
		if !r.Has(KindSpuriousReply) || !r.FailedOpen {
			t.Errorf("violations = %v, FailedOpen = %v", r.Violations, r.FailedOpen)
		}
		if !r.Succeeded || r.Status != 200 {
			t.Errorf("Succeeded = %v, Status = %d, want true, 200", r.Succeeded, r.Status)
		}
		// Envoy stops talking to the processor after the failure.
		if got := r.SentPhases(); len(got) != 2 {
			t.Errorf("sent phases = %v, want request headers and the first chunk only", got)
		}
	})
}

func TestClient_SlowProcessor(t *testing.T) {
	p := startProcessor(t, silent)

	t.Run("fail closed", func(t *testing.T) {
		c := dial(t, p.addr, Config{MessageTimeout: 20 * time.Millisecond})
		r := play(t, c, restExchange())
		if !r.Has(KindTimeout) {
			t.Errorf("violations = %v, want a timeout", r.Violations)
		}
		if r.Succeeded || r.Status != 504 {
			t.Errorf("Succeeded = %v, Status = %d, want false, 504", r.Succeeded, r.Status)
		}
	})

	t.Run("fail open", func(t *testing.T) {
		c := dial(t, p.addr, Config{MessageTimeout: 20 * time.Millisecond, FailureModeAllow: true})
		r := play(t, c, restExchange())
		if !r.Has(KindTimeout) || !r.Succeeded || r.Status != 200 {
			t.Errorf("violations = %v, Succeeded = %v, Status = %d", r.Violations, r.Succeeded, r.Status)
		}
	})

	t.Run("observability mode", func(t *testing.T) {
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, ObservabilityMode: true, DeferredCloseTimeout: 20 * time.Millisecond})
		r := play(t, c, restExchange())
		requireNoViolations(t, r)
		if len(r.Sent) != 5 || !r.Sent[0].GetObservabilityMode() {
			t.Errorf("sent %d messages, observability_mode = %v; want 5, true", len(r.Sent), r.Sent[0].GetObservabilityMode())
		}
		if !r.Succeeded {
			t.Errorf("request failed although Envoy does not wait in observability mode")
		}
	})
}

func TestClient_ProcessorPanicsMidBody(t *testing.T) {
	p := startProcessor(t, panicsOnSecondChunk)

	for _, failOpen := range []bool{true, false} {
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, FailureModeAllow: failOpen})
		r := play(t, c, restExchange())
		if !r.Has(KindStreamError) {
			t.Errorf("failure_mode_allow=%v: violations = %v, want a stream error", failOpen, r.Violations)
		}
		if r.Succeeded != failOpen {
			t.Errorf("failure_mode_allow=%v: Succeeded = %v, Status = %d", failOpen, r.Succeeded, r.Status)
		}
	}
}

func TestClient_ProcessorExitsMidBody(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		p := startProcessor(t, correct)
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, FailureModeAllow: failOpen})
		ex := restExchange()
		ex.AfterMessage = func(s Step) {
			if s == (Step{Phase: PhaseRequestBody, Chunk: 0}) {
				p.srv.Stop()
			}
		}

		r := play(t, c, ex)

		if !r.Has(KindStreamError) {
			t.Errorf("failure_mode_allow=%v: violations = %v, want a stream error", failOpen, r.Violations)
		}
		if r.Succeeded != failOpen {
			t.Errorf("failure_mode_allow=%v: Succeeded = %v, Status = %d", failOpen, r.Succeeded, r.Status)
		}
	}
}

func TestClient_ProcessorDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	c := dial(t, addr, Config{FailureModeAllow: true})

	r := play(t, c, restExchange())

	if !r.Has(KindStreamError) || !r.Succeeded {
		t.Errorf("violations = %v, Succeeded = %v; want a stream error and success", r.Violations, r.Succeeded)
	}
}

func TestClient_ClosedEarly(t *testing.T) {
	p := startProcessor(t, closesAfterHeaders)
	c := dial(t, p.addr, Config{ProcessingMode: streamedRequest})

	r := play(t, c, restExchange())

	if !r.Has(KindClosedEarly) {
		t.Errorf("violations = %v, want closed_early", r.Violations)
	}
	if !r.Succeeded {
		t.Errorf("Envoy continues after an OK close, but the request failed with %d", r.Status)
	}
}

func TestClient_DuplicateReply(t *testing.T) {
	p := startProcessor(t, twice)
	c := dial(t, p.addr, Config{AwaitClose: time.Second})
	ex := restExchange()
	ex.ResponseHeaders = nil

	r := play(t, c, &Exchange{RequestHeaders: ex.RequestHeaders})

	if !r.Has(KindSpuriousReply) || r.Succeeded {
		t.Errorf("violations = %v, Succeeded = %v; want a spurious reply and a failure", r.Violations, r.Succeeded)
	}
}

func TestClient_MutationAndImmediateResponse(t *testing.T) {
	mutating := replyEach(func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
		reply := continueReply(req)
		if h := reply.GetRequestHeaders(); h != nil {
			h.Response.HeaderMutation = &extprocpb.HeaderMutation{RemoveHeaders: []string{"authorization"}}
		}
		return reply
	})
	p := startProcessor(t, mutating)
	r := play(t, dial(t, p.addr, Config{}), restExchange())
	if !r.Has(KindMutation) {
		t.Errorf("violations = %v, want a mutation", r.Violations)
	}

	immediate := replyEach(func(req *extprocpb.ProcessingRequest) *extprocpb.ProcessingResponse {
		return &extprocpb.ProcessingResponse{Response: &extprocpb.ProcessingResponse_ImmediateResponse{
			ImmediateResponse: &extprocpb.ImmediateResponse{Status: statusCode(403)},
		}}
	})
	p = startProcessor(t, immediate)
	r = play(t, dial(t, p.addr, Config{}), restExchange())
	if !r.Has(KindImmediateResponse) || r.Succeeded || r.Status != 403 {
		t.Errorf("violations = %v, Succeeded = %v, Status = %d", r.Violations, r.Succeeded, r.Status)
	}
}

func TestClient_BufferedOverLimit(t *testing.T) {
	p := startProcessor(t, correct)
	mode := &filterpb.ProcessingMode{RequestBodyMode: filterpb.ProcessingMode_BUFFERED}
	c := dial(t, p.addr, Config{ProcessingMode: mode, BufferLimit: 32 << 10})

	for _, size := range []int{32 << 10, 32<<10 + 1} {
		ex := restExchange()
		ex.RequestBody = Chunks(bytes.Repeat([]byte("x"), size), 4)
		r := play(t, c, ex)
		requireNoViolations(t, r)

		if size <= 32<<10 {
			if !r.Succeeded || len(r.Sent) != 3 || len(r.Sent[1].GetRequestBody().GetBody()) != size {
				t.Errorf("%d B: Succeeded = %v, sent %v; want the whole body in one message", size, r.Succeeded, r.SentPhases())
			}
			continue
		}
		if r.Succeeded || r.Status != 413 || len(r.Sent) != 1 {
			t.Errorf("%d B: Succeeded = %v, Status = %d, sent %v; want 413 after the headers", size, r.Succeeded, r.Status, r.SentPhases())
		}
	}
}

func TestClient_ContentLength(t *testing.T) {
	p := startProcessor(t, correct)

	for _, keep := range []bool{false, true} {
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, AllowContentLengthHeader: keep})
		r := play(t, c, restExchange())
		got := slices.ContainsFunc(r.UpstreamHeaders, func(h Header) bool { return h.Name == "content-length" })
		if got != keep {
			t.Errorf("allow_content_length_header=%v: upstream has content-length = %v", keep, got)
		}
	}
}

func TestChunks(t *testing.T) {
	body := []byte("0123456789")
	chunks := Chunks(body, 3)
	if len(chunks) != 3 || string(concat(chunks)) != string(body) {
		t.Fatalf("Chunks = %q", chunks)
	}
	if len(chunks[0]) != 4 || len(chunks[2]) != 3 {
		t.Errorf("chunk sizes = %d, %d, %d; want 4, 3, 3", len(chunks[0]), len(chunks[1]), len(chunks[2]))
	}
	if Chunks(nil, 3) != nil {
		t.Errorf("Chunks(nil) is not nil")
	}
}

func TestClient_UnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "processor.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &testProcessor{}
	srv := grpc.NewServer()
	extprocpb.RegisterExternalProcessorServer(srv, &processorAdapter{fn: func(stream processStream) error {
		return correct(p, stream)
	}})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c := dial(t, "unix://"+path, Config{})

	r := play(t, c, restExchange())

	requireNoViolations(t, r)
	if len(p.messages()) != 2 || !r.Succeeded {
		t.Errorf("processor received %d messages, Succeeded = %v; want 2, true", len(p.messages()), r.Succeeded)
	}
}

func TestLoadConfig_Shipped(t *testing.T) {
	cfg, err := LoadConfig("../../deploy/envoy/envoy.yaml")
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}

	if !cfg.FailureModeAllow || !cfg.AllowModeOverride || !cfg.AllowContentLengthHeader {
		t.Errorf("FailureModeAllow = %v, AllowModeOverride = %v, AllowContentLengthHeader = %v; want all true",
			cfg.FailureModeAllow, cfg.AllowModeOverride, cfg.AllowContentLengthHeader)
	}
	if cfg.messageTimeout() != 200*time.Millisecond {
		t.Errorf("message timeout = %v, want 200ms", cfg.messageTimeout())
	}
	if cfg.BufferLimit != 1<<20 {
		t.Errorf("BufferLimit = %d, want the listener's 1 MiB", cfg.BufferLimit)
	}
	if forwarded("cookie", cfg.ForwardRules) || !forwarded("authorization", cfg.ForwardRules) {
		t.Errorf("forward rules: cookie forwarded = %v, authorization forwarded = %v; want false, true",
			forwarded("cookie", cfg.ForwardRules), forwarded("authorization", cfg.ForwardRules))
	}
	if len(cfg.AllowedOverrideModes) == 0 {
		t.Errorf("no allowed_override_modes")
	}
}

func TestLoadConfig_NoExtProc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, []byte("static_resources: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil {
		t.Errorf("LoadConfig of a bootstrap without ext_proc succeeded")
	}
}

// lateReplier waits on request headers until Envoy resets the stream, then
// tries to reply anyway, and reports how the stream looked to it.
type lateReplier struct {
	// reset receives once the stream's context is done.
	reset chan struct{}
	// sendErr receives the error of the late reply.
	sendErr chan error
}

func newLateReplier() *lateReplier {
	return &lateReplier{reset: make(chan struct{}, 1), sendErr: make(chan error, 1)}
}

func (l *lateReplier) handle(p *testProcessor, stream processStream) error {
	req, ok, err := p.recv(stream)
	if !ok {
		return err
	}
	select {
	case <-stream.Context().Done():
		l.reset <- struct{}{}
	case <-time.After(10 * time.Second):
	}
	l.sendErr <- stream.Send(continueReply(req))
	return nil
}

func TestClient_ResetAfterTimeout(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		l := newLateReplier()
		p := startProcessor(t, l.handle)
		c := dial(t, p.addr, Config{ProcessingMode: streamedRequest, MessageTimeout: 20 * time.Millisecond, FailureModeAllow: failOpen})
		ex := restExchange()
		resetBeforeNextStep := false
		ex.AfterMessage = func(s Step) {
			if s.Phase != PhaseRequestHeaders {
				return
			}
			// The processor can only see the reset here if the client
			// reset the stream at the timeout, not at the end of Play.
			select {
			case <-l.reset:
				resetBeforeNextStep = true
			case <-time.After(10 * time.Second):
			}
		}

		r := play(t, c, ex)

		if !resetBeforeNextStep {
			t.Errorf("failure_mode_allow=%v: the processor did not see the stream reset after the timeout", failOpen)
		}
		if err := <-l.sendErr; err == nil {
			t.Errorf("failure_mode_allow=%v: the late reply was sent on a reset stream", failOpen)
		}
		if !r.Has(KindTimeout) {
			t.Errorf("failure_mode_allow=%v: violations = %v, want a timeout", failOpen, r.Violations)
		}
		if r.Has(KindSpuriousReply) {
			t.Errorf("failure_mode_allow=%v: the late reply was counted as spurious, but Envoy discards it", failOpen)
		}
		if got := r.SentPhases(); !slices.Equal(got, []Phase{PhaseRequestHeaders}) {
			t.Errorf("failure_mode_allow=%v: sent phases = %v, want request headers only", failOpen, got)
		}
		if r.Succeeded != failOpen {
			t.Errorf("failure_mode_allow=%v: Succeeded = %v, Status = %d", failOpen, r.Succeeded, r.Status)
		}
		if !failOpen && r.Status != 504 {
			t.Errorf("failure_mode_allow=false: Status = %d, want 504", r.Status)
		}
	}
}
