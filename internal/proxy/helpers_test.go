package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
)

// Compile-time checks that the fakes implement the engine's interfaces.
var (
	_ capture.CallerResolver  = fakeCallers{}
	_ capture.CandidateFinder = (*fakeFinder)(nil)
	_ capture.Sink            = (*recordingSink)(nil)
	_ Engine                  = (*capture.Engine)(nil)
)

// callerHeader names the caller in test requests, standing in for the
// identity package's API key lookup.
const callerHeader = "x-test-caller"

type fakeCallers struct{}

func (fakeCallers) ResolveCaller(_ context.Context, req capture.RequestInfo) (string, bool) {
	caller := req.Headers.Get(callerHeader)
	return caller, caller != ""
}

// fakeFinder applies collector.Store.MatchCollectors' rules to a fixed list.
type fakeFinder struct {
	collectors []collector.Collector
}

func (f *fakeFinder) Candidates(_ context.Context, caller string, model collector.ModelRef) []collector.Collector {
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

// recordingSink keeps every offered record.
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

// demoCollector collects every predict of the demo server's model.
func demoCollector(modelID string) collector.Collector {
	return collector.Collector{
		UserID: "owner", AppID: "dest", ID: "c-" + modelID,
		Model:        collector.ModelRef{UserID: "demo", AppID: "main", ModelID: modelID},
		RandomSample: 1,
	}
}

// harness is a capture engine with fakes around it, a proxy in front of an
// upstream, and one metric reader for both.
type harness struct {
	engine   *capture.Engine
	sink     *recordingSink
	reader   *sdkmetric.ManualReader
	proxy    *Proxy
	server   *httptest.Server
	closeMu  sync.Mutex
	finished bool
}

type harnessConfig struct {
	upstream        string
	collectors      []collector.Collector
	maxCaptureBytes int64
	callers         capture.CallerResolver
}

func newHarness(t testing.TB, cfg harnessConfig) *harness {
	t.Helper()
	h := &harness{sink: &recordingSink{}, reader: sdkmetric.NewManualReader()}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader)).Meter("test")

	callers := cfg.callers
	if callers == nil {
		callers = fakeCallers{}
	}
	engine, err := capture.New(capture.Config{MaxCaptureBytes: cfg.maxCaptureBytes}, capture.Deps{
		Callers:    callers,
		Collectors: &fakeFinder{collectors: cfg.collectors},
		Sink:       h.sink,
		Meter:      meter,
		Logger:     testLogger(t),
	})
	if err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	engine.Start(context.Background())
	h.engine = engine

	h.proxy, h.server = startProxy(t, cfg.upstream, engine, meter)
	t.Cleanup(func() { h.finish(t) })
	return h
}

// finish closes the engine, which drains its assemblers into the sink, and
// returns every record.
func (h *harness) finish(t testing.TB) []*capturepb.Record {
	t.Helper()
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if !h.finished {
		h.finished = true
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
	return readCounter(t, h.reader, name, labels...)
}

func readCounter(t testing.TB, reader *sdkmetric.ManualReader, name string, labels ...string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
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

// startProxy serves a Proxy in front of upstream on 127.0.0.1 with HTTP/1.1
// and unencrypted HTTP/2.
func startProxy(t testing.TB, upstream string, engine Engine, meter metric.Meter) (*Proxy, *httptest.Server) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", upstream, err)
	}
	p, err := New(Config{Upstream: u}, engine, testLogger(t), meter)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	server := startH2CServer(t, p)
	t.Cleanup(p.Close)
	return p, server
}

// startH2CServer serves handler on 127.0.0.1 with HTTP/1.1 and unencrypted
// HTTP/2.
func startH2CServer(t testing.TB, handler http.Handler) *httptest.Server {
	t.Helper()
	server := httptest.NewUnstartedServer(nil)
	server.Config = NewServer(handler, testLogger(t))
	server.Start()
	t.Cleanup(server.Close)
	return server
}

// testLogger writes to the test log, which is shown only on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// recordedRequest is what an upstream received.
type recordedRequest struct {
	method, uri, host string
	header            http.Header
	body              []byte
	trailer           http.Header
}

// recorder records every request, then passes it to next with the body
// restored.
type recorder struct {
	next     http.Handler
	mu       sync.Mutex
	requests []recordedRequest
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	rec.requests = append(rec.requests, recordedRequest{
		method: r.Method, uri: r.RequestURI, host: r.Host,
		header: r.Header.Clone(), body: body, trailer: r.Trailer.Clone(),
	})
	rec.mu.Unlock()

	r.Body = io.NopCloser(bytes.NewReader(body))
	rec.next.ServeHTTP(w, r)
}

func (rec *recorder) last(t testing.TB) recordedRequest {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.requests) == 0 {
		t.Fatal("the upstream received no request")
	}
	return rec.requests[len(rec.requests)-1]
}

// endToEndHeaders returns h without hop-by-hop, forwarding and Date headers,
// which a proxy may legitimately change.
func endToEndHeaders(h http.Header) http.Header {
	out := h.Clone()
	for _, name := range []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "Date",
	} {
		out.Del(name)
	}
	return out
}
