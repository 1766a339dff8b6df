package extproc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Compile-time checks that the fakes implement the engine's interfaces.
var (
	_ capture.CallerResolver  = keyCallers{}
	_ capture.CandidateFinder = (*fixedFinder)(nil)
	_ capture.Sink            = (*recordingSink)(nil)
)

// keyCallers resolves "authorization: Key <user>-key" to <user>, standing in
// for the identity package.
type keyCallers struct{}

func (keyCallers) ResolveCaller(_ context.Context, req capture.RequestInfo) (string, bool) {
	user, ok := strings.CutSuffix(strings.TrimPrefix(req.Headers.Get("authorization"), "Key "), "-key")
	return user, ok && user != ""
}

// panickingCallers fails inside Begin.
type panickingCallers struct{}

func (panickingCallers) ResolveCaller(context.Context, capture.RequestInfo) (string, bool) {
	panic("identity lookup failed")
}

// fixedFinder applies collector.Store.MatchCollectors' rules to a fixed list.
type fixedFinder struct {
	collectors []collector.Collector
}

func (f *fixedFinder) Candidates(_ context.Context, caller string, model collector.ModelRef) []collector.Collector {
	var out []collector.Collector
	for _, c := range f.collectors {
		if c.Paused || (c.CallerUserID != "" && c.CallerUserID != caller) {
			continue
		}
		if model.ModelID != "" && (c.Model.UserID != model.UserID || c.Model.AppID != model.AppID || c.Model.ModelID != model.ModelID) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// recordingSink keeps every record offered.
type recordingSink struct {
	mu      sync.Mutex
	records []*capturepb.Record
}

func (s *recordingSink) Offer(rec *capturepb.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, rec)
	return true
}

func (s *recordingSink) all() []*capturepb.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*capturepb.Record(nil), s.records...)
}

// generalModel is the model the test collector copies from.
var generalModel = collector.ModelRef{UserID: "clarifai", AppID: "main", ModelID: "general"}

const (
	restPath  = "/v2/users/clarifai/apps/main/models/general/outputs"
	grpcPath  = "/clarifai.api.V2/PostModelOutputs"
	aliceAuth = "Key alice-key"
)

func newCollector(id string) collector.Collector {
	return collector.Collector{
		UserID: "owner", AppID: "dest", ID: id,
		Model:         generalModel,
		PostInputsKey: "post-inputs-secret",
		Version:       1,
	}
}

// harness runs the real capture engine behind the real server on loopback.
type harness struct {
	engine *capture.Engine
	sink   *recordingSink
	reader *sdkmetric.ManualReader
	srv    *grpc.Server
	addr   string
	logs   *syncBuffer

	stopOnce sync.Once
	records  []*capturepb.Record
}

type harnessConfig struct {
	server     Config
	capture    capture.Config
	callers    capture.CallerResolver
	collectors []collector.Collector
	// serverOptions replaces ServerOptions(capture.MaxCaptureBytes).
	serverOptions []grpc.ServerOption
}

func newHarness(t testing.TB, hc harnessConfig) *harness {
	t.Helper()
	h := &harness{sink: &recordingSink{}, reader: sdkmetric.NewManualReader(), logs: &syncBuffer{}}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)).Meter("test")
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if hc.callers == nil {
		hc.callers = keyCallers{}
	}

	engine, err := capture.New(hc.capture, capture.Deps{
		Callers:    hc.callers,
		Collectors: &fixedFinder{collectors: hc.collectors},
		Sink:       h.sink,
		Meter:      meter,
		Logger:     logger,
		Rand:       func() float64 { return 0 },
	})
	if err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	engine.Start(context.Background())
	h.engine = engine

	server, err := New(hc.server, engine, logger, meter)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.serve(t, server, hc)
	t.Cleanup(func() {
		h.finish(t)
		if t.Failed() {
			t.Logf("server logs:\n%s", h.logs.String())
		}
	})
	return h
}

func (h *harness) serve(t testing.TB, server *Server, hc harnessConfig) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	opts := hc.serverOptions
	if opts == nil {
		opts = ServerOptions(hc.capture.MaxCaptureBytes)
	}
	// Stop then waits for the stream handlers, so every exchange is closed
	// before the test reads the records.
	h.srv = grpc.NewServer(append(opts, grpc.WaitForHandlers(true))...)
	server.Register(h.srv)
	h.addr = lis.Addr().String()
	go h.srv.Serve(lis)
}

// finish stops the server, waits for its streams, and drains the engine into
// the sink. It returns every record.
func (h *harness) finish(t testing.TB) []*capturepb.Record {
	t.Helper()
	h.stopOnce.Do(func() {
		h.srv.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.engine.Close(ctx); err != nil {
			t.Errorf("Engine.Close: %v", err)
		}
		h.records = h.sink.all()
	})
	return h.records
}

// counter sums a counter's points whose attributes include every key=value
// pair in labels.
func (h *harness) counter(t testing.TB, name string, labels ...string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var total int64
	for _, scope := range rm.ScopeMetrics {
		for _, m := range scope.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("metric %s is %T, not an int64 sum", name, m.Data)
			}
			for _, point := range sum.DataPoints {
				if hasLabels(point.Attributes.ToSlice(), labels) {
					total += point.Value
				}
			}
		}
	}
	return total
}

func hasLabels(attrs []attribute.KeyValue, labels []string) bool {
	for _, label := range labels {
		key, value, _ := strings.Cut(label, "=")
		found := false
		for _, a := range attrs {
			if string(a.Key) == key && a.Value.Emit() == value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (h *harness) captures(t testing.TB, outcome string) int64 {
	t.Helper()
	return h.counter(t, "collectord_captures_total", "outcome="+outcome)
}

// shippedConfig loads the ext_proc settings of the shipped Envoy config.
//
// The message timeout is raised from 200 ms to 10 s: these tests check the
// protocol, not the speed of a loaded test machine, and a timeout would turn
// a slow run into a false failure. Benchmarks measure the latency.
func shippedConfig(t testing.TB) envoytest.Config {
	t.Helper()
	cfg, err := envoytest.LoadConfig("../deploy/envoy/envoy.yaml")
	if err != nil {
		t.Fatalf("load the shipped Envoy config: %v", err)
	}
	cfg.MessageTimeout = 10 * time.Second
	return cfg
}

func (h *harness) dial(t testing.TB, cfg envoytest.Config) *envoytest.Client {
	t.Helper()
	c, err := envoytest.Dial(h.addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// requireClean fails the test on any protocol violation and on a request that
// did not reach the client unchanged.
func requireClean(t testing.TB, ex *envoytest.Exchange, r *envoytest.Result) {
	t.Helper()
	for _, v := range r.Violations {
		t.Errorf("violation: %s", v)
	}
	if len(r.Sent) > 0 && len(r.Replies) != len(r.Sent) && !r.Sent[0].GetObservabilityMode() {
		t.Errorf("%d replies to %d messages", len(r.Replies), len(r.Sent))
	}
	if !r.Succeeded {
		t.Fatalf("request failed with status %d", r.Status)
	}
	if !bytes.Equal(r.UpstreamBody, concat(ex.RequestBody)) {
		t.Errorf("upstream received a different request body")
	}
	if !bytes.Equal(r.ClientBody, concat(ex.ResponseBody)) {
		t.Errorf("client received a different response body")
	}
	if !headersEqual(r.UpstreamHeaders, ex.RequestHeaders) {
		t.Errorf("upstream headers = %v, want %v", r.UpstreamHeaders, ex.RequestHeaders)
	}
}

func headersEqual(a, b []envoytest.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func concat(chunks [][]byte) []byte {
	var out []byte
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

// imageInput returns an input whose image is n bytes of a repeating pattern.
func imageInput(id string, n int) *clarifaipb.Input {
	image := bytes.Repeat([]byte{0x89, 'P', 'N', 'G', 0, 1, 2, 3}, n/8+1)[:n]
	return &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}}
}

// restBody returns a REST predict JSON body of exactly size bytes with one
// base64 image input, padded with JSON whitespace. It also returns the input
// the body carries.
func restBody(t testing.TB, size int) ([]byte, *clarifaipb.Input) {
	t.Helper()
	const prefix, suffix = `{"inputs":[{"id":"img","data":{"image":{"base64":"`, `"}}}]}`
	room := size - len(prefix) - len(suffix)
	if room < 4 {
		t.Fatalf("a %d B body is too small for an image", size)
	}
	raw := room / 4 * 3
	input := imageInput("img", raw)
	encoded := base64.StdEncoding.EncodeToString(input.GetData().GetImage().GetBase64())
	body := prefix + encoded + suffix + strings.Repeat(" ", size-len(prefix)-len(encoded)-len(suffix))
	if len(body) != size {
		t.Fatalf("built a %d B body, want %d", len(body), size)
	}
	return []byte(body), input
}

// grpcFrame wraps m in an uncompressed gRPC length-prefixed frame.
func grpcFrame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	payload, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	frame := make([]byte, 5, 5+len(payload))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(payload)))
	return append(frame, payload...)
}

// restPredict is a matching REST predict whose body comes in chunks of
// chunkSize bytes and whose response is a SUCCESS.
func restPredict(t testing.TB, size, chunkSize int) (*envoytest.Exchange, *clarifaipb.Input) {
	t.Helper()
	body, input := restBody(t, size)
	return &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", restPath, "model.local", "application/json",
			envoytest.Header{Name: "authorization", Value: aliceAuth},
			envoytest.Header{Name: "content-length", Value: fmt.Sprint(len(body))},
			envoytest.Header{Name: "x-request-id", Value: fmt.Sprintf("req-%d", size)}),
		RequestBody:     chunked(body, chunkSize),
		ResponseHeaders: envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    [][]byte{[]byte(`{"status":{"code":10000,"description":"Ok"},"outputs":[{"id":"o1","status":{"code":10000},"input":{"id":"img"}}]}`)},
	}, input
}

// chunked splits body into chunks of size bytes, the last one shorter.
func chunked(body []byte, size int) [][]byte {
	var out [][]byte
	for len(body) > size {
		out = append(out, body[:size])
		body = body[size:]
	}
	return append(out, body)
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
