package capture

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// BenchmarkEngine_BeginFastPath measures Begin for requests that end on the
// fast path, with the OpenTelemetry SDK meter. Compare runs with
// `go test -run '^$' -bench . -count 10 ./internal/capture > new.txt` and
// `benchstat old.txt new.txt`.
func BenchmarkEngine_BeginFastPath(b *testing.B) {
	cases := []struct {
		name    string
		headers headers
	}{
		{name: "not_predict", headers: headers{":method": "POST", ":path": "/v2/users/u/apps/a/inputs", "content-type": "application/json", "x-test-caller": "bob"}},
		{name: "no_collector", headers: headers{":method": "POST", ":path": "/v2/users/clarifai/apps/main/models/other/outputs", "content-type": "application/json", "x-test-caller": "bob"}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, Config{}, Deps{}, newCollector("c1"))
			req := RequestInfo{Headers: bc.headers}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if h.engine.Begin(ctx, req) != nil {
					b.Fatal("Begin returned an exchange on the fast path")
				}
			}
		})
	}
}

// BenchmarkExchange_REST64KiB measures the request path of one matching
// REST predict with a 64 KiB body in 16 KiB chunks: Begin, the body chunks,
// the response headers and Close. The benchmark takes the finished exchange
// off the queue itself, so assembling is not measured.
func BenchmarkExchange_REST64KiB(b *testing.B) {
	h := newStoppedHarness(b, Config{QueueSize: 1}, Deps{}, newCollector("c1"))
	text := strings.Repeat("x", 64<<10-64)
	body := restJSON(b, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", text)}})
	reqHeaders := headers{
		":method": "POST", ":path": generalPath, "content-type": "application/json",
		"x-test-caller": "bob", "x-request-id": "bench", "content-length": strconv.Itoa(len(body)),
	}
	respHeaders := headers{":status": "200", "content-type": "application/json"}
	ctx := context.Background()
	const chunk = 16 << 10

	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		x := h.engine.Begin(ctx, RequestInfo{Headers: reqHeaders})
		for start := 0; start < len(body); start += chunk {
			end := min(start+chunk, len(body))
			x.RequestBody(body[start:end], end == len(body))
		}
		x.ResponseHeaders(respHeaders, false)
		x.Close()

		job := <-h.engine.queue
		h.engine.queuedBytes.Add(-job.size())
	}
}
