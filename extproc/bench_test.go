package extproc

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	filterpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocpb "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/pb/capturepb"
)

// noopServer replies to every message with a plain CONTINUE of the matching
// type and never overrides the mode. It does the least work an ext_proc
// server can do and is the baseline of the benchmarks.
type noopServer struct {
	extprocpb.UnimplementedExternalProcessorServer
	replies *replies
}

func (s *noopServer) Process(stream grpc.BidiStreamingServer[extprocpb.ProcessingRequest, extprocpb.ProcessingResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		reply := s.replies.requestHeaders
		switch req.GetRequest().(type) {
		case *extprocpb.ProcessingRequest_RequestBody:
			reply = s.replies.requestBody
		case *extprocpb.ProcessingRequest_RequestTrailers:
			reply = s.replies.requestTrailers
		case *extprocpb.ProcessingRequest_ResponseHeaders:
			reply = s.replies.responseHeaders
		case *extprocpb.ProcessingRequest_ResponseBody:
			reply = s.replies.responseBody
		case *extprocpb.ProcessingRequest_ResponseTrailers:
			reply = s.replies.responseTrailers
		}
		if err := stream.Send(reply); err != nil {
			return nil
		}
	}
}

// discardSink counts nothing and keeps nothing.
type discardSink struct{}

func (discardSink) Offer(*capturepb.Record) bool { return true }

// benchServer serves srv on loopback until the benchmark ends.
func benchServer(b *testing.B, register func(*grpc.Server)) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions(0)...)
	register(g)
	go g.Serve(lis)
	b.Cleanup(g.Stop)
	return lis.Addr().String()
}

// collectordServer serves the real server over the real engine with one
// collector of generalModel.
func collectordServer(b *testing.B) string {
	b.Helper()
	engine, err := capture.New(capture.Config{}, capture.Deps{
		Callers:    keyCallers{},
		Collectors: &fixedFinder{collectors: []collector.Collector{newCollector("c1")}},
		Sink:       discardSink{},
		Meter:      noop.NewMeterProvider().Meter("bench"),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	engine.Start(context.Background())
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		engine.Close(ctx)
	})

	server, err := New(Config{}, engine, slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	return benchServer(b, server.Register)
}

func noopAddr(b *testing.B) string {
	b.Helper()
	return benchServer(b, func(g *grpc.Server) {
		extprocpb.RegisterExternalProcessorServer(g, &noopServer{replies: newReplies()})
	})
}

// runExchanges plays ex concurrently b.N times and reports requests per
// second. It fails when a play is not clean or sends other phases than want.
func runExchanges(b *testing.B, addr string, cfg envoytest.Config, ex *envoytest.Exchange, want []envoytest.Phase) {
	b.Helper()
	c, err := envoytest.Dial(addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	// One checked play first, so both servers are measured on the same
	// messages.
	r := c.Play(context.Background(), ex)
	if len(r.Violations) > 0 || !r.Succeeded || !slices.Equal(r.SentPhases(), want) {
		b.Fatalf("violations %v, succeeded %v, sent %v; want %v", r.Violations, r.Succeeded, r.SentPhases(), want)
	}

	b.SetParallelism(1)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := c.Play(context.Background(), ex); !r.Succeeded || len(r.Violations) > 0 {
				b.Errorf("play failed: %v", r.Violations)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkFastPath measures requests per second on the fast path: a
// predict for a model no collector watches, which costs one request-headers
// message and its reply. It runs the real server and capture engine, then a
// no-op server, with the same envoytest client over loopback. The target is
// at least 0.9 times the no-op server's req/s. Compare the two servers of
// one run with benchstat:
//
//	go test -run '^$' -bench BenchmarkFastPath -count 10 ./extproc > fast.txt
//	benchstat -col /server fast.txt
func BenchmarkFastPath(b *testing.B) {
	ex := &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", "/v2/users/clarifai/apps/main/models/other/outputs", "model.local", "application/json",
			envoytest.Header{Name: "authorization", Value: aliceAuth}),
		RequestBody:     [][]byte{[]byte(`{"inputs":[{"data":{"text":{"raw":"hi"}}}]}`)},
		ResponseHeaders: envoytest.Response(200),
	}
	want := []envoytest.Phase{envoytest.PhaseRequestHeaders}

	b.Run("server=collectord", func(b *testing.B) {
		cfg := shippedConfig(b)
		runExchanges(b, collectordServer(b), cfg, ex, want)
	})
	b.Run("server=noop", func(b *testing.B) {
		cfg := shippedConfig(b)
		runExchanges(b, noopAddr(b), cfg, ex, want)
	})
}

// BenchmarkMatching64KiB measures a matching 64 KiB REST predict: request
// headers, the body in four 16 KiB chunks and the response headers. The real
// server captures it and parses it in the background. The no-op server is
// configured to receive the same messages. The target is at most 1.5 times
// the no-op server's time per request. Compare with benchstat:
//
//	go test -run '^$' -bench BenchmarkMatching64KiB -count 10 ./extproc > match.txt
//	benchstat -col /server match.txt
func BenchmarkMatching64KiB(b *testing.B) {
	ex, _ := restPredict(b, 64<<10, 16<<10)
	body := envoytest.PhaseRequestBody
	want := []envoytest.Phase{envoytest.PhaseRequestHeaders, body, body, body, body, envoytest.PhaseResponseHeaders}

	b.Run("server=collectord", func(b *testing.B) {
		runExchanges(b, collectordServer(b), shippedConfig(b), ex, want)
	})
	b.Run("server=noop", func(b *testing.B) {
		// The no-op server sends no override, so Envoy is configured to
		// send what collectord requests for a matching predict.
		cfg := shippedConfig(b)
		cfg.ProcessingMode = modeFor(capture.Plan{RequestBody: true, ResponseHeaders: true})
		cfg.ProcessingMode.RequestHeaderMode = filterpb.ProcessingMode_SEND
		runExchanges(b, noopAddr(b), cfg, ex, want)
	})
}

// runPaired plays ex against the collectord server and the no-op server in
// alternation, b.N times each, and reports the mean time per request of each
// and their ratio. Alternating cancels the drift of a shared, loaded machine
// that separate runs suffer from. The capture engine's background parsing
// overlaps the no-op plays, so for captured predicts the ratio understates
// the cost; the separate sub-benchmarks do not.
func runPaired(b *testing.B, collectordCfg, noopCfg envoytest.Config, ex *envoytest.Exchange) (collectordNs, noopNs float64) {
	b.Helper()
	collectordClient, err := envoytest.Dial(collectordServer(b), collectordCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer collectordClient.Close()
	noopClient, err := envoytest.Dial(noopAddr(b), noopCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer noopClient.Close()

	timed := func(c *envoytest.Client, total *atomic.Int64) {
		start := time.Now()
		if r := c.Play(context.Background(), ex); !r.Succeeded || len(r.Violations) > 0 {
			b.Errorf("play failed: %v", r.Violations)
		}
		total.Add(int64(time.Since(start)))
	}

	var collectordTotal, noopTotal atomic.Int64
	var turn atomic.Int64
	b.SetParallelism(1)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// Alternate which server goes first, so neither always runs
			// right after the other's work.
			if turn.Add(1)%2 == 0 {
				timed(collectordClient, &collectordTotal)
				timed(noopClient, &noopTotal)
			} else {
				timed(noopClient, &noopTotal)
				timed(collectordClient, &collectordTotal)
			}
		}
	})
	collectordNs = float64(collectordTotal.Load()) / float64(b.N)
	noopNs = float64(noopTotal.Load()) / float64(b.N)
	b.ReportMetric(collectordNs, "collectord-ns/req")
	b.ReportMetric(noopNs, "noop-ns/req")
	return collectordNs, noopNs
}

// BenchmarkFastPathPaired reports the fast path's req/s as a fraction of the
// no-op server's (rps-ratio, target at least 0.9), measured in alternation
// in one run. benchstat summarizes the metric over runs:
//
//	go test -run '^$' -bench BenchmarkFastPathPaired -count 10 ./extproc > fastpair.txt
//	benchstat fastpair.txt
func BenchmarkFastPathPaired(b *testing.B) {
	ex := &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", "/v2/users/clarifai/apps/main/models/other/outputs", "model.local", "application/json",
			envoytest.Header{Name: "authorization", Value: aliceAuth}),
		RequestBody:     [][]byte{[]byte(`{"inputs":[{"data":{"text":{"raw":"hi"}}}]}`)},
		ResponseHeaders: envoytest.Response(200),
	}
	collectordNs, noopNs := runPaired(b, shippedConfig(b), shippedConfig(b), ex)
	b.ReportMetric(noopNs/collectordNs, "rps-ratio")
}

// BenchmarkMatching64KiBPaired reports the time of a matching 64 KiB REST
// predict through collectord as a multiple of the no-op server's
// (time-ratio, target at most 1.5), measured in alternation in one run:
//
//	go test -run '^$' -bench BenchmarkMatching64KiBPaired -count 10 ./extproc > matchpair.txt
//	benchstat matchpair.txt
func BenchmarkMatching64KiBPaired(b *testing.B) {
	ex, _ := restPredict(b, 64<<10, 16<<10)
	noopCfg := shippedConfig(b)
	noopCfg.ProcessingMode = modeFor(capture.Plan{RequestBody: true, ResponseHeaders: true})
	collectordNs, noopNs := runPaired(b, shippedConfig(b), noopCfg, ex)
	b.ReportMetric(collectordNs/noopNs, "time-ratio")
}
