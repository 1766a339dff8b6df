package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// memInputs is an in-memory localapp.InputStore that records every insert.
type memInputs struct {
	mu      sync.Mutex
	inputs  map[string]map[string]*clarifaipb.Input // "user/app" -> id -> input
	stored  map[string]int                          // id -> successful inserts
	batches []int
	// apps, when set, lists the only apps that exist.
	apps map[string]bool
}

var _ localapp.InputStore = (*memInputs)(nil)

func newMemInputs() *memInputs {
	return &memInputs{inputs: map[string]map[string]*clarifaipb.Input{}, stored: map[string]int{}}
}

func (m *memInputs) InsertInputs(_ context.Context, userID, appID string, inputs []*clarifaipb.Input) []error {
	m.mu.Lock()
	defer m.mu.Unlock()

	m.batches = append(m.batches, len(inputs))
	key := userID + "/" + appID
	errs := make([]error, len(inputs))
	if m.apps != nil && !m.apps[key] {
		for i := range errs {
			errs[i] = localapp.ErrAppNotFound
		}
		return errs
	}
	if m.inputs[key] == nil {
		m.inputs[key] = map[string]*clarifaipb.Input{}
	}
	for i, in := range inputs {
		if _, dup := m.inputs[key][in.GetId()]; dup {
			errs[i] = localapp.ErrInputDuplicateID
			continue
		}
		m.inputs[key][in.GetId()] = proto.Clone(in).(*clarifaipb.Input)
		m.stored[in.GetId()]++
	}
	return errs
}

func (m *memInputs) GetInput(_ context.Context, userID, appID, inputID string) (*clarifaipb.Input, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.inputs[userID+"/"+appID][inputID]
	if !ok {
		return nil, localapp.ErrInputNotFound
	}
	return in, nil
}

func (m *memInputs) ListInputs(_ context.Context, userID, appID string, offset, limit int) ([]*clarifaipb.Input, error) {
	return nil, fmt.Errorf("ListInputs is not used by ingest tests")
}

func (m *memInputs) DeleteInput(_ context.Context, userID, appID, inputID string) error {
	return fmt.Errorf("DeleteInput is not used by ingest tests")
}

func (m *memInputs) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.stored)
}

func (m *memInputs) snapshot() (stored map[string]int, batches []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	stored = make(map[string]int, len(m.stored))
	for k, v := range m.stored {
		stored[k] = v
	}
	return stored, append([]int(nil), m.batches...)
}

// metricsHarness is an OpenTelemetry SDK meter with a manual reader.
type metricsHarness struct {
	provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
}

func newMetricsHarness(t *testing.T) *metricsHarness {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return &metricsHarness{provider: provider, reader: reader}
}

func (h *metricsHarness) meterProvider() *sdkmetric.MeterProvider { return h.provider }

// sum returns the total of an Int64 counter over the points whose
// attributes include every key=value in attrs.
func (h *metricsHarness) sum(t *testing.T, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					if hasAll(dp.Attributes, attrs) {
						total += dp.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, dp := range data.DataPoints {
					if hasAll(dp.Attributes, attrs) {
						total += dp.Value
					}
				}
			case metricdata.Histogram[int64]:
				for _, dp := range data.DataPoints {
					if hasAll(dp.Attributes, attrs) {
						total += int64(dp.Count)
					}
				}
			}
		}
	}
	return total
}

func hasAll(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func (h *metricsHarness) captures(t *testing.T, outcome, reason string) int64 {
	t.Helper()
	attrs := []attribute.KeyValue{attribute.String("outcome", outcome)}
	if reason != "" {
		attrs = append(attrs, attribute.String("reason", reason))
	}
	return h.sum(t, "collectord_captures_total", attrs...)
}

// env is one embedded server with a queue, for one test.
type env struct {
	embedded *Embedded
	queue    *Queue
	metrics  *metricsHarness
	logger   *slog.Logger
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testWriter sends log lines to t.Log, so they show only on failure or -v.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openEnv(t *testing.T, dir string, qcfg QueueConfig) *env {
	t.Helper()
	e, err := OpenEmbedded(EmbeddedConfig{Dir: dir, MaxStoreBytes: 64 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	if qcfg.MaxBytes == 0 {
		qcfg.MaxBytes = 16 << 20
	}
	if qcfg.DeadLetterMaxBytes == 0 {
		qcfg.DeadLetterMaxBytes = 8 << 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := OpenQueue(ctx, e.Conn(), qcfg)
	if err != nil {
		_ = e.Close()
		t.Fatalf("OpenQueue: %v", err)
	}
	return &env{embedded: e, queue: q, metrics: newMetricsHarness(t), logger: testLogger(t)}
}

func (e *env) close(t *testing.T) {
	t.Helper()
	if err := e.embedded.Close(); err != nil {
		t.Errorf("Embedded.Close: %v", err)
	}
}

func (e *env) publisher(t *testing.T, cfg PublisherConfig) *Publisher {
	t.Helper()
	p, err := NewPublisher(e.queue, cfg, PublisherDeps{Meter: e.metrics.meterProvider().Meter("test"), Logger: e.logger})
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	return p
}

// fastWorkerConfig retries after milliseconds, so tests do not wait for the
// production delays.
func fastWorkerConfig() WorkerConfig {
	return WorkerConfig{
		FetchWait: 50 * time.Millisecond,
		RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		BreakerOpenBase: 20 * time.Millisecond, BreakerOpenMax: 100 * time.Millisecond,
	}
}

func (e *env) workers(t *testing.T, dest Destination, cfg WorkerConfig) *Workers {
	t.Helper()
	w, err := StartWorkers(e.queue, dest, cfg, WorkerDeps{Meter: e.metrics.meterProvider().Meter("test"), Logger: e.logger})
	if err != nil {
		t.Fatalf("StartWorkers: %v", err)
	}
	return w
}

func closeWithin(t *testing.T, name string, closeFn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := closeFn(ctx); err != nil {
		t.Errorf("%s close: %v", name, err)
	}
}

// publishAll offers every record, closes the publisher and checks that
// JetStream accepted them all.
func (e *env) publishAll(t *testing.T, recs []*capturepb.Record) {
	t.Helper()
	// One goroutine packs the records in offer order.
	e.publishWith(t, PublisherConfig{Publishers: 1}, recs)
}

// publishEach publishes each record in a message of its own, for tests that
// count messages: fetches, queue depth, the duplicate window.
func (e *env) publishEach(t *testing.T, recs []*capturepb.Record) {
	t.Helper()
	e.publishWith(t, PublisherConfig{MessageRecords: 1}, recs)
}

// publishWith offers every record before the publisher starts, so that
// its goroutines pack them as fully as the limits allow.
func (e *env) publishWith(t *testing.T, cfg PublisherConfig, recs []*capturepb.Record) {
	t.Helper()
	cfg.HandoffSize = len(recs) + 1
	p, err := newPublisher(e.queue, cfg, PublisherDeps{Meter: e.metrics.meterProvider().Meter("test"), Logger: e.logger})
	if err != nil {
		t.Fatalf("newPublisher: %v", err)
	}
	for _, rec := range recs {
		if !p.Offer(rec) {
			t.Fatalf("Offer(%s) = false, want true", rec.GetId())
		}
	}
	p.start()
	closeWithin(t, "publisher", p.Close)
}

func (e *env) streamMsgs(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.queue.JetStream().Stream(context.Background(), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// streamRecords counts the records in a stream's messages, which the
// publisher packs several to a message.
func (e *env) streamRecords(t *testing.T, stream string) uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := e.queue.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	if info.State.Msgs == 0 {
		return 0
	}

	var n uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("stream %s message %d: %v", stream, seq, err)
		}
		records, err := messageRecords(msg.Header, msg.Data)
		if err != nil {
			t.Fatalf("stream %s message %d: %v", stream, seq, err)
		}
		n += uint64(len(records))
	}
	return n
}

// deadLetter is one message of the dead-letter stream.
type deadLetter struct {
	rec      *capturepb.Record
	reason   string
	attempts string
	subject  string
}

func (e *env) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	ctx := context.Background()
	n := e.streamMsgs(t, e.queue.DeadLetterStreamName())
	if n == 0 {
		return nil
	}
	c, err := e.queue.JetStream().OrderedConsumer(ctx, e.queue.DeadLetterStreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	batch, err := c.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch dead letters: %v", err)
	}
	var out []deadLetter
	for msg := range batch.Messages() {
		rec := &capturepb.Record{}
		if err := proto.Unmarshal(msg.Data(), rec); err != nil {
			t.Fatalf("dead letter is not a record: %v", err)
		}
		out = append(out, deadLetter{
			rec:      rec,
			reason:   msg.Headers().Get(HeaderReason),
			attempts: msg.Headers().Get(HeaderAttempts),
			subject:  msg.Subject(),
		})
	}
	return out
}

// waitFor polls cond until it holds; the deadline only stops a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newRecord(user, app, collectorID string, n int) *capturepb.Record {
	return &capturepb.Record{
		Id:          fmt.Sprintf("%s-%s-%s-%04d", user, app, collectorID, n),
		CollectorId: collectorID,
		UserId:      user,
		AppId:       app,
		RequestId:   fmt.Sprintf("req-%d", n),
		Input: &clarifaipb.Input{
			Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: fmt.Sprintf("text %d", n)}},
		},
	}
}

func newRecords(user, app, collectorID string, n int) []*capturepb.Record {
	recs := make([]*capturepb.Record, n)
	for i := range recs {
		recs[i] = newRecord(user, app, collectorID, i)
	}
	return recs
}
