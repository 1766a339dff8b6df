package predict

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// mixedResponseJSON is a REST predict response where the first input failed
// and the second succeeded, in the shape Clarifai returns.
const mixedResponseJSON = `{
	"status": {"code": 10010, "description": "Mixed Success", "req_id": "r-1"},
	"outputs": [
		{
			"id": "out-1",
			"status": {"code": 30002, "description": "Input failed", "details": "Failure while downloading the input"},
			"input": {"id": "in-1", "data": {"image": {"url": "https://img.example/broken.jpg"}}},
			"data": {}
		},
		{
			"id": "out-2",
			"status": {"code": 10000, "description": "Ok"},
			"created_at": "2026-01-02T03:04:05.123456Z",
			"model": {"id": "general-image-recognition", "model_version": {"id": "aa7f35c01e0642fda5cf400f543e7c40", "status": {"code": 21100}}},
			"input": {"id": "in-2", "data": {"image": {"url": "https://img.example/metro-north.jpg"}}},
			"data": {"concepts": [
				{"id": "ai_HLmqFqBf", "name": "train", "value": 0.9996053, "app_id": "main"},
				{"id": "ai_fvlBqXZR", "name": "railway", "value": 0.99739265},
				{"id": "ai_tiny", "name": "tiny", "value": 1.0e-45}
			]},
			"prompt_tokens": 0
		}
	],
	"runner_selector": {"nodepool": {"id": "n"}}
}`

func TestParseResponse_RESTMixedStatus(t *testing.T) {
	got, err := ParseResponse(restRoute, []byte(mixedResponseJSON), "")
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if got.Status != clarifaipb.StatusCode_MIXED_STATUS {
		t.Errorf("Status = %v, want MIXED_STATUS", got.Status)
	}
	if got.ModelVersionID != "aa7f35c01e0642fda5cf400f543e7c40" {
		t.Errorf("ModelVersionID = %q, want the second output's version", got.ModelVersionID)
	}
	if len(got.Outputs) != 2 {
		t.Fatalf("got %d outputs, want 2", len(got.Outputs))
	}
	if code := got.Outputs[0].GetStatus().GetCode(); code != clarifaipb.StatusCode_INPUT_FAILED {
		t.Errorf("output 0 status = %v, want INPUT_FAILED", code)
	}
	if code := got.Outputs[1].GetModel().GetModelVersion().GetStatus().GetCode(); code != 21100 {
		t.Errorf("a status code outside the enum = %d, want 21100 kept", code)
	}

	concepts := got.Outputs[1].GetData().GetConcepts()
	wantValues := []float32{0.9996053, 0.99739265, 1.0e-45}
	if len(concepts) != len(wantValues) {
		t.Fatalf("got %d concepts, want %d", len(concepts), len(wantValues))
	}
	for i, want := range wantValues {
		if concepts[i].GetValue() != want {
			t.Errorf("concept %d value = %v, want float32 %v", i, concepts[i].GetValue(), want)
		}
	}

	if out := got.OutputFor(0, "in-1"); out != nil {
		t.Errorf("OutputFor the failed input = %v, want nil", out)
	}
	if out := got.OutputFor(1, "in-2"); out.GetId() != "out-2" {
		t.Errorf("OutputFor the succeeded input = %v, want out-2", out)
	}
}

func TestParseResponse_RESTStatus(t *testing.T) {
	tests := []struct {
		name string
		body string
		want clarifaipb.StatusCode
	}{
		{"code as number", `{"status":{"code":10000},"outputs":[]}`, clarifaipb.StatusCode_SUCCESS},
		{"code as name", `{"status":{"code":"SUCCESS"}}`, clarifaipb.StatusCode_SUCCESS},
		{"auth failure", `{"status":{"code":11009,"description":"API key not found"}}`, clarifaipb.StatusCode_CONN_KEY_NOT_FOUND},
		{"unknown name ignored", `{"status":{"code":"SOME_NEW_CODE"}}`, clarifaipb.StatusCode_ZERO},
		{"no status", `{}`, clarifaipb.StatusCode_ZERO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(restRoute, []byte(tt.body), "")
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got.Status != tt.want {
				t.Errorf("Status = %v, want %v", got.Status, tt.want)
			}
		})
	}
}

// sampleResponse is a gRPC predict response with mixed per-output status.
func sampleResponse() *clarifaipb.MultiOutputResponse {
	return &clarifaipb.MultiOutputResponse{
		Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_MIXED_STATUS},
		Outputs: []*clarifaipb.Output{
			{
				Id:     "out-1",
				Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS},
				Model:  &clarifaipb.Model{Id: "m1"},
				Data:   &clarifaipb.Data{Concepts: []*clarifaipb.Concept{{Id: "c1", Value: 0.12345679}}},
			},
			{
				Id:     "out-2",
				Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_FAILED},
				Model:  &clarifaipb.Model{Id: "m1", ModelVersion: &clarifaipb.ModelVersion{Id: "v7"}},
			},
		},
	}
}

func TestParseResponse_GRPC(t *testing.T) {
	want := sampleResponse()
	payload := marshalProto(t, want)

	tests := []struct {
		name     string
		body     []byte
		encoding string
	}{
		{"uncompressed", frame(false, payload), ""},
		{"gzip", frame(true, gzipBytes(t, payload)), "gzip"},
		{"second message ignored", append(frame(false, payload), frame(false, nil)...), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(grpcRoute, tt.body, tt.encoding)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got.Status != clarifaipb.StatusCode_MIXED_STATUS {
				t.Errorf("Status = %v, want MIXED_STATUS", got.Status)
			}
			if got.ModelVersionID != "v7" {
				t.Errorf("ModelVersionID = %q, want v7 from the first output that names a version", got.ModelVersionID)
			}
			if len(got.Outputs) != len(want.GetOutputs()) {
				t.Fatalf("got %d outputs, want %d", len(got.Outputs), len(want.GetOutputs()))
			}
			for i := range got.Outputs {
				if !proto.Equal(got.Outputs[i], want.GetOutputs()[i]) {
					t.Errorf("output %d differs:\n got: %v\nwant: %v", i, got.Outputs[i], want.GetOutputs()[i])
				}
			}
			if v := got.Outputs[0].GetData().GetConcepts()[0].GetValue(); v != float32(0.12345679) {
				t.Errorf("concept value = %v, want float32 0.12345679", v)
			}
		})
	}
}

func TestParseResponse_Errors(t *testing.T) {
	payload := marshalProto(t, sampleResponse())
	tests := []struct {
		name     string
		route    Route
		body     []byte
		encoding string
		want     error
	}{
		{"REST empty", restRoute, nil, "", ErrMalformed},
		{"REST HTML error page", restRoute, []byte("<html><body>502 Bad Gateway</body></html>"), "", ErrMalformed},
		{"REST outputs not a list", restRoute, []byte(`{"outputs":{}}`), "", ErrMalformed},
		{"gRPC trailers-only", grpcRoute, nil, "", ErrMalformed},
		{"gRPC truncated", grpcRoute, frame(false, payload)[:20], "", ErrTruncatedFrame},
		{"gRPC unsupported encoding", grpcRoute, frame(true, payload), "br", ErrUnsupportedEncoding},
		{"gRPC garbage", grpcRoute, frame(false, []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(tt.route, tt.body, tt.encoding)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("ParseResponse returned %+v with an error", got)
			}
		})
	}
}

func TestResponse_OutputFor(t *testing.T) {
	success := &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS}
	failed := &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_FAILED}
	output := func(id, inputID string, status *clarifaipb.Status) *clarifaipb.Output {
		out := &clarifaipb.Output{Id: id, Status: status}
		if inputID != "" {
			out.Input = &clarifaipb.Input{Id: inputID}
		}
		return out
	}

	tests := []struct {
		name     string
		outputs  []*clarifaipb.Output
		index    int
		inputID  string
		wantID   string
		wantNone bool
	}{
		{name: "by position", outputs: []*clarifaipb.Output{output("o0", "", success), output("o1", "", success)}, index: 1, wantID: "o1"},
		{name: "position with server-assigned id", outputs: []*clarifaipb.Output{output("o0", "gen-a", success), output("o1", "gen-b", success)}, index: 0, wantID: "o0"},
		{name: "by id out of order", outputs: []*clarifaipb.Output{output("o0", "b", success), output("o1", "a", success)}, index: 0, inputID: "a", wantID: "o1"},
		{name: "id matches position", outputs: []*clarifaipb.Output{output("o0", "a", success), output("o1", "b", success)}, index: 1, inputID: "b", wantID: "o1"},
		{name: "repeated id pairs by position", outputs: []*clarifaipb.Output{output("o0", "dup", success), output("o1", "dup", success)}, index: 1, inputID: "dup", wantID: "o1"},
		{name: "id not echoed falls back to position", outputs: []*clarifaipb.Output{output("o0", "", success)}, index: 0, inputID: "a", wantID: "o0"},
		{name: "id missing from outputs", outputs: []*clarifaipb.Output{output("o0", "x", success)}, index: 0, inputID: "a", wantNone: true},
		{name: "failed output", outputs: []*clarifaipb.Output{output("o0", "a", failed)}, index: 0, inputID: "a", wantNone: true},
		{name: "failed by position", outputs: []*clarifaipb.Output{output("o0", "", success), output("o1", "", failed)}, index: 1, wantNone: true},
		{name: "no status", outputs: []*clarifaipb.Output{output("o0", "", nil)}, index: 0, wantNone: true},
		{name: "index past outputs", outputs: []*clarifaipb.Output{output("o0", "", success)}, index: 1, wantNone: true},
		{name: "negative index", outputs: []*clarifaipb.Output{output("o0", "", success)}, index: -1, wantNone: true},
		{name: "no outputs", index: 0, wantNone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			response := &Response{Status: clarifaipb.StatusCode_SUCCESS, Outputs: tt.outputs}
			got := response.OutputFor(tt.index, tt.inputID)
			if tt.wantNone {
				if got != nil {
					t.Fatalf("OutputFor(%d, %q) = %v, want nil", tt.index, tt.inputID, got)
				}
				return
			}
			if got.GetId() != tt.wantID {
				t.Fatalf("OutputFor(%d, %q) = %v, want output %s", tt.index, tt.inputID, got, tt.wantID)
			}
		})
	}
}

func TestResponse_OutputForNil(t *testing.T) {
	var response *Response
	if got := response.OutputFor(0, "a"); got != nil {
		t.Errorf("nil Response OutputFor = %v, want nil", got)
	}
}

func TestParseResponse_RESTGzip(t *testing.T) {
	body := gzipBytes(t, []byte(mixedResponseJSON))

	got, err := ParseResponse(restRoute, body, "")
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if got.Status != clarifaipb.StatusCode_MIXED_STATUS || len(got.Outputs) != 2 {
		t.Errorf("got status %v with %d outputs, want MIXED_STATUS with 2", got.Status, len(got.Outputs))
	}

	_, err = ParseResponse(restRoute, body[:len(body)/2], "")
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("cut gzip body: error = %v, want ErrMalformed", err)
	}
}
