package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
)

// streamEnding is how a client abandons a stream in TestServer_AbandonedStreams.
type streamEnding int

const (
	// endingCancel sends one more chunk and resets the stream without
	// waiting for its reply.
	endingCancel streamEnding = iota
	// endingHalfClose half-closes the stream and waits for the server to end
	// it.
	endingHalfClose
	// endingStall stops sending and waits for the server's idle timeout.
	endingStall
	endingCount
)

// rawPredictHeaders is the request-headers message of a matching REST
// predict whose body has not arrived yet.
func rawPredictHeaders(requestID string) *extprocpb.ProcessingRequest {
	return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocpb.HttpHeaders{
		Headers: &corepb.HeaderMap{Headers: []*corepb.HeaderValue{
			{Key: ":method", RawValue: []byte("POST")},
			{Key: ":path", RawValue: []byte(restPath)},
			{Key: ":authority", RawValue: []byte("model.local")},
			{Key: ":scheme", RawValue: []byte("http")},
			{Key: "content-type", RawValue: []byte("application/json")},
			{Key: "authorization", RawValue: []byte(aliceAuth)},
			{Key: "x-request-id", RawValue: []byte(requestID)},
		}},
	}}}
}

func rawRequestChunk(chunk string) *extprocpb.ProcessingRequest {
	return &extprocpb.ProcessingRequest{Request: &extprocpb.ProcessingRequest_RequestBody{
		RequestBody: &extprocpb.HttpBody{Body: []byte(chunk)},
	}}
}

// abandonStream plays one stream that begins a capture exchange, sends two
// body chunks without end_of_stream, and then ends as ending selects. A stall
// calls release once it has sent its messages, before it waits for the
// server's idle timeout. It returns an error when the server misbehaves.
//
// endedEarly is true when the server ended the stream with OK before the
// client meant it to: a stream that waits too long between messages on a
// loaded machine reaches the idle timeout early, which is correct.
func abandonStream(client extprocpb.ExternalProcessorClient, id int, ending streamEnding, release func()) (endedEarly bool, err error) {
	// The deadline turns a stream that the server never ends into an error
	// instead of a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}

	messages := []*extprocpb.ProcessingRequest{
		rawPredictHeaders(fmt.Sprintf("abandon-%d", id)),
		rawRequestChunk(`{"inputs":[{"data":`),
		rawRequestChunk(`{"text":{"raw":"hi"}}`),
	}
	for i, m := range messages {
		reply, err := exchangeRaw(stream, m)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("message %d: %w", i, err)
		}
		if got, want := envoytest.ReplyPhase(reply), envoytest.RequestPhase(m); got != want {
			return false, fmt.Errorf("reply to message %d is %s, want %s", i, got, want)
		}
		if i == 0 && reply.GetModeOverride().GetRequestBodyMode() != filterpb.ProcessingMode_STREAMED {
			return false, fmt.Errorf("request headers reply %v does not request the body: no exchange began", reply.GetModeOverride())
		}
	}

	switch ending {
	case endingCancel:
		if err := stream.Send(rawRequestChunk(`,{"data":`)); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("send the last chunk: %w", err)
		}
		cancel()
		return false, nil
	case endingHalfClose:
		if err := stream.CloseSend(); err != nil {
			return false, fmt.Errorf("close send: %w", err)
		}
	case endingStall:
		release()
	}
	// After a half-close or a stall the server ends the stream, with OK.
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("ending %d: stream ended with %v, want OK", ending, err)
	}
	return false, nil
}

// exchangeRaw sends m and returns its reply. It returns io.EOF when the
// server has ended the stream with OK.
func exchangeRaw(stream grpc.BidiStreamingClient[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse], m *extprocpb.ProcessingRequest) (*extprocpb.ProcessingResponse, error) {
	// Send reports the end of the stream as io.EOF; Recv returns its
	// status.
	if err := stream.Send(m); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("send: %w", err)
	}
	reply, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("receive the reply: %w", err)
	}
	return reply, err
}

// settledGoroutines polls runtime.NumGoroutine until it is at most limit or
// deadline passes, and returns the last count.
func settledGoroutines(limit int, deadline time.Duration) int {
	stop := time.Now().Add(deadline)
	for {
		n := runtime.NumGoroutine()
		if n <= limit || time.Now().After(stop) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stableGoroutines returns runtime.NumGoroutine once it has not changed for
// five polls in a row.
func stableGoroutines() int {
	last, same := runtime.NumGoroutine(), 0
	for same < 5 {
		time.Sleep(20 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
	return last
}

func TestServer_AbandonedStreams(t *testing.T) {
	streams, parallel := 10_000, 128
	if testing.Short() {
		streams = 1_500
	}
	const (
		idle = time.Second
		// slack allows for goroutines that gRPC and the runtime start or end
		// on their own, such as a keepalive or timer goroutine.
		slack = 5
	)
	h := newHarness(t, harnessConfig{
		server:     Config{IdleTimeout: idle},
		collectors: []collector.Collector{newCollector("c1")},
	})
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := extprocpb.NewExternalProcessorClient(conn)

	// One stream first, so the connection's goroutines count in the
	// baseline.
	if _, err := abandonStream(client, -1, endingHalfClose, func() {}); err != nil {
		t.Fatalf("warm-up stream: %v", err)
	}
	baseline := stableGoroutines()
	start := time.Now()

	var (
		mu         sync.Mutex
		failures   []error
		endedEarly int
		peak       int
	)
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range streams {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A stall waits for the idle timeout outside the bound, so the
			// idle streams pile up while the others run.
			var once sync.Once
			release := func() { once.Do(func() { <-slots }) }
			defer release()
			early, err := abandonStream(client, i, streamEnding(i%int(endingCount)), release)

			mu.Lock()
			defer mu.Unlock()
			peak = max(peak, runtime.NumGoroutine())
			if early {
				endedEarly++
			}
			if err != nil && len(failures) < 10 {
				failures = append(failures, fmt.Errorf("stream %d: %w", i, err))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range failures {
		t.Error(err)
	}

	after := settledGoroutines(baseline+slack, 30*time.Second)
	t.Logf("%d streams (%d cancel, %d half-close, %d stall; %d ended early by the idle timeout) in %v with %d in parallel; goroutines: baseline %d, peak %d, after %d",
		streams, countEndings(streams, endingCancel), countEndings(streams, endingHalfClose), countEndings(streams, endingStall),
		endedEarly, elapsed.Round(time.Millisecond), parallel, baseline, peak, after)
	if after > baseline+slack {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatalf("goroutines = %d after the streams ended, want at most the baseline %d + %d", after, baseline, slack)
	}

	// An exchange of an idle stream is closed just after its handler
	// returns, so the gauge is polled like the goroutines.
	open := h.counter(t, metricExchangesOpen)
	for stop := time.Now().Add(10 * time.Second); open != 0 && time.Now().Before(stop); open = h.counter(t, metricExchangesOpen) {
		time.Sleep(20 * time.Millisecond)
	}
	if open != 0 {
		t.Errorf("%s = %d, want 0", metricExchangesOpen, open)
	}

	// Every exchange that began was never completed. A stream that the
	// idle timeout ended before its request headers began none.
	total := int64(streams + 1)
	begun := h.counter(t, "collectord_exchanges_total", "result=captured")
	if begun < total-int64(endedEarly) {
		t.Errorf("%d exchanges began, want at least %d", begun, total-int64(endedEarly))
	}
	if got := h.captures(t, "aborted"); got != begun {
		t.Errorf("aborted = %d, want %d: every exchange that began was never completed", got, begun)
	}
	if got := h.counter(t, metricStreams); got != total {
		t.Errorf("%s = %d, want %d", metricStreams, got, total)
	}
	// Every stall ends by the idle timeout. A half-close or a cancel that
	// comes later than the timeout on a loaded machine ends by it too, and
	// the client cannot tell, so only the stalls are a lower bound.
	stalls := int64(countEndings(streams, endingStall))
	if got := h.counter(t, metricStreams, "end="+endIdleTimeout); got < stalls {
		t.Errorf("%s{end=idle_timeout} = %d, want at least the %d stalls", metricStreams, got, stalls)
	}
	t.Logf("stream ends: eof %d, canceled %d, reply_canceled %d, idle_timeout %d",
		h.counter(t, metricStreams, "end="+endEOF), h.counter(t, metricStreams, "end="+endCanceled),
		h.counter(t, metricStreams, "end="+endReplyCanceled), h.counter(t, metricStreams, "end="+endIdleTimeout))
	if got := h.counter(t, metricStreams, "end="+endError); got != 0 {
		t.Errorf("%s{end=error} = %d, want 0", metricStreams, got)
	}
	if records := h.finish(t); len(records) != 0 {
		t.Errorf("captured %d records from incomplete exchanges", len(records))
	}
}

// countEndings returns how many of streams streams, numbered from 0, end
// with ending.
func countEndings(streams int, ending streamEnding) int {
	n := streams / int(endingCount)
	if int(ending) < streams%int(endingCount) {
		n++
	}
	return n
}

// slowCallers resolves callers like keyCallers after sleeping for the
// duration in milliseconds that the x-test-delay-ms header names. It ignores
// the context on purpose: a lookup that does not honour cancellation is the
// worst case for the server.
type slowCallers struct{}

func (slowCallers) ResolveCaller(ctx context.Context, req capture.RequestInfo) (string, bool) {
	if ms, err := strconv.Atoi(req.Headers.Get("x-test-delay-ms")); err == nil {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return keyCallers{}.ResolveCaller(ctx, req)
}

func TestServer_MessageTimeout(t *testing.T) {
	cfg, err := envoytest.LoadConfig("../deploy/envoy/envoy.yaml")
	if err != nil {
		t.Fatalf("load the shipped Envoy config: %v", err)
	}
	if cfg.MessageTimeout != 200*time.Millisecond || !cfg.FailureModeAllow {
		t.Fatalf("shipped config: message_timeout %v, failure_mode_allow %v; this test expects 200ms and true", cfg.MessageTimeout, cfg.FailureModeAllow)
	}
	h := newHarness(t, harnessConfig{callers: slowCallers{}, collectors: []collector.Collector{newCollector("c1")}})
	c := h.dial(t, cfg)

	delays := []time.Duration{0, 150 * time.Millisecond, 250 * time.Millisecond, time.Second}
	inputs := map[string]proto.Message{}
	timedOut := 0
	for _, delay := range delays {
		ex, input := restPredict(t, 4<<10, 1<<10)
		id := fmt.Sprintf("delay-%d", delay.Milliseconds())
		ex.RequestHeaders = append(ex.RequestHeaders[:len(ex.RequestHeaders)-1],
			envoytest.Header{Name: "x-request-id", Value: id},
			envoytest.Header{Name: "x-test-delay-ms", Value: strconv.FormatInt(delay.Milliseconds(), 10)})

		r := c.Play(context.Background(), ex)

		// Whatever the delay, Envoy lets the predict through unchanged.
		if !r.Succeeded || r.Status != 200 {
			t.Errorf("%v: Succeeded = %v, Status = %d; want the upstream's 200", delay, r.Succeeded, r.Status)
		}
		if string(r.UpstreamBody) != string(concat(ex.RequestBody)) || string(r.ClientBody) != string(concat(ex.ResponseBody)) {
			t.Errorf("%v: the upstream or the client received a different body", delay)
		}

		if !r.Has(envoytest.KindTimeout) {
			// No reply can come before the delay, so a delay over the
			// timeout always times out.
			if delay > cfg.MessageTimeout {
				t.Errorf("%v: no timeout although the reply came after message_timeout %v; violations %v", delay, cfg.MessageTimeout, r.Violations)
			}
			requireClean(t, ex, r)
			inputs[id] = input
			continue
		}

		timedOut++
		if delay < cfg.MessageTimeout {
			t.Logf("%v: the reply missed message_timeout on this machine; checked as a timed-out predict", delay)
		}
		if !r.FailedOpen {
			t.Errorf("%v: FailedOpen = false after a timeout with failure_mode_allow", delay)
		}
		if got := r.SentPhases(); len(got) != 1 {
			t.Errorf("%v: sent %v; Envoy stops processing after a timeout", delay, got)
		}
	}

	// The server ends each stream once its reply is sent or has failed, and
	// frees the state before anything shuts it down. A handler still
	// sleeping in the resolver is waited for.
	total := int64(len(delays))
	ended := h.counter(t, metricStreams)
	for stop := time.Now().Add(10 * time.Second); ended < total && time.Now().Before(stop); ended = h.counter(t, metricStreams) {
		time.Sleep(20 * time.Millisecond)
	}
	if ended != total {
		t.Fatalf("%s = %d, want %d", metricStreams, ended, total)
	}
	if got := h.counter(t, metricExchangesOpen); got != 0 {
		t.Errorf("%s = %d after every stream ended, want 0", metricExchangesOpen, got)
	}
	replyCanceled := h.counter(t, metricStreams, "end="+endReplyCanceled)
	canceled := h.counter(t, metricStreams, "end="+endCanceled)
	t.Logf("%d of %d predicts timed out; stream ends: reply_canceled %d, canceled %d, eof %d",
		timedOut, total, replyCanceled, canceled, h.counter(t, metricStreams, "end="+endEOF))
	// A reset that reaches the server after it sent the late reply is seen
	// in the next Recv and counted as canceled.
	if replyCanceled > int64(timedOut) || replyCanceled+canceled < int64(timedOut) {
		t.Errorf("reply_canceled = %d, canceled = %d; want the %d timed-out streams among them, reply_canceled among those", replyCanceled, canceled, timedOut)
	}
	if got := h.counter(t, metricStreams, "end="+endError); got != 0 {
		t.Errorf("%s{end=error} = %d, want 0", metricStreams, got)
	}
	if got := h.captures(t, "aborted"); got != int64(timedOut) {
		t.Errorf("aborted = %d, want %d: one per timed-out predict", got, timedOut)
	}

	records := h.finish(t)
	if len(records) != len(inputs) {
		t.Errorf("got %d records, want %d: one per predict that did not time out", len(records), len(inputs))
	}
	for _, rec := range records {
		want, ok := inputs[rec.GetRequestId()]
		if !ok {
			t.Errorf("record of %s, a predict that timed out", rec.GetRequestId())
			continue
		}
		if !proto.Equal(rec.GetInput(), want) {
			t.Errorf("record of %s: captured input differs from the input sent", rec.GetRequestId())
		}
	}
}
