package extproc

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/envoytest"
)

// fakeExchange records the calls the server makes and panics on the request
// body chunk panicAt (counting from 1; 0 never panics).
type fakeExchange struct {
	mu      sync.Mutex
	plan    capture.Plan
	panicAt int
	chunks  int
	calls   []string
}

func (f *fakeExchange) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeExchange) Plan() capture.Plan { return f.plan }

func (f *fakeExchange) RequestBody(chunk []byte, endOfStream bool) {
	f.record("request_body")
	f.chunks++
	if f.chunks == f.panicAt {
		panic("corrupt state")
	}
}

func (f *fakeExchange) RequestTrailers(capture.Headers)       { f.record("request_trailers") }
func (f *fakeExchange) ResponseHeaders(capture.Headers, bool) { f.record("response_headers") }
func (f *fakeExchange) ResponseBody([]byte, bool)             { f.record("response_body") }
func (f *fakeExchange) ResponseTrailers(capture.Headers)      { f.record("response_trailers") }
func (f *fakeExchange) Close()                                { f.record("close") }
func (f *fakeExchange) Abandon()                              { f.record("abandon") }
func (f *fakeExchange) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// serveFake serves a server whose every exchange is x, and returns its
// address and metric reader.
func serveFake(t *testing.T, x *fakeExchange) (string, *harness) {
	t.Helper()
	h := &harness{reader: sdkmetric.NewManualReader()}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)).Meter("test")
	begin := func(context.Context, capture.RequestInfo) exchange { return x }
	server, err := newServer(Config{}, begin, slog.New(slog.DiscardHandler), meter)
	if err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.srv = grpc.NewServer(append(ServerOptions(0), grpc.WaitForHandlers(true))...)
	server.Register(h.srv)
	go h.srv.Serve(lis)
	t.Cleanup(h.srv.Stop)
	return lis.Addr().String(), h
}

func TestServer_PanicMidBody(t *testing.T) {
	x := &fakeExchange{plan: capture.Plan{RequestBody: true, ResponseHeaders: true}, panicAt: 2}
	addr, h := serveFake(t, x)
	// Waiting for the server to end the stream lets the client see its
	// status: anything but OK is a stream_error violation.
	cfg := shippedConfig(t)
	cfg.AwaitClose = 10 * time.Second
	c, err := envoytest.Dial(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ex, _ := restPredict(t, 4<<10, 1<<10)

	r := c.Play(context.Background(), ex)
	h.srv.Stop()

	requireClean(t, ex, r)
	requireOneReplyEach(t, r)
	// The exchange saw the chunks up to the panic, then it was abandoned,
	// so neither the later phases nor Close reach it.
	if got, want := x.recorded(), []string{"request_body", "request_body", "abandon"}; !slices.Equal(got, want) {
		t.Errorf("exchange calls = %v, want %v", got, want)
	}
	if got := h.counter(t, metricPanics, "phase=request_body"); got != 1 {
		t.Errorf("%s = %d, want 1", metricPanics, got)
	}
	if got := h.counter(t, metricStreams, "end=eof"); got != 1 {
		t.Errorf("%s{end=eof} = %d, want 1", metricStreams, got)
	}
	if got := h.counter(t, metricMessages); got != int64(len(r.Sent)) {
		t.Errorf("%s = %d, want %d", metricMessages, got, len(r.Sent))
	}
}

func TestServer_ClosesExchangeOnStreamEnd(t *testing.T) {
	x := &fakeExchange{plan: capture.Plan{RequestBody: true, RequestTrailers: true, ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true}}
	addr, h := serveFake(t, x)
	c, err := envoytest.Dial(addr, shippedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ex, _ := restPredict(t, 2<<10, 1<<10)
	ex.RequestTrailers = []envoytest.Header{{Name: "x-done", Value: "1"}}
	ex.ResponseTrailers = []envoytest.Header{{Name: "x-done", Value: "1"}}

	r := c.Play(context.Background(), ex)
	h.srv.Stop()

	requireClean(t, ex, r)
	want := []string{"request_body", "request_body", "request_trailers", "response_headers", "response_body", "response_trailers", "close"}
	if got := x.recorded(); !slices.Equal(got, want) {
		t.Errorf("exchange calls = %v, want %v", got, want)
	}
}

func TestHeaderMap_Get(t *testing.T) {
	m := headerMap{&corepb.HeaderMap{Headers: []*corepb.HeaderValue{
		{Key: ":path", RawValue: []byte("/v2/models/m/outputs")},
		{Key: "x-old", Value: "from value"},
		{Key: "Authorization", RawValue: []byte("Key first")},
		{Key: "authorization", RawValue: []byte("Key second")},
		{Key: "x-both", Value: "ignored", RawValue: []byte("raw wins")},
	}}}

	cases := map[string]string{
		":path":         "/v2/models/m/outputs",
		"x-old":         "from value",
		"authorization": "Key first",
		"x-both":        "raw wins",
		"missing":       "",
	}
	for name, want := range cases {
		if got := m.Get(name); got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
	if got := (headerMap{}).Get("x"); got != "" {
		t.Errorf("Get on a nil map = %q", got)
	}
}

func TestMetadataOf(t *testing.T) {
	jwt, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	other, _ := structpb.NewStruct(map[string]any{"k": "v"})
	md := &corepb.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.filters.http.jwt_authn": jwt, "other": other,
	}}

	all := metadataOf(md, nil)
	if len(all) != 2 || all["envoy.filters.http.jwt_authn"]["sub"] != "alice" {
		t.Errorf("metadataOf(all) = %v", all)
	}
	some := metadataOf(md, []string{"envoy.filters.http.jwt_authn"})
	if len(some) != 1 || some["other"] != nil {
		t.Errorf("metadataOf(jwt_authn) = %v", some)
	}
	if got := metadataOf(nil, nil); got != nil {
		t.Errorf("metadataOf(nil) = %v, want nil", got)
	}
}

func TestModeFor(t *testing.T) {
	fast := modeFor(capture.Plan{})
	want := &filterpb.ProcessingMode{
		ResponseHeaderMode: filterpb.ProcessingMode_SKIP, RequestTrailerMode: filterpb.ProcessingMode_SKIP, ResponseTrailerMode: filterpb.ProcessingMode_SKIP,
	}
	if !proto.Equal(fast, want) {
		t.Errorf("fast path mode = %v, want %v", fast, want)
	}

	body := modeFor(capture.Plan{RequestBody: true})
	if body.GetRequestBodyMode() != filterpb.ProcessingMode_STREAMED || body.GetRequestTrailerMode() != filterpb.ProcessingMode_SEND {
		t.Errorf("request body plan = %v, want STREAMED body and trailers", body)
	}
	response := modeFor(capture.Plan{ResponseBody: true})
	if response.GetResponseHeaderMode() != filterpb.ProcessingMode_SEND || response.GetResponseBodyMode() != filterpb.ProcessingMode_STREAMED ||
		response.GetResponseTrailerMode() != filterpb.ProcessingMode_SEND {
		t.Errorf("response body plan = %v, want headers, STREAMED body and trailers", response)
	}
}

func TestOverrideModes(t *testing.T) {
	modes := OverrideModes()

	for i := range planCount {
		plan := planAt(i)
		if planIndex(plan) != i {
			t.Fatalf("planIndex(planAt(%d)) = %d", i, planIndex(plan))
		}
		if !containsMode(modes, modeFor(plan)) {
			t.Errorf("OverrideModes lacks the mode of %+v", plan)
		}
	}
	for _, m := range modes {
		for _, b := range []filterpb.ProcessingMode_BodySendMode{m.GetRequestBodyMode(), m.GetResponseBodyMode()} {
			if b != filterpb.ProcessingMode_NONE && b != filterpb.ProcessingMode_STREAMED {
				t.Errorf("mode %v uses body mode %s", m, b)
			}
		}
		if m.GetRequestHeaderMode() != filterpb.ProcessingMode_DEFAULT {
			t.Errorf("mode %v sets request_header_mode, which Envoy ignores in overrides", m)
		}
	}
	if len(modes) != 12 {
		t.Errorf("OverrideModes has %d modes, want 12 (3 request sides x 4 response sides)", len(modes))
	}
}
