//go:build unix

package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"
)

// benchResponse is a Clarifai-like response to a one-input colors predict.
const benchResponse = `{"status":{"code":10000,"description":"Ok","req_id":"0123456789abcdef0123456789abcdef"},` +
	`"outputs":[{"id":"fedcba9876543210fedcba9876543210","status":{"code":10000,"description":"Ok"},` +
	`"model":{"id":"colors","app_id":"main","user_id":"demo","model_version":{"id":"1"}},` +
	`"input":{"id":"in-1"},"data":{"concepts":[{"id":"red","name":"red","value":0.75,"app_id":"main"},` +
	`{"id":"white","name":"white","value":0.25,"app_id":"main"}]}}]}`

// BenchmarkProxy measures requests per second of REST predicts with a small
// image through two proxies in front of the same fast in-process upstream:
// proxy=bare is httputil.ReverseProxy with the interceptor's idle-connection
// pool and buffer pool, and
// proxy=collectord is this package with a collector that captures every
// predict.
//
// Compare the two proxies, or two runs, with benchstat
// (go install golang.org/x/perf/cmd/benchstat@latest):
//
//	go test -run '^$' -bench 'BenchmarkProxy$' -count 10 ./internal/proxy | tee new.txt
//	benchstat -col /proxy new.txt
//	benchstat old.txt new.txt
//
// On a machine shared with other work, prefer BenchmarkProxyInterleaved,
// whose ratio is measured with both proxies under the same load.
func BenchmarkProxy(b *testing.B) {
	bench := newProxyBench(b)

	b.Run("proxy=bare", func(b *testing.B) {
		runPredicts(b, bench.bare.URL, bench.body)
	})
	b.Run("proxy=collectord", func(b *testing.B) {
		before := bench.sink.records.Load()
		runPredicts(b, bench.collectord.URL, bench.body)
		bench.waitForRecords(b, before+int64(b.N))
	})
}

// BenchmarkProxyInterleaved sends b.N predicts through each proxy in
// alternating rounds, so that both run under the same background load. It
// reports each proxy's requests per second and process CPU time per
// request, and two ratios whose target is at least 0.8:
//
//   - ratio: collectord requests per second over bare requests per second.
//   - cpu-ratio: bare CPU per request over collectord CPU per request, the
//     throughput ratio of a CPU-bound machine. It varies less than ratio
//     when other processes compete for the CPUs.
//
// A collectord round lasts until the capture engine has emitted the round's
// records, so both ratios count the work the capture does after the
// response. Client, upstream and proxies run in this process, so the CPU
// time includes theirs.
//
//	go test -run '^$' -bench 'BenchmarkProxyInterleaved' -count 10 ./internal/proxy | tee new.txt
//	benchstat new.txt
func BenchmarkProxyInterleaved(b *testing.B) {
	const roundSize = 256
	bench := newProxyBench(b)
	client := newBenchClient()
	defer client.CloseIdleConnections()

	var bare, collectord roundTotals
	b.ResetTimer()
	for done := 0; done < b.N; done += roundSize {
		n := min(roundSize, b.N-done)

		bare.measure(b, func() {
			sendConcurrently(b, client, bench.bare.URL, bench.body, n)
		})
		collectord.measure(b, func() {
			before := bench.sink.records.Load()
			sendConcurrently(b, client, bench.collectord.URL, bench.body, n)
			bench.waitForRecords(b, before+int64(n))
		})
	}
	b.StopTimer()

	requests := float64(b.N)
	b.ReportMetric(requests/bare.wall.Seconds(), "bare-req/s")
	b.ReportMetric(requests/collectord.wall.Seconds(), "collectord-req/s")
	b.ReportMetric(bare.wall.Seconds()/collectord.wall.Seconds(), "ratio")
	b.ReportMetric(float64(bare.cpu.Microseconds())/requests, "bare-cpu-us/req")
	b.ReportMetric(float64(collectord.cpu.Microseconds())/requests, "collectord-cpu-us/req")
	b.ReportMetric(bare.cpu.Seconds()/collectord.cpu.Seconds(), "cpu-ratio")
	b.ReportMetric(0, "ns/op")
}

// roundTotals sums the wall-clock and process CPU time of benchmark rounds.
type roundTotals struct {
	wall, cpu time.Duration
}

func (r *roundTotals) measure(b *testing.B, round func()) {
	startCPU := processCPUTime(b)
	start := time.Now()
	round()
	r.wall += time.Since(start)
	r.cpu += processCPUTime(b) - startCPU
}

// processCPUTime returns the user plus system CPU time of this process.
func processCPUTime(b *testing.B) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// proxyBench is a fast upstream with both proxies in front of it.
type proxyBench struct {
	body       []byte
	bare       *httptest.Server
	collectord *httptest.Server
	sink       *countingSink
}

func newProxyBench(b *testing.B) *proxyBench {
	b.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, benchResponse)
	}))
	b.Cleanup(upstream.Close)
	upstreamURL, _ := url.Parse(upstream.URL)

	bench := &proxyBench{body: []byte(colorsPredictBody(b, "in-1")), sink: &countingSink{}}
	bench.bare = httptest.NewServer(newBareProxy(upstreamURL))
	b.Cleanup(bench.bare.Close)

	engine := newBenchEngine(b, bench.sink)
	p, err := New(Config{Upstream: upstreamURL}, engine, slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("bench"))
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	bench.collectord = httptest.NewServer(p)
	b.Cleanup(func() {
		bench.collectord.Close()
		p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		engine.Close(ctx)
	})
	return bench
}

// waitForRecords waits until the sink has want records, because the engine
// assembles captures after the responses; every predict must be captured.
func (pb *proxyBench) waitForRecords(b *testing.B, want int64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for pb.sink.records.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("captured %d records after 30s, want %d", pb.sink.records.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// sendConcurrently posts n predicts to base from benchWorkers goroutines.
func sendConcurrently(b *testing.B, client *http.Client, base string, body []byte, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range benchWorkers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := postPredict(client, base, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// benchWorkers is the number of concurrent clients.
const benchWorkers = 16

// runPredicts posts b.N predicts to base from parallel clients and reports
// the requests per second as req/s.
func runPredicts(b *testing.B, base string, body []byte) {
	b.Helper()
	client := newBenchClient()
	defer client.CloseIdleConnections()

	b.SetParallelism((benchWorkers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := postPredict(client, base, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func newBenchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 256,
		DisableCompression:  true,
	}}
}

// postPredict sends one colors predict of caller-1 and reads the response.
func postPredict(client *http.Client, base string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, base+"/v2/users/demo/apps/main/models/colors/outputs", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(callerHeader, "caller-1")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d, want 200", res.StatusCode)
	}
	return nil
}

// newBareProxy returns the baseline: httputil.ReverseProxy with the same
// upstream transport tuning and copy-buffer pool as the interceptor, so that
// the comparison measures the capture and nothing else.
func newBareProxy(upstream *url.URL) http.Handler {
	cfg, _ := withDefaults(Config{Upstream: upstream})
	transport, _ := newTransports(cfg)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: newBufferPool(),
		ErrorLog:   slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
}

// newBenchEngine returns a started capture engine whose collector matches
// every predict of caller-1 to demo/main/colors.
func newBenchEngine(b *testing.B, sink capture.Sink) *capture.Engine {
	b.Helper()
	engine, err := capture.New(capture.Config{QueueSize: 4096}, capture.Deps{
		Callers:    fakeCallers{},
		Collectors: &fakeFinder{collectors: []collector.Collector{demoCollector("colors")}},
		Sink:       sink,
		Meter:      noop.NewMeterProvider().Meter("bench"),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatalf("capture.New: %v", err)
	}
	engine.Start(context.Background())
	return engine
}

// countingSink counts records and keeps none.
type countingSink struct {
	records atomic.Int64
}

func (s *countingSink) Offer(*capturepb.Record) bool {
	s.records.Add(1)
	return true
}
