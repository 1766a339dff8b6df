package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Compile-time checks that the fakes implement the engine's interfaces.
var (
	_ Headers         = headers(nil)
	_ CallerResolver  = (*fakeCallers)(nil)
	_ CandidateFinder = (*fakeFinder)(nil)
	_ Sink            = (*recordingSink)(nil)
)

// headers is a header map with lowercase names.
type headers map[string]string

func (h headers) Get(name string) string { return h[name] }

// fakeCallers resolves the caller from the test-only x-test-caller header,
// standing in for the identity package.
type fakeCallers struct{}

func (fakeCallers) ResolveCaller(_ context.Context, req RequestInfo) (string, bool) {
	caller := req.Headers.Get("x-test-caller")
	return caller, caller != ""
}

// fakeFinder applies collector.Store.MatchCollectors' rules to a fixed list.
type fakeFinder struct {
	mu         sync.Mutex
	collectors []collector.Collector
	calls      int
}

func (f *fakeFinder) Candidates(_ context.Context, caller string, model collector.ModelRef) []collector.Collector {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++

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

func (f *fakeFinder) set(collectors ...collector.Collector) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.collectors = collectors
}

// recordingSink keeps every offered record; panicOnce makes the first Offer
// panic.
type recordingSink struct {
	mu        sync.Mutex
	records   []*capturepb.Record
	panicOnce bool
}

func (s *recordingSink) Offer(rec *capturepb.Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.panicOnce {
		s.panicOnce = false
		panic("sink failed")
	}
	s.records = append(s.records, rec)
	return true
}

func (s *recordingSink) all() []*capturepb.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*capturepb.Record(nil), s.records...)
}

// harness is an engine with fakes around it and a metric reader.
type harness struct {
	engine *Engine
	finder *fakeFinder
	sink   *recordingSink
	reader *sdkmetric.ManualReader
	closed bool
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newHarness builds and starts an engine. deps may set Rand; the rest is
// filled in.
func newHarness(t testing.TB, cfg Config, deps Deps, collectors ...collector.Collector) *harness {
	t.Helper()
	h := newStoppedHarness(t, cfg, deps, collectors...)
	h.engine.Start(context.Background())
	return h
}

// newStoppedHarness builds an engine without starting its assemblers, so
// finished exchanges stay queued until finish.
func newStoppedHarness(t testing.TB, cfg Config, deps Deps, collectors ...collector.Collector) *harness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	h := &harness{
		finder: &fakeFinder{collectors: collectors},
		sink:   &recordingSink{},
		reader: reader,
	}
	deps.Callers = fakeCallers{}
	deps.Collectors = h.finder
	deps.Sink = h.sink
	deps.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	if deps.Now == nil {
		deps.Now = func() time.Time { return testNow }
	}

	engine, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.engine = engine
	t.Cleanup(func() { h.finish(t) })
	return h
}

// finish closes the engine, which drains the assembler queue into the sink.
func (h *harness) finish(t testing.TB) []*capturepb.Record {
	t.Helper()
	if !h.closed {
		h.closed = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.engine.Close(ctx); err != nil {
			t.Fatalf("Engine.Close: %v", err)
		}
	}
	return h.sink.all()
}

// counter returns the sum of a counter's points whose attributes include
// every key=value pair in labels.
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

// captures returns collectord_captures_total for one outcome and, when
// given, one reason.
func (h *harness) captures(t testing.TB, outcome string, reason ...string) int64 {
	t.Helper()
	labels := []string{"outcome=" + outcome}
	if len(reason) > 0 {
		labels = append(labels, "reason="+reason[0])
	}
	return h.counter(t, "collectord_captures_total", labels...)
}

// exchange describes one predict as Envoy would deliver it.
type exchange struct {
	method, path, contentType string
	caller, requestID         string
	requestHeaders            headers
	requestBody               []byte
	chunkSize                 int

	status          string
	responseHeaders headers
	responseBody    []byte
	// grpcStatus goes in the response trailers; trailersOnly puts it in
	// the response headers instead and sends no body.
	grpcStatus   string
	trailersOnly bool
}

// run drives one exchange through Begin, the body chunks, the response and
// Close, honouring the plan as Envoy does. It returns the exchange (nil on
// the fast path).
func (h *harness) run(ex exchange) *Exchange {
	reqHeaders := headers{":method": "POST", ":path": ex.path, "content-type": ex.contentType}
	if ex.method != "" {
		reqHeaders[":method"] = ex.method
	}
	if ex.caller != "" {
		reqHeaders["x-test-caller"] = ex.caller
	}
	if ex.requestID != "" {
		reqHeaders["x-request-id"] = ex.requestID
	}
	for k, v := range ex.requestHeaders {
		reqHeaders[k] = v
	}

	x := h.engine.Begin(context.Background(), RequestInfo{Headers: reqHeaders, EndOfStream: len(ex.requestBody) == 0})
	if x == nil {
		return nil
	}
	plan := x.Plan()
	grpc := strings.HasPrefix(ex.contentType, "application/grpc")

	sendChunks(ex.requestBody, ex.chunkSize, x.RequestBody, true)

	respHeaders := headers{":status": ex.status}
	for k, v := range ex.responseHeaders {
		respHeaders[k] = v
	}
	if ex.trailersOnly {
		respHeaders["grpc-status"] = ex.grpcStatus
		x.ResponseHeaders(respHeaders, true)
		x.Close()
		return x
	}

	bodyEnds := !grpc && len(ex.responseBody) > 0
	x.ResponseHeaders(respHeaders, !grpc && len(ex.responseBody) == 0)
	if plan.ResponseBody && len(ex.responseBody) > 0 {
		// Envoy sets end_of_stream on the last chunk only when no trailers
		// follow, and gRPC responses always end with trailers.
		sendChunks(ex.responseBody, ex.chunkSize, x.ResponseBody, bodyEnds)
	}
	if grpc && plan.ResponseTrailers {
		x.ResponseTrailers(headers{"grpc-status": ex.grpcStatus})
	}
	x.Close()
	return x
}

// sendChunks splits body into chunks of size (all at once when size is 0),
// reusing one buffer as Envoy's client would.
func sendChunks(body []byte, size int, send func([]byte, bool), endOnLast bool) {
	if size <= 0 {
		size = len(body)
	}
	buf := make([]byte, size)
	for start := 0; start < len(body); start += size {
		end := min(start+size, len(body))
		n := copy(buf, body[start:end])
		send(buf[:n], endOnLast && end == len(body))
		for i := range buf {
			buf[i] = 0xAA // the engine must have copied the chunk
		}
	}
}

// restJSON marshals a predict request or response as Clarifai's REST API
// does.
func restJSON(t testing.TB, m proto.Message) []byte {
	t.Helper()
	body, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return body
}

// grpcFrame wraps a message in a gRPC length-prefixed frame, compressed
// with gzip when compress is set.
func grpcFrame(t testing.TB, m proto.Message, compress bool) []byte {
	t.Helper()
	payload, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	flag := byte(0)
	if compress {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(payload); err != nil {
			t.Fatalf("gzip: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("gzip: %v", err)
		}
		payload, flag = buf.Bytes(), 1
	}
	frame := make([]byte, 5, 5+len(payload))
	frame[0] = flag
	binary.BigEndian.PutUint32(frame[1:], uint32(len(payload)))
	return append(frame, payload...)
}

// testImage reads a PNG from the Go distribution's image test data.
func testImage(t testing.TB) []byte {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "src", "image", "testdata", "video-001.png")
	image, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read test image: %v", err)
	}
	return image
}

func textInput(id, text string) *clarifaipb.Input {
	return &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: text}}}
}

// successResponse returns a SUCCESS output with one concept for every
// input, naming version as the model version that ran.
func successResponse(version string, inputs ...*clarifaipb.Input) *clarifaipb.MultiOutputResponse {
	resp := &clarifaipb.MultiOutputResponse{Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS}}
	for i, input := range inputs {
		resp.Outputs = append(resp.Outputs, &clarifaipb.Output{
			Id:     fmt.Sprintf("out-%d", i),
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
			Model: &clarifaipb.Model{
				Id: "general", UserId: "clarifai", AppId: "main",
				ModelVersion: &clarifaipb.ModelVersion{Id: version},
			},
			Input: &clarifaipb.Input{Id: input.GetId()},
			Data: &clarifaipb.Data{Concepts: []*clarifaipb.Concept{
				{Id: fmt.Sprintf("concept-%d", i), Name: "cat", Value: 0.75},
			}},
		})
	}
	return resp
}

// generalModel is the source model most tests collect from.
var generalModel = collector.ModelRef{UserID: "clarifai", AppID: "main", ModelID: "general"}

const generalPath = "/v2/users/clarifai/apps/main/models/general/outputs"

// newCollector returns an active collector of generalModel owned by
// owner/dest.
func newCollector(id string) collector.Collector {
	return collector.Collector{
		UserID:        "owner",
		AppID:         "dest",
		ID:            id,
		Model:         generalModel,
		PostInputsKey: "post-inputs-secret-" + id,
		Version:       1,
	}
}
