package capture

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
)

func TestNew_Validation(t *testing.T) {
	deps := Deps{Callers: fakeCallers{}, Collectors: &fakeFinder{}, Sink: &recordingSink{}}
	if _, err := New(Config{MaxCaptureBytes: -1}, deps); err == nil {
		t.Error("New accepted a negative MaxCaptureBytes")
	}
	if _, err := New(Config{}, Deps{Callers: fakeCallers{}}); err == nil {
		t.Error("New accepted Deps without Collectors and Sink")
	}

	e, err := New(Config{}, deps)
	if err != nil {
		t.Fatalf("New with zero Config: %v", err)
	}
	if e.cfg.MaxCaptureBytes != DefaultMaxCaptureBytes {
		t.Errorf("MaxCaptureBytes = %d, want default %d", e.cfg.MaxCaptureBytes, DefaultMaxCaptureBytes)
	}
	if e.cfg.Assemblers < 1 || e.cfg.QueueSize != DefaultQueueSize || e.cfg.MaxQueuedBytes != DefaultMaxQueuedBytes {
		t.Errorf("defaults not applied: %+v", e.cfg)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Errorf("Close of an engine never started: %v", err)
	}
}

func TestEngine_BeginFastPath(t *testing.T) {
	pinned := newCollector("pinned")
	pinned.Model.VersionID = "v1"
	paused := newCollector("paused")
	paused.Paused = true
	forAlice := newCollector("alice-only")
	forAlice.CallerUserID = "alice"

	tests := []struct {
		name       string
		collectors []collector.Collector
		headers    headers
		eos        bool
		reason     string
	}{
		{
			name:    "get",
			headers: headers{":method": "GET", ":path": generalPath, "x-test-caller": "bob"},
			eos:     true,
			reason:  reasonNotPredict,
		},
		{
			name:    "not a predict path",
			headers: headers{":method": "POST", ":path": "/v2/users/clarifai/apps/main/inputs", "x-test-caller": "bob"},
			reason:  reasonNotPredict,
		},
		{
			name:    "grpc content type on a REST path",
			headers: headers{":method": "POST", ":path": generalPath, "content-type": "application/grpc", "x-test-caller": "bob"},
			reason:  reasonNotPredict,
		},
		{
			name:    "predict without body",
			headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"},
			eos:     true,
			reason:  reasonEmptyBody,
		},
		{
			name:    "no caller",
			headers: headers{":method": "POST", ":path": generalPath, "content-type": "application/json"},
			reason:  reasonNoCaller,
		},
		{
			name:    "no collector for the model",
			headers: headers{":method": "POST", ":path": "/v2/users/clarifai/apps/main/models/other/outputs", "x-test-caller": "bob"},
			reason:  reasonNoCollector,
		},
		{
			name:       "paused collector",
			collectors: []collector.Collector{paused},
			headers:    headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"},
			reason:     reasonNoCollector,
		},
		{
			name:       "collector for another caller",
			collectors: []collector.Collector{forAlice},
			headers:    headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"},
			reason:     reasonNoCollector,
		},
		{
			name:       "path names another version",
			collectors: []collector.Collector{pinned},
			headers:    headers{":method": "POST", ":path": "/v2/users/clarifai/apps/main/models/general/versions/v2/outputs", "x-test-caller": "bob"},
			reason:     reasonNoCollector,
		},
		{
			name:    "content length over the cap",
			headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob", "content-length": "1025"},
			reason:  reasonTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			collectors := tt.collectors
			if collectors == nil {
				collectors = []collector.Collector{newCollector("c1")}
			}
			h := newHarness(t, Config{MaxCaptureBytes: 1024}, Deps{}, collectors...)

			x := h.engine.Begin(context.Background(), RequestInfo{Headers: tt.headers, EndOfStream: tt.eos})
			if x != nil {
				t.Fatalf("Begin returned an exchange with plan %+v, want nil", x.Plan())
			}
			if got := h.counter(t, metricExchanges, "result=fast_path", "reason="+tt.reason); got != 1 {
				t.Errorf("fast_path/%s count = %d, want 1", tt.reason, got)
			}
			if got := h.counter(t, metricExchanges, "result=captured"); got != 0 {
				t.Errorf("captured count = %d, want 0", got)
			}

			// The methods of a nil exchange are no-ops.
			x.RequestBody([]byte("{}"), true)
			x.ResponseHeaders(headers{":status": "200"}, true)
			x.Close()
		})
	}
}

func TestExchange_Plan(t *testing.T) {
	outputs := newCollector("outputs")
	outputs.CollectOutputs = true
	pinned := newCollector("pinned")
	pinned.Model.VersionID = "v1"

	tests := []struct {
		name        string
		collector   collector.Collector
		path        string
		contentType string
		want        Plan
	}{
		{
			name:      "inputs only",
			collector: newCollector("c1"),
			path:      generalPath,
			want:      Plan{RequestBody: true, ResponseHeaders: true},
		},
		{
			name:      "collect outputs",
			collector: outputs,
			path:      generalPath,
			want:      Plan{RequestBody: true, ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true},
		},
		{
			name:      "pinned version, path without version",
			collector: pinned,
			path:      generalPath,
			want:      Plan{RequestBody: true, ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true},
		},
		{
			name:      "pinned version named in the path",
			collector: pinned,
			path:      "/v2/users/clarifai/apps/main/models/general/versions/v1/outputs",
			want:      Plan{RequestBody: true, ResponseHeaders: true},
		},
		{
			name:        "grpc",
			collector:   newCollector("c1"),
			path:        "/clarifai.api.V2/PostModelOutputs",
			contentType: "application/grpc",
			want:        Plan{RequestBody: true, ResponseHeaders: true, ResponseBody: true, ResponseTrailers: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, Deps{}, tt.collector)
			x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{
				":method": "POST", ":path": tt.path, "content-type": tt.contentType, "x-test-caller": "bob",
			}})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}
			defer x.Close()
			if got := x.Plan(); got != tt.want {
				t.Errorf("Plan() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestExchange_RESTCapture(t *testing.T) {
	image := testImage(t)
	metadata, err := structpb.NewStruct(map[string]any{"camera": "north-gate", "frame": 42.0})
	if err != nil {
		t.Fatal(err)
	}
	inputs := []*clarifaipb.Input{
		{Id: "img-b64", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}, Metadata: metadata}},
		{Id: "img-url", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://images.example/cat.jpg"}}},
		textInput("txt", "a cat on a mat"),
	}
	request := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: inputs})

	for _, chunkSize := range []int{0, 1000, 7, 65536} {
		t.Run("chunk "+strconv.Itoa(chunkSize), func(t *testing.T) {
			h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
			x := h.run(exchange{
				path: generalPath, contentType: "application/json", caller: "bob", requestID: "req-1",
				requestHeaders: headers{"authorization": "Key caller-secret", "cookie": "session=caller-cookie"},
				requestBody:    request, chunkSize: chunkSize, status: "200",
			})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}

			records := h.finish(t)
			if len(records) != len(inputs) {
				t.Fatalf("got %d records, want %d", len(records), len(inputs))
			}
			for i, rec := range records {
				if !proto.Equal(rec.GetInput(), inputs[i]) {
					t.Errorf("record %d input = %v, want %v", i, rec.GetInput(), inputs[i])
				}
				if rec.GetInputIndex() != uint32(i) {
					t.Errorf("record %d input_index = %d", i, rec.GetInputIndex())
				}
				if want := RecordID("owner", "dest", "c1", "req-1", i); rec.GetId() != want {
					t.Errorf("record %d id = %q, want %q", i, rec.GetId(), want)
				}
			}
			if !bytes.Equal(records[0].GetInput().GetData().GetImage().GetBase64(), image) {
				t.Error("base64 image bytes differ from the file")
			}
			if got := records[1].GetInput().GetData().GetImage().GetUrl(); got != "https://images.example/cat.jpg" {
				t.Errorf("image url = %q", got)
			}
			if got := records[2].GetInput().GetData().GetText().GetRaw(); got != "a cat on a mat" {
				t.Errorf("text = %q", got)
			}
			if got := records[0].GetInput().GetData().GetMetadata().GetFields()["camera"].GetStringValue(); got != "north-gate" {
				t.Errorf("metadata camera = %q", got)
			}

			rec := records[0]
			if rec.GetCollectorId() != "c1" || rec.GetUserId() != "owner" || rec.GetAppId() != "dest" {
				t.Errorf("destination = %s/%s collector %s", rec.GetUserId(), rec.GetAppId(), rec.GetCollectorId())
			}
			if rec.GetCallerUserId() != "bob" || rec.GetRequestId() != "req-1" {
				t.Errorf("caller %q request %q", rec.GetCallerUserId(), rec.GetRequestId())
			}
			if rec.GetModelUserId() != "clarifai" || rec.GetModelAppId() != "main" || rec.GetModelId() != "general" {
				t.Errorf("model = %s/%s/%s", rec.GetModelUserId(), rec.GetModelAppId(), rec.GetModelId())
			}
			if !rec.GetCapturedAt().AsTime().Equal(testNow) {
				t.Errorf("captured_at = %v, want %v", rec.GetCapturedAt().AsTime(), testNow)
			}
			if rec.GetCollectOutputs() || len(rec.GetOutputConcepts()) != 0 {
				t.Error("record carries outputs for a collector without collect_outputs")
			}

			if got := h.captures(t, telemetry.OutcomeMatched); got != int64(len(inputs)) {
				t.Errorf("matched = %d, want %d", got, len(inputs))
			}
			if got := h.counter(t, metricExchanges, "result=captured"); got != 1 {
				t.Errorf("captured exchanges = %d, want 1", got)
			}
		})
	}
}

func TestRecord_NoSecrets(t *testing.T) {
	c := newCollector("c1")
	c.CollectOutputs = true
	h := newHarness(t, Config{}, Deps{}, c)
	input := textInput("t1", "hello")
	h.run(exchange{
		path: generalPath, contentType: "application/json", caller: "bob",
		requestHeaders: headers{
			"authorization":            "Key caller-secret",
			"cookie":                   "session=caller-cookie",
			"x-clarifai-session-token": "session-token-secret",
		},
		requestBody:  restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}}),
		status:       "200",
		responseBody: restJSON(t, successResponse("v1", input)),
	})

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	text := prototext.Format(records[0])
	for _, secret := range []string{"caller-secret", "caller-cookie", "session-token-secret", c.PostInputsKey} {
		if strings.Contains(text, secret) {
			t.Errorf("record contains %q", secret)
		}
	}
}

func TestExchange_RequestIDGenerated(t *testing.T) {
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})
	for _, requestID := range []string{"", strings.Repeat("r", maxRequestIDLen+1), "bad id"} {
		h.run(exchange{path: generalPath, caller: "bob", requestID: requestID, requestBody: body, status: "200"})
	}

	records := h.finish(t)
	if len(records) != 3 {
		t.Fatalf("got %d records, want 3", len(records))
	}
	seen := map[string]bool{}
	for _, rec := range records {
		if len(rec.GetRequestId()) != 36 {
			t.Errorf("request_id = %q, want a UUID", rec.GetRequestId())
		}
		seen[rec.GetRequestId()] = true
	}
	if len(seen) != 3 {
		t.Errorf("generated request IDs repeat: %v", seen)
	}
}

func TestExchange_TooLarge(t *testing.T) {
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", strings.Repeat("x", 600))}})
	outputs := newCollector("outputs")
	outputs.CollectOutputs = true
	response := restJSON(t, successResponse("v1", textInput("a", "")))

	tests := []struct {
		name      string
		collector collector.Collector
		request   []byte
		response  []byte
	}{
		{name: "request over the cap", collector: newCollector("c1"), request: append(body, bytes.Repeat([]byte(" "), 600)...)},
		{name: "request plus response over the cap", collector: outputs, request: body, response: append(response, bytes.Repeat([]byte(" "), 600)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{MaxCaptureBytes: 1024}, Deps{}, tt.collector)
			x := h.run(exchange{
				path: generalPath, caller: "bob", requestBody: tt.request, chunkSize: 100,
				status: "200", responseBody: tt.response,
			})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}
			if x.job.requestBody != nil || x.job.responseBody != nil {
				t.Error("buffers kept after the cap was passed")
			}

			// Predicts within the cap keep being captured.
			h.run(exchange{path: generalPath, caller: "bob", requestBody: body, status: "200", responseBody: response})

			records := h.finish(t)
			if got := h.captures(t, telemetry.OutcomeTooLarge); got != 1 {
				t.Errorf("too_large = %d, want 1", got)
			}
			if len(records) != 1 {
				t.Errorf("got %d records, want 1 from the predict within the cap", len(records))
			}
		})
	}
}

func TestExchange_UpstreamError(t *testing.T) {
	input := textInput("a", "x")
	restBody := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}})
	grpcBody := grpcFrame(t, &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"}, ModelId: "general",
		Inputs: []*clarifaipb.Input{input},
	}, false)
	failure := &clarifaipb.MultiOutputResponse{Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_FAILURE}}
	grpcOK := grpcFrame(t, successResponse("v1", input), false)
	const grpcPath = "/clarifai.api.V2/PostModelOutputs"

	tests := []struct {
		name    string
		ex      exchange
		reason  string
		records int
	}{
		{name: "rest 200", ex: exchange{path: generalPath, requestBody: restBody, status: "200", responseBody: restJSON(t, successResponse("v1", input))}, records: 1},
		{name: "rest 400", ex: exchange{path: generalPath, requestBody: restBody, status: "400", responseBody: restJSON(t, failure)}, reason: reasonResponseStatus},
		{name: "rest 500", ex: exchange{path: generalPath, requestBody: restBody, status: "500"}, reason: reasonResponseStatus},
		{name: "rest 503", ex: exchange{path: generalPath, requestBody: restBody, status: "503"}, reason: reasonResponseStatus},
		{name: "grpc ok", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcBody, status: "200", responseBody: grpcOK, grpcStatus: "0"}, records: 1},
		{name: "grpc status in trailers", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcBody, status: "200", responseBody: grpcOK, grpcStatus: "3"}, reason: reasonResponseStatus},
		{name: "grpc trailers-only", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcBody, status: "200", grpcStatus: "14", trailersOnly: true}, reason: reasonResponseStatus},
		{name: "grpc http 503", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcBody, status: "503", grpcStatus: "14", trailersOnly: true}, reason: reasonResponseStatus},
		{name: "grpc failure in body", ex: exchange{path: grpcPath, contentType: "application/grpc", requestBody: grpcBody, status: "200", responseBody: grpcFrame(t, failure, false), grpcStatus: "0"}, reason: reasonResponseBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector("c1")
			c.CollectOutputs = true
			h := newHarness(t, Config{}, Deps{}, c)
			tt.ex.caller = "bob"
			if h.run(tt.ex) == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}

			records := h.finish(t)
			if len(records) != tt.records {
				t.Errorf("got %d records, want %d", len(records), tt.records)
			}
			wantErrors := int64(0)
			if tt.reason != "" {
				wantErrors = 1
			}
			if got := h.captures(t, telemetry.OutcomeUpstreamError, tt.reason); got != wantErrors {
				t.Errorf("upstream_error/%s = %d, want %d", tt.reason, got, wantErrors)
			}
			if got := h.captures(t, telemetry.OutcomeOutputFailed); got != 0 {
				t.Errorf("output_failed = %d: output rules ran on an error body", got)
			}
		})
	}
}

func TestExchange_GRPCResponseWithoutTrailers(t *testing.T) {
	input := textInput("a", "x")
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{
		":method": "POST", ":path": "/clarifai.api.V2/PostModelOutputs", "content-type": "application/grpc", "x-test-caller": "bob",
	}})
	x.RequestBody(grpcFrame(t, &clarifaipb.PostModelOutputsRequest{ModelId: "general", Inputs: []*clarifaipb.Input{input}}, false), true)
	x.ResponseHeaders(headers{":status": "200"}, false)
	x.ResponseBody(grpcFrame(t, successResponse("v1", input), false), true)
	x.Close()

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("got %d records from a gRPC response without grpc-status", len(records))
	}
	if got := h.captures(t, telemetry.OutcomeUpstreamError); got != 1 {
		t.Errorf("upstream_error = %d, want 1", got)
	}
}

func TestExchange_Aborted(t *testing.T) {
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("a", "x")}})

	tests := []struct {
		name   string
		drive  func(x *Exchange)
		reason string
	}{
		{
			name:   "before the request ended",
			drive:  func(x *Exchange) { x.RequestBody(body[:10], false) },
			reason: reasonRequestIncomplete,
		},
		{
			name:   "before the response",
			drive:  func(x *Exchange) { x.RequestBody(body, true) },
			reason: reasonResponseIncomplete,
		},
		{
			name: "before the response body ended",
			drive: func(x *Exchange) {
				x.RequestBody(body, true)
				x.ResponseHeaders(headers{":status": "200"}, false)
				x.ResponseBody([]byte(`{"status":`), false)
			},
			reason: reasonResponseIncomplete,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector("c1")
			c.CollectOutputs = true
			h := newHarness(t, Config{}, Deps{}, c)
			x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
			tt.drive(x)
			x.Close()
			x.Close()

			if records := h.finish(t); len(records) != 0 {
				t.Errorf("got %d records from an aborted exchange", len(records))
			}
			if got := h.captures(t, telemetry.OutcomeAborted, tt.reason); got != 1 {
				t.Errorf("aborted/%s = %d, want 1", tt.reason, got)
			}
			if got := h.captures(t, telemetry.OutcomeAborted); got != 1 {
				t.Errorf("aborted = %d in total, want 1 after two Close calls", got)
			}
		})
	}
}

func TestExchange_UnexpectedOrder(t *testing.T) {
	input := textInput("a", "x")
	body := restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}})
	response := restJSON(t, successResponse("v1", input))
	ok := headers{":status": "200"}

	tests := []struct {
		name  string
		drive func(x *Exchange)
	}{
		{name: "response before the request body", drive: func(x *Exchange) {
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
		}},
		{name: "body after end of stream", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.RequestBody(body, true)
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
		}},
		{name: "response body before response headers", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.ResponseBody(response, true)
			x.ResponseHeaders(ok, false)
		}},
		{name: "response headers twice", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.ResponseHeaders(ok, false)
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
		}},
		{name: "response body after end of stream", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
			x.ResponseBody(response, true)
		}},
		{name: "trailers after end of stream", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.RequestTrailers(headers{})
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
		}},
		{name: "nil headers", drive: func(x *Exchange) {
			x.RequestBody(body, true)
			x.ResponseHeaders(nil, false)
			x.ResponseTrailers(nil)
		}},
		{name: "calls after close", drive: func(x *Exchange) {
			x.Close()
			x.RequestBody(body, true)
			x.ResponseHeaders(ok, false)
			x.ResponseBody(response, true)
			x.ResponseTrailers(headers{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector("c1")
			c.CollectOutputs = true
			h := newHarness(t, Config{}, Deps{}, c)
			x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
			if x == nil {
				t.Fatal("Begin returned nil, want an exchange")
			}
			tt.drive(x)
			x.Close()

			if records := h.finish(t); len(records) != 0 {
				t.Errorf("got %d records, want none", len(records))
			}
			if got := h.captures(t, telemetry.OutcomeAborted); got != 1 {
				t.Errorf("aborted = %d, want 1", got)
			}
		})
	}
}

func TestExchange_RequestTrailersEndRequest(t *testing.T) {
	input := textInput("a", "x")
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{
		":method": "POST", ":path": "/clarifai.api.V2/PostModelOutputs", "content-type": "application/grpc", "x-test-caller": "bob",
	}})
	frame := grpcFrame(t, &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"}, ModelId: "general",
		Inputs: []*clarifaipb.Input{input},
	}, false)
	// A request with trailers ends without end_of_stream on its last chunk.
	sendChunks(frame, 3, x.RequestBody, false)
	x.RequestTrailers(headers{"x-trailer": "1"})
	x.ResponseHeaders(headers{":status": "200", "content-type": "application/grpc"}, false)
	sendChunks(grpcFrame(t, successResponse("v1", input), false), 4, x.ResponseBody, false)
	x.ResponseTrailers(headers{"grpc-status": "0"})
	x.Close()

	records := h.finish(t)
	if len(records) != 1 {
		t.Fatalf("got %d records, want 1", len(records))
	}
	if !proto.Equal(records[0].GetInput(), input) {
		t.Errorf("input = %v, want %v", records[0].GetInput(), input)
	}
}

func TestEngine_GRPCCapture(t *testing.T) {
	image := testImage(t)
	inputs := []*clarifaipb.Input{
		{Id: "img", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}},
		textInput("txt", "hello"),
	}
	request := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general",
		Inputs:    inputs,
	}
	other := proto.Clone(request).(*clarifaipb.PostModelOutputsRequest)
	other.ModelId = "other"

	tests := []struct {
		name     string
		request  *clarifaipb.PostModelOutputsRequest
		encoding string
		compress bool
		records  int
		outcome  string
	}{
		{name: "plain", request: request, records: 2, outcome: telemetry.OutcomeMatched},
		{name: "gzip", request: request, encoding: "gzip", compress: true, records: 2, outcome: telemetry.OutcomeMatched},
		{name: "unsupported encoding", request: request, encoding: "snappy", compress: true, outcome: telemetry.OutcomeUnsupportedEncoding},
		{name: "model without collector", request: other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCollector("c1")
			c.CollectOutputs = true
			h := newHarness(t, Config{}, Deps{}, c)
			var reqHeaders headers
			if tt.encoding != "" {
				reqHeaders = headers{"grpc-encoding": tt.encoding}
			}
			h.run(exchange{
				path: "/clarifai.api.V2/PostModelOutputs", contentType: "application/grpc", caller: "bob", requestID: "g1",
				requestHeaders: reqHeaders, requestBody: grpcFrame(t, tt.request, tt.compress), chunkSize: 4096,
				status: "200", responseBody: grpcFrame(t, successResponse("v7", inputs...), false), grpcStatus: "0",
			})

			records := h.finish(t)
			if len(records) != tt.records {
				t.Fatalf("got %d records, want %d", len(records), tt.records)
			}
			for i, rec := range records {
				if !proto.Equal(rec.GetInput(), inputs[i]) {
					t.Errorf("record %d input differs", i)
				}
				if rec.GetModelVersionId() != "v7" {
					t.Errorf("model_version_id = %q, want v7 from the response", rec.GetModelVersionId())
				}
				if len(rec.GetOutputConcepts()) != 1 || rec.GetOutputConcepts()[0].GetId() != "concept-"+strconv.Itoa(i) {
					t.Errorf("record %d output concepts = %v", i, rec.GetOutputConcepts())
				}
			}
			if tt.outcome != "" && h.captures(t, tt.outcome) == 0 {
				t.Errorf("no %s counted", tt.outcome)
			}
		})
	}
}

func TestExchange_Abandon(t *testing.T) {
	input := textInput("a", "x")
	h := newHarness(t, Config{}, Deps{}, newCollector("c1"))
	x := h.engine.Begin(context.Background(), RequestInfo{Headers: headers{":method": "POST", ":path": generalPath, "x-test-caller": "bob"}})
	x.RequestBody(restJSON(t, &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{input}}), true)
	x.ResponseHeaders(headers{":status": "200"}, true)
	x.Abandon()
	x.Close()
	x.Abandon()

	if records := h.finish(t); len(records) != 0 {
		t.Errorf("got %d records from an abandoned exchange", len(records))
	}
	if got := h.captures(t, telemetry.OutcomeAborted, reasonAbandoned); got != 1 {
		t.Errorf("aborted/abandoned = %d, want 1", got)
	}
	if got := h.captures(t, telemetry.OutcomeAborted); got != 1 {
		t.Errorf("aborted = %d in total, want 1", got)
	}
}
