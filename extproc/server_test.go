package extproc

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestServer_FastPath(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	c := h.dial(t, shippedConfig(t))
	body := [][]byte{[]byte(`{"inputs":[{"data":{"text":{"raw":"hi"}}}]}`)}

	cases := []struct {
		name string
		ex   *envoytest.Exchange
	}{
		{"not a predict", &envoytest.Exchange{
			RequestHeaders:  envoytest.Request("GET", "/healthz", "model.local", "", envoytest.Header{Name: "authorization", Value: aliceAuth}),
			ResponseHeaders: envoytest.Response(200),
		}},
		{"no caller", &envoytest.Exchange{
			RequestHeaders:  envoytest.Request("POST", restPath, "model.local", "application/json"),
			RequestBody:     body,
			ResponseHeaders: envoytest.Response(200),
		}},
		{"no collector", &envoytest.Exchange{
			RequestHeaders: envoytest.Request("POST", "/v2/users/clarifai/apps/main/models/other/outputs", "model.local", "application/json",
				envoytest.Header{Name: "authorization", Value: aliceAuth}),
			RequestBody:     body,
			ResponseHeaders: envoytest.Response(200),
		}},
		{"no body", &envoytest.Exchange{
			RequestHeaders:  envoytest.Request("POST", restPath, "model.local", "application/json", envoytest.Header{Name: "authorization", Value: aliceAuth}),
			ResponseHeaders: envoytest.Response(200),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Play(context.Background(), tc.ex)

			requireClean(t, tc.ex, r)
			if got := r.SentPhases(); !slices.Equal(got, []envoytest.Phase{envoytest.PhaseRequestHeaders}) {
				t.Errorf("sent phases = %v, want request headers only", got)
			}
			if !proto.Equal(r.Replies[0].GetModeOverride(), modeFor(capture.Plan{})) {
				t.Errorf("mode_override = %v, want the fast path's", r.Replies[0].GetModeOverride())
			}
			if r.Overrides != 1 {
				t.Errorf("Envoy applied %d overrides, want 1", r.Overrides)
			}
		})
	}

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("fast path captured %d records", len(records))
	}
}

func TestServer_RESTPredict(t *testing.T) {
	for _, collectOutputs := range []bool{false, true} {
		c1 := newCollector("c1")
		c1.CollectOutputs = collectOutputs
		h := newHarness(t, harnessConfig{collectors: []collector.Collector{c1}})
		ex, input := restPredict(t, 48<<10, 16<<10)

		r := h.dial(t, shippedConfig(t)).Play(context.Background(), ex)

		requireClean(t, ex, r)
		want := []envoytest.Phase{envoytest.PhaseRequestHeaders,
			envoytest.PhaseRequestBody, envoytest.PhaseRequestBody, envoytest.PhaseRequestBody,
			envoytest.PhaseResponseHeaders}
		if collectOutputs {
			want = append(want, envoytest.PhaseResponseBody)
		}
		if got := r.SentPhases(); !slices.Equal(got, want) {
			t.Errorf("collect_outputs=%v: sent phases = %v, want %v", collectOutputs, got, want)
		}
		requireOneReplyEach(t, r)

		records := h.finish(t)
		if len(records) != 1 {
			t.Fatalf("collect_outputs=%v: got %d records, want 1", collectOutputs, len(records))
		}
		requireInputFromREST(t, records[0], concat(ex.RequestBody))
		if !proto.Equal(records[0].GetInput(), input) {
			t.Errorf("captured input differs from the input sent")
		}
	}
}

func TestServer_GRPCPredict(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	request := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general",
		Inputs:    []*clarifaipb.Input{imageInput("img", 100_000)},
	}
	response := &clarifaipb.MultiOutputResponse{
		Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
		Outputs: []*clarifaipb.Output{{
			Id:     "o1",
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
			Input:  &clarifaipb.Input{Id: "img"},
			Model:  &clarifaipb.Model{Id: "general", UserId: "clarifai", AppId: "main", ModelVersion: &clarifaipb.ModelVersion{Id: "v1"}},
		}},
	}
	ex := &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", grpcPath, "model.local", "application/grpc",
			envoytest.Header{Name: "te", Value: "trailers"},
			envoytest.Header{Name: "authorization", Value: aliceAuth}),
		RequestBody:      envoytest.Chunks(grpcFrame(t, request), 4),
		RequestTrailers:  []envoytest.Header{{Name: "x-client-done", Value: "1"}},
		ResponseHeaders:  envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/grpc"}),
		ResponseBody:     envoytest.Chunks(grpcFrame(t, response), 3),
		ResponseTrailers: []envoytest.Header{{Name: "grpc-status", Value: "0"}, {Name: "grpc-message", Value: ""}},
	}

	r := h.dial(t, shippedConfig(t)).Play(context.Background(), ex)

	requireClean(t, ex, r)
	reqBody := envoytest.PhaseRequestBody
	respBody := envoytest.PhaseResponseBody
	want := []envoytest.Phase{envoytest.PhaseRequestHeaders, reqBody, reqBody, reqBody, reqBody, envoytest.PhaseRequestTrailers,
		envoytest.PhaseResponseHeaders, respBody, respBody, respBody, envoytest.PhaseResponseTrailers}
	if got := r.SentPhases(); !slices.Equal(got, want) {
		t.Errorf("sent phases = %v, want %v", got, want)
	}
	requireOneReplyEach(t, r)
	for _, m := range r.Sent {
		if m.GetRequestBody().GetEndOfStream() || m.GetResponseBody().GetEndOfStream() {
			t.Errorf("a body chunk has end_of_stream although trailers follow")
		}
	}

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	sent := &clarifaipb.PostModelOutputsRequest{}
	if err := proto.Unmarshal(concat(ex.RequestBody)[5:], sent); err != nil {
		t.Fatalf("parse the concatenated chunks: %v", err)
	}
	if !proto.Equal(records[0].GetInput(), sent.GetInputs()[0]) {
		t.Errorf("captured input differs from the input in the concatenated chunks")
	}
}

// requireOneReplyEach checks that message i got reply i of the matching
// type, a plain CONTINUE.
func requireOneReplyEach(t *testing.T, r *envoytest.Result) {
	t.Helper()
	if len(r.Replies) != len(r.Sent) {
		t.Fatalf("%d replies to %d messages", len(r.Replies), len(r.Sent))
	}
	for i, reply := range r.Replies {
		if got, want := envoytest.ReplyPhase(reply), envoytest.RequestPhase(r.Sent[i]); got != want {
			t.Errorf("reply %d is %s, want %s", i, got, want)
		}
		if m := envoytest.Mutation(reply); m != "" {
			t.Errorf("reply %d: %s", i, m)
		}
	}
}

// requireInputFromREST checks that the record's input is the first input of
// a REST predict body.
func requireInputFromREST(t *testing.T, rec *capturepb.Record, body []byte) {
	t.Helper()
	sent := &clarifaipb.PostModelOutputsRequest{}
	if err := protojson.Unmarshal(body, sent); err != nil {
		t.Fatalf("parse the concatenated chunks: %v", err)
	}
	if !proto.Equal(rec.GetInput(), sent.GetInputs()[0]) {
		t.Errorf("captured input differs from the input in the concatenated chunks")
	}
}

func TestServer_LargeImageBodies(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	c := h.dial(t, shippedConfig(t))
	sizes := []int{32 << 10, 32<<10 + 1, 1 << 20, 10 << 20}
	inputs := map[string]*clarifaipb.Input{}

	for _, size := range sizes {
		ex, input := restPredict(t, size, 16<<10)
		inputs[fmt.Sprintf("req-%d", size)] = input
		r := c.Play(context.Background(), ex)
		requireClean(t, ex, r)
		if r.Status != 200 {
			t.Errorf("%d B: status %d, want the upstream's 200", size, r.Status)
		}
	}

	records := h.finish(t)
	if len(records) != len(sizes) {
		t.Fatalf("got %d records, want %d", len(records), len(sizes))
	}
	for _, rec := range records {
		if !proto.Equal(rec.GetInput(), inputs[rec.GetRequestId()]) {
			t.Errorf("record %s: captured input differs from the input sent", rec.GetRequestId())
		}
	}
}

func TestServer_OverCapPassesThrough(t *testing.T) {
	const maxCapture = 1 << 20
	h := newHarness(t, harnessConfig{
		capture:    capture.Config{MaxCaptureBytes: maxCapture},
		collectors: []collector.Collector{newCollector("c1")},
	})
	c := h.dial(t, shippedConfig(t))

	// With content-length the engine gives up at the headers; without it
	// the body streams until it passes the cap.
	withLength, _ := restPredict(t, 2*maxCapture, 64<<10)
	withoutLength, _ := restPredict(t, 2*maxCapture, 64<<10)
	withoutLength.RequestHeaders = slices.DeleteFunc(withoutLength.RequestHeaders, func(h envoytest.Header) bool {
		return h.Name == "content-length"
	})
	for _, ex := range []*envoytest.Exchange{withLength, withoutLength} {
		r := c.Play(context.Background(), ex)
		requireClean(t, ex, r)
	}

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("captured %d records over the cap", len(records))
	}
	if got := h.captures(t, "too_large"); got != 2 {
		t.Errorf("too_large = %d, want 2", got)
	}
}

func TestServer_ReceiveLimit(t *testing.T) {
	grpcRequest := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general",
		Inputs:    []*clarifaipb.Input{imageInput("img", 5<<20)},
	}
	grpcPredict := func() *envoytest.Exchange {
		return &envoytest.Exchange{
			RequestHeaders: envoytest.Request("POST", grpcPath, "model.local", "application/grpc",
				envoytest.Header{Name: "te", Value: "trailers"}, envoytest.Header{Name: "authorization", Value: aliceAuth}),
			// One chunk: the worst case for the receive limit.
			RequestBody:      [][]byte{grpcFrame(t, grpcRequest)},
			ResponseHeaders:  envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/grpc"}),
			ResponseTrailers: []envoytest.Header{{Name: "grpc-status", Value: "0"}},
		}
	}

	t.Run("server options", func(t *testing.T) {
		h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
		c := h.dial(t, shippedConfig(t))
		json5, _ := restPredict(t, 5<<20, 5<<20)
		// 20 MiB is over the 16 MiB cap plus 1 MiB, so it comes in 5 MiB
		// chunks, each over gRPC's default 4 MiB limit.
		json20, _ := restPredict(t, 20<<20, 5<<20)

		for _, ex := range []*envoytest.Exchange{json5, json20, grpcPredict()} {
			r := c.Play(context.Background(), ex)
			requireClean(t, ex, r)
		}
		if got := h.captures(t, "too_large"); got != 1 {
			t.Errorf("too_large = %d, want 1 for the 20 MiB predict", got)
		}
	})

	t.Run("default gRPC limit", func(t *testing.T) {
		// The same 5 MiB chunk fails on gRPC's default 4 MiB limit, which
		// shows that the options above are what lets it through.
		h := newHarness(t, harnessConfig{
			collectors:    []collector.Collector{newCollector("c1")},
			serverOptions: []grpc.ServerOption{},
		})
		r := h.dial(t, shippedConfig(t)).Play(context.Background(), grpcPredict())
		if !r.Has(envoytest.KindStreamError) {
			t.Errorf("violations = %v, want a stream error", r.Violations)
		}
		if !r.Succeeded {
			t.Errorf("with failure_mode_allow the predict must still succeed, got %d", r.Status)
		}
	})
}

func TestServer_ProcessorDies(t *testing.T) {
	cases := []struct {
		name string
		// stopAt is the step after which the processor stops; nil stops it
		// before the request.
		stopAt      *envoytest.Step
		wantAborted bool
	}{
		{name: "before the request"},
		{name: "after request headers", stopAt: &envoytest.Step{Phase: envoytest.PhaseRequestHeaders}, wantAborted: true},
		{name: "between body chunks", stopAt: &envoytest.Step{Phase: envoytest.PhaseRequestBody, Chunk: 3}, wantAborted: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
			c := h.dial(t, shippedConfig(t))
			ex, _ := restPredict(t, 1<<20, 64<<10)
			if tc.stopAt == nil {
				h.srv.Stop()
			} else {
				ex.AfterMessage = func(s envoytest.Step) {
					if s == *tc.stopAt {
						h.srv.Stop()
					}
				}
			}

			r := c.Play(context.Background(), ex)

			if !r.Succeeded || r.Status != 200 || !r.FailedOpen {
				t.Errorf("Succeeded = %v, Status = %d, FailedOpen = %v; want the upstream's 200 after failing open", r.Succeeded, r.Status, r.FailedOpen)
			}
			if !slices.Equal(r.UpstreamBody, concat(ex.RequestBody)) {
				t.Errorf("upstream received a different body")
			}
			if records := h.finish(t); len(records) != 0 {
				t.Errorf("captured %d records from a broken exchange", len(records))
			}
			if got := h.captures(t, "aborted"); (got > 0) != tc.wantAborted {
				t.Errorf("aborted = %d, want counted: %v", got, tc.wantAborted)
			}
		})
	}
}

func TestServer_UnexpectedPhases(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	headers := &corepb.HeaderMap{Headers: []*corepb.HeaderValue{
		{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte(restPath)},
		{Key: "content-type", RawValue: []byte("application/json")}, {Key: "authorization", RawValue: []byte(aliceAuth)},
	}}
	body := &extprocpb.HttpBody{Body: []byte(`{"inputs":[{"data":{"text":{"raw":"hi"}}}]}`), EndOfStream: true}
	status := &corepb.HeaderMap{Headers: []*corepb.HeaderValue{{Key: ":status", RawValue: []byte("200")}}}

	cases := []struct {
		name     string
		messages []*extprocpb.ProcessingRequest
	}{
		{"response headers first", []*extprocpb.ProcessingRequest{
			{Request: &extprocpb.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocpb.HttpHeaders{Headers: status}}},
			{Request: &extprocpb.ProcessingRequest_ResponseBody{ResponseBody: &extprocpb.HttpBody{Body: []byte("{}"), EndOfStream: true}}},
		}},
		{"request body before request headers", []*extprocpb.ProcessingRequest{
			{Request: &extprocpb.ProcessingRequest_RequestBody{RequestBody: body}},
			{Request: &extprocpb.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocpb.HttpHeaders{Headers: headers}}},
			{Request: &extprocpb.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocpb.HttpHeaders{Headers: status, EndOfStream: true}}},
		}},
		{"trailers alone", []*extprocpb.ProcessingRequest{
			{Request: &extprocpb.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocpb.HttpTrailers{}}},
			{Request: &extprocpb.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocpb.HttpTrailers{}}},
		}},
		{"empty message", []*extprocpb.ProcessingRequest{{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			replies := playRaw(t, h.addr, tc.messages)
			for i, reply := range replies {
				want := envoytest.RequestPhase(tc.messages[i])
				if want == 0 {
					want = envoytest.PhaseRequestHeaders
				}
				if got := envoytest.ReplyPhase(reply); got != want {
					t.Errorf("reply %d is %s, want %s", i, got, want)
				}
				if m := envoytest.Mutation(reply); m != "" {
					t.Errorf("reply %d: %s", i, m)
				}
			}
		})
	}

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("captured %d records from streams that started wrong", len(records))
	}
}

// playRaw sends messages on one stream, one reply awaited per message, and
// ends the stream the way Envoy does.
func playRaw(t *testing.T, addr string, messages []*extprocpb.ProcessingRequest) []*extprocpb.ProcessingResponse {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := extprocpb.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var replies []*extprocpb.ProcessingResponse
	for i, m := range messages {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send message %d: %v", i, err)
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("no reply to message %d: %v", i, err)
		}
		replies = append(replies, reply)
	}
	stream.CloseSend()
	return replies
}

func TestServer_PhasesConfiguredSkip(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	// Envoy with overrides off sends the configured phases whatever the
	// server requests: here every header, trailer and body.
	cfg := shippedConfig(t)
	cfg.AllowModeOverride = false
	cfg.ProcessingMode = &filterpb.ProcessingMode{
		RequestBodyMode: filterpb.ProcessingMode_STREAMED, ResponseBodyMode: filterpb.ProcessingMode_STREAMED,
		RequestTrailerMode: filterpb.ProcessingMode_SEND, ResponseTrailerMode: filterpb.ProcessingMode_SEND,
	}
	c := h.dial(t, cfg)
	ex := &envoytest.Exchange{
		RequestHeaders:   envoytest.Request("POST", restPath, "model.local", "application/json"),
		RequestBody:      [][]byte{[]byte(`{"inputs":`), []byte(`[]}`)},
		ResponseHeaders:  envoytest.Response(200),
		ResponseBody:     [][]byte{[]byte(`{}`)},
		ResponseTrailers: []envoytest.Header{{Name: "x-done", Value: "1"}},
	}

	r := c.Play(context.Background(), ex)

	requireClean(t, ex, r)
	requireOneReplyEach(t, r)
	if len(r.Sent) != 6 || r.IgnoredOverrides != 1 {
		t.Errorf("sent %v with %d ignored overrides; want six messages and one ignored", r.SentPhases(), r.IgnoredOverrides)
	}
	if records := h.finish(t); len(records) != 0 {
		t.Errorf("captured %d records of a request without a caller", len(records))
	}
}

func TestServer_NoStateLeak(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	c := h.dial(t, shippedConfig(t))
	const streams = 200

	for range streams {
		ex := &envoytest.Exchange{
			RequestHeaders: envoytest.Request("GET", "/v2/models/general/outputs", "model.local", "",
				envoytest.Header{Name: "authorization", Value: aliceAuth}),
		}
		r := c.Play(context.Background(), ex)
		requireClean(t, ex, r)
		if !r.Sent[0].GetRequestHeaders().GetEndOfStream() {
			t.Fatal("a GET without a body must have end_of_stream set")
		}
	}

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("captured %d records", len(records))
	}
	// Every handler has returned once Stop does; each counts its end.
	if got := h.counter(t, metricStreams); got != streams {
		t.Errorf("%s = %d, want %d: some streams never ended", metricStreams, got, streams)
	}
	if got := h.captures(t, "aborted"); got != 0 {
		t.Errorf("aborted = %d, want 0: no exchange began", got)
	}
	if got := h.counter(t, metricStreams, "end=error"); got != 0 {
		t.Errorf("%s{end=error} = %d, want 0", metricStreams, got)
	}
}

func TestServer_ObservabilityMode(t *testing.T) {
	h := newHarness(t, harnessConfig{collectors: []collector.Collector{newCollector("c1")}})
	cfg := shippedConfig(t)
	// Envoy ignores mode_override in observability mode, so the operator
	// configures the phases to send.
	cfg.ObservabilityMode = true
	cfg.ProcessingMode = &filterpb.ProcessingMode{RequestBodyMode: filterpb.ProcessingMode_STREAMED}
	c := h.dial(t, cfg)
	ex, input := restPredict(t, 64<<10, 16<<10)
	noCaller, _ := restPredict(t, 64<<10, 16<<10)
	noCaller.RequestHeaders = noCaller.RequestHeaders[:5]

	for _, e := range []*envoytest.Exchange{ex, noCaller} {
		r := c.Play(context.Background(), e)
		requireClean(t, e, r)
		if len(r.Sent) != 6 {
			t.Errorf("sent %v, want headers, four chunks and response headers", r.SentPhases())
		}
		if len(r.Replies) != 0 {
			t.Errorf("server sent %d replies in observability mode, where Envoy ignores them", len(r.Replies))
		}
	}

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	if !proto.Equal(records[0].GetInput(), input) {
		t.Errorf("captured input differs from the input sent")
	}
}

func TestServer_PanicInBegin(t *testing.T) {
	h := newHarness(t, harnessConfig{callers: panickingCallers{}, collectors: []collector.Collector{newCollector("c1")}})
	ex, _ := restPredict(t, 4<<10, 1<<10)

	r := h.dial(t, shippedConfig(t)).Play(context.Background(), ex)

	requireClean(t, ex, r)
	if len(r.Sent) != 1 || !proto.Equal(r.Replies[0].GetModeOverride(), modeFor(capture.Plan{})) {
		t.Errorf("sent %v, override %v; want the fast path after a panic", r.SentPhases(), r.Replies[0].GetModeOverride())
	}
	h.finish(t)
	if got := h.counter(t, metricPanics, "phase=request_headers"); got != 1 {
		t.Errorf("%s = %d, want 1", metricPanics, got)
	}
}
