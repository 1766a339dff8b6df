package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/capturepb"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
)

func TestEngine_VersionMatching(t *testing.T) {
	input := textInput("a", "x")
	grpcRequest := func(version string) []byte {
		return grpcFrame(t, &clarifaipb.PostModelOutputsRequest{
			UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
			ModelId:   "general", VersionId: version,
			Inputs: []*clarifaipb.Input{input},
		}, false)
	}
	restBody := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}})
	const versionedPath = "/v2/users/clarifai/apps/main/models/general/versions/v1/outputs"
	const grpcPath = "/clarifai.api.V2/PostModelOutputs"

	tests := []struct {
		name      string
		collector string // the collector's version; "" is any
		ex        exchange
		records   int
		version   string // model_version_id in the record
	}{
		{name: "blank matches a named version", ex: exchange{path: versionedPath, requestBody: restBody}, records: 1, version: "v1"},
		{name: "blank matches no version", ex: exchange{path: generalPath, requestBody: restBody}, records: 1, version: ""},
		{name: "equal to the path version", collector: "v1", ex: exchange{path: versionedPath, requestBody: restBody}, records: 1, version: "v1"},
		{name: "equal to the response version", collector: "v1", ex: exchange{path: generalPath, requestBody: restBody, responseBody: restJSON(t, successResponse("v1", input))}, records: 1, version: "v1"},
		{name: "other than the response version", collector: "v2", ex: exchange{path: generalPath, requestBody: restBody, responseBody: restJSON(t, successResponse("v1", input))}},
		{name: "grpc body version equal", collector: "v1", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcRequest("v1"), responseBody: grpcFrame(t, successResponse("v9", input), false)}, records: 1, version: "v1"},
		{name: "grpc body version other", collector: "v2", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcRequest("v1"), responseBody: grpcFrame(t, successResponse("v2", input), false)}},
		{name: "grpc response version", collector: "v2", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcRequest(""), responseBody: grpcFrame(t, successResponse("v2", input), false)}, records: 1, version: "v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector("c1")
			c.Model.VersionID = tt.collector
			h := newHarness(t, Config{}, Deps{}, c)
			tt.ex.caller, tt.ex.status, tt.ex.grpcStatus = "bob", "200", "0"
			h.run(tt.ex)

			records := h.finish(t)
			if len(records) != tt.records {
				t.Fatalf("got %d records, want %d", len(records), tt.records)
			}
			if tt.records > 0 && records[0].GetModelVersionId() != tt.version {
				t.Errorf("model_version_id = %q, want %q", records[0].GetModelVersionId(), tt.version)
			}
			if got := h.captures(t, telemetry.OutcomeMatched); got != int64(tt.records) {
				t.Errorf("matched = %d, want %d", got, tt.records)
			}
		})
	}
}

func TestEngine_CallerSpecific(t *testing.T) {
	forAlice := newCollector("alice-only")
	forAlice.CallerUserID = "alice"
	anyCaller := newCollector("any-caller")
	h := newHarness(t, Config{}, Deps{}, forAlice, anyCaller)

	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	h.run(exchange{path: generalPath, caller: "alice", requestID: "from-alice", requestBody: body, status: "200"})
	h.run(exchange{path: generalPath, caller: "bob", requestID: "from-bob", requestBody: body, status: "200"})

	got := map[string][]string{}
	for _, rec := range h.finish(t) {
		got[rec.GetCallerUserId()] = append(got[rec.GetCallerUserId()], rec.GetCollectorId())
	}
	for caller := range got {
		sort.Strings(got[caller])
	}
	if fmt.Sprint(got["alice"]) != "[alice-only any-caller]" {
		t.Errorf("alice's predict kept by %v, want both collectors", got["alice"])
	}
	if fmt.Sprint(got["bob"]) != "[any-caller]" {
		t.Errorf("bob's predict kept by %v, want only the blank-caller collector", got["bob"])
	}
}

func TestEngine_RecheckDropsPausedCollector(t *testing.T) {
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})

	x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
	if x == nil {
		t.Fatal("Begin returned nil, want an exchange")
	}
	paused := newCollector("c1")
	paused.Paused = true
	h.finder.set(paused)

	x.RequestBody(body, true)
	x.ResponseHeaders(headers{":status": "200"}, true)
	x.Close()
	if records := h.finish(t); len(records) != 0 {
		t.Errorf("got %d records for a collector paused during the predict", len(records))
	}
}

func TestEngine_Sampling(t *testing.T) {
	const requests = 2000
	const sample = 0.5
	c := newCollector("sampled")
	c.RandomSample = sample

	source := rand.New(rand.NewPCG(1, 2))
	draws := 0
	h := newHarness(t, Config{Assemblers: 2, QueueSize: requests}, Deps{Rand: func() float64 {
		draws++
		return source.Float64()
	}}, c)

	inputs := []*clarifaipb.Input{textInput("a", "1"), textInput("b", "2"), textInput("c", "3")}
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs})
	for i := range requests {
		h.run(exchange{path: generalPath, caller: "bob", requestID: fmt.Sprintf("req-%d", i), requestBody: body, status: "200"})
	}
	records := h.finish(t)

	if draws != requests {
		t.Errorf("Rand called %d times, want one draw per request: %d", draws, requests)
	}

	perRequest := map[string]int{}
	for _, rec := range records {
		perRequest[rec.GetRequestId()]++
	}
	for id, n := range perRequest {
		if n != len(inputs) {
			t.Errorf("request %s kept %d of %d inputs; sampling must keep or drop them together", id, n, len(inputs))
		}
	}

	kept := float64(len(perRequest))
	mean := requests * sample
	sigma := math.Sqrt(requests * sample * (1 - sample))
	if math.Abs(kept-mean) > 3*sigma {
		t.Errorf("kept %v of %d requests, want %v ± %.1f (3 sigma)", kept, requests, mean, 3*sigma)
	}
	if got := h.captures(t, telemetry.OutcomeSampledOut); got != int64((requests-len(perRequest))*len(inputs)) {
		t.Errorf("sampled_out = %d, want %d", got, (requests-len(perRequest))*len(inputs))
	}
	if got := h.captures(t, telemetry.OutcomeMatched); got != requests*int64(len(inputs)) {
		t.Errorf("matched = %d, want %d", got, requests*len(inputs))
	}
}

func TestEngine_SampleOneKeepsAllWithoutDraw(t *testing.T) {
	c := newCollector("all")
	c.RandomSample = 1
	h := newHarness(t, Config{}, Deps{Rand: func() float64 {
		t.Error("Rand called for a sample of 1")
		return 0
	}}, c)
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	h.run(exchange{path: generalPath, caller: "bob", requestBody: body, status: "200"})
	if records := h.finish(t); len(records) != 1 {
		t.Errorf("got %d records, want 1", len(records))
	}
}

func TestRecordID(t *testing.T) {
	id := RecordID("owner", "dest", "c1", "req-1", 3)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("RecordID = %q, want 32 lowercase hex characters", id)
	}

	sum := sha256.Sum256([]byte("owner\x00dest\x00c1\x00req-1\x003"))
	if want := hex.EncodeToString(sum[:])[:32]; id != want {
		t.Errorf("RecordID = %q, want %q", id, want)
	}
	if again := RecordID("owner", "dest", "c1", "req-1", 3); again != id {
		t.Errorf("RecordID not deterministic: %q then %q", id, again)
	}

	// The separator keeps shifted boundaries apart.
	variants := [][5]any{
		{"owner2", "dest", "c1", "req-1", 3},
		{"owner", "dest2", "c1", "req-1", 3},
		{"owner", "dest", "c2", "req-1", 3},
		{"owner", "dest", "c1", "req-2", 3},
		{"owner", "dest", "c1", "req-1", 4},
		{"owne", "rdest", "c1", "req-1", 3},
	}
	for _, v := range variants {
		if other := RecordID(v[0].(string), v[1].(string), v[2].(string), v[3].(string), v[4].(int)); other == id {
			t.Errorf("RecordID%v equals RecordID(owner, dest, c1, req-1, 3)", v)
		}
	}
}

func TestEngine_ReplayKeepsRecordIDs(t *testing.T) {
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "1"), textInput("b", "2")}})
	var ids [2][]string
	for run := range ids {
		h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
		h.run(exchange{path: generalPath, caller: "bob", requestID: "same-request", requestBody: body, status: "200"})
		for _, rec := range h.finish(t) {
			ids[run] = append(ids[run], rec.GetId())
		}
	}
	if len(ids[0]) != 2 || fmt.Sprint(ids[0]) != fmt.Sprint(ids[1]) {
		t.Errorf("record IDs of a replayed predict: %v then %v", ids[0], ids[1])
	}
	if ids[0][0] == ids[0][1] {
		t.Errorf("two inputs share record ID %s", ids[0][0])
	}
}

func TestEngine_OutputFailed(t *testing.T) {
	inputs := []*clarifaipb.Input{textInput("ok", "1"), textInput("bad", "2"), textInput("missing", "3")}
	response := successResponse("v1", inputs...)
	response.Status.Code = clarifaipb.StatusCode_MIXED_STATUS
	response.Outputs[1].Status.Code = clarifaipb.StatusCode_INPUT_FAILED
	response.Outputs = response.Outputs[:2]

	c := newCollector("c1")
	c.CollectOutputs = true
	h := newHarness(t, Config{}, Deps{}, c)
	h.run(exchange{
		path: generalPath, caller: "bob",
		requestBody: restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs}),
		status:      "200", responseBody: restJSON(t, response),
	})

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	if records[0].GetInput().GetId() != "ok" || records[0].GetInputIndex() != 0 {
		t.Errorf("kept input %q at %d, want ok at 0", records[0].GetInput().GetId(), records[0].GetInputIndex())
	}
	if !records[0].GetCollectOutputs() || len(records[0].GetOutputConcepts()) != 1 || records[0].GetOutputConcepts()[0].GetValue() != 0.75 {
		t.Errorf("output concepts = %v, want the SUCCESS output's concept", records[0].GetOutputConcepts())
	}
	if got := h.captures(t, telemetry.OutcomeOutputFailed); got != 2 {
		t.Errorf("output_failed = %d, want 2", got)
	}
	if got := h.captures(t, telemetry.OutcomeMatched); got != 3 {
		t.Errorf("matched = %d, want 3", got)
	}
}

func TestEngine_ParseError(t *testing.T) {
	outputs := newCollector("c1")
	outputs.CollectOutputs = true
	input := textInput("a", "x")
	valid := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}})

	tests := []struct {
		name     string
		request  []byte
		response []byte
	}{
		{name: "request", request: []byte(`{"inputs": [`), response: restJSON(t, successResponse("v1", input))},
		{name: "response", request: valid, response: []byte(`{"outputs": 7}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, Deps{}, outputs)
			h.run(exchange{path: generalPath, caller: "bob", requestBody: tt.request, status: "200", responseBody: tt.response})
			if records := h.finish(t); len(records) != 0 {
				t.Errorf("got %d records, want none", len(records))
			}
			if got := h.captures(t, telemetry.OutcomeParseError); got != 1 {
				t.Errorf("parse_error = %d, want 1", got)
			}
		})
	}
}

func TestEngine_QueueFull(t *testing.T) {
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})

	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "exchange count", cfg: Config{QueueSize: 1}},
		{name: "queued bytes", cfg: Config{QueueSize: 10, MaxQueuedBytes: int64(len(body)) + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newStoppedHarness(t, tt.cfg, Deps{}, newCollector("c1"))
			for range 3 {
				h.run(exchange{path: generalPath, caller: "bob", requestBody: body, status: "200"})
			}
			if got := h.captures(t, telemetry.OutcomeDropped, reasonAssemblerQueueFull); got != 2 {
				t.Errorf("dropped/assembler_queue_full = %d, want 2", got)
			}
			if records := h.finish(t); len(records) != 1 {
				t.Errorf("got %d records after Close drained the queue, want 1", len(records))
			}
		})
	}
}

func TestEngine_ClosedDropsExchange(t *testing.T) {
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
	x.RequestBody(body, true)
	x.ResponseHeaders(headers{":status": "200"}, true)

	h.finish(t)
	x.Close()
	if got := h.captures(t, telemetry.OutcomeDropped, reasonEngineClosed); got != 1 {
		t.Errorf("dropped/engine_closed = %d, want 1", got)
	}
}

func TestEngine_AssemblerPanicRecovered(t *testing.T) {
	h := newHarness(t, Config{Assemblers: 1}, Deps{}, newCollector("c1"))
	h.sink.panicOnce = true
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	h.run(exchange{path: generalPath, caller: "bob", requestID: "first", requestBody: body, status: "200"})
	h.run(exchange{path: generalPath, caller: "bob", requestID: "second", requestBody: body, status: "200"})

	records := h.finish(t)
	if len(records) != 1 || records[0].GetRequestId() != "second" {
		t.Errorf("records after a panic = %v, want the second request's", records)
	}
	if got := h.counter(t, metricAssemblerPanics); got != 1 {
		t.Errorf("assembler panics = %d, want 1", got)
	}
}

func TestEngine_ConcurrentExchanges(t *testing.T) {
	const requests, workers = 1000, 50
	h := newHarness(t, Config{QueueSize: requests}, Deps{}, newCollector("c1"))
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})

	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				h.run(exchange{path: generalPath, caller: "bob", requestID: fmt.Sprintf("req-%d", i), requestBody: body, status: "200", chunkSize: 16})
			}
		})
	}
	for i := range requests {
		next <- i
	}
	close(next)
	wg.Wait()

	records := h.finish(t)
	ids := map[string]bool{}
	for _, rec := range records {
		ids[rec.GetId()] = true
	}
	if len(records) != requests || len(ids) != requests {
		t.Errorf("got %d records with %d distinct IDs, want %d", len(records), len(ids), requests)
	}
	if got := h.captures(t, telemetry.OutcomeDropped); got != 0 {
		t.Errorf("dropped = %d, want 0", got)
	}
}

// blockingSink holds every Offer until release is closed.
type blockingSink struct{ release chan struct{} }

func (s blockingSink) Offer(*capturepb.Record) bool {
	<-s.release
	return true
}

func TestEngine_CloseStopsAtDeadline(t *testing.T) {
	sink := blockingSink{release: make(chan struct{})}
	engine, err := New(Config{Assemblers: 1}, Deps{Callers: fakeCallers{}, Collectors: &fakeFinder{collectors: []collector.Collector{newCollector("c1")}}, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	engine.Start(context.Background())
	h := &harness{engine: engine}
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	h.run(exchange{path: generalPath, caller: "bob", requestBody: body, status: "200"})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := engine.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a stuck sink = %v, want context.DeadlineExceeded", err)
	}

	close(sink.release)
	if err := engine.Close(context.Background()); err != nil {
		t.Errorf("second Close after the sink recovered = %v, want nil", err)
	}
}
