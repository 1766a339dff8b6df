package model

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// startServer serves a demo Server on 127.0.0.1 with HTTP/1.1 and
// unencrypted HTTP/2.
func startServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewHTTPServer(New(cfg).Handler(), slog.New(slog.DiscardHandler))
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// postJSON posts body to url and decodes the MultiOutputResponse.
func postJSON(t *testing.T, method, url, body string) (int, *clarifaipb.MultiOutputResponse) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()

	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	resp := &clarifaipb.MultiOutputResponse{}
	if err := protojson.Unmarshal(raw, resp); err != nil {
		t.Fatalf("response is not a MultiOutputResponse: %v\n%s", err, raw)
	}
	return res.StatusCode, resp
}

func newGRPCClient(t *testing.T, address string) clarifaipb.V2Client {
	t.Helper()
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return clarifaipb.NewV2Client(conn)
}

func TestHandler_RESTPaths(t *testing.T) {
	ts := startServer(t, Config{})
	body := `{"inputs":[{"id":"t1","data":{"text":{"raw":"Hello?"}}}]}`
	tests := []struct {
		path        string
		wantVersion string
	}{
		{"/v2/users/demo/apps/main/models/text-stats/versions/v9/outputs", "v9"},
		{"/v2/users/demo/apps/main/models/text-stats/outputs", DefaultVersionID},
		{"/v2/models/text-stats/versions/v3/outputs", "v3"},
		{"/v2/models/text-stats/outputs?extra=1", DefaultVersionID},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			httpStatus, resp := postJSON(t, http.MethodPost, ts.URL+tt.path, body)

			if httpStatus != http.StatusOK {
				t.Errorf("HTTP status = %d, want 200", httpStatus)
			}
			if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
				t.Fatalf("status = %v, want SUCCESS", got)
			}
			output := resp.GetOutputs()[0]
			if got := output.GetModel().GetModelVersion().GetId(); got != tt.wantVersion {
				t.Errorf("model version = %q, want %q", got, tt.wantVersion)
			}
			if output.GetInput().GetId() != "t1" || output.GetInput().GetData().GetText().GetRaw() != "Hello?" {
				t.Errorf("echoed input = %v, want id t1 with the text", output.GetInput())
			}
			if values := conceptValues(output); values["question"] != 1 {
				t.Errorf("concepts = %v, want question 1", values)
			}
		})
	}
}

func TestHandler_RESTErrors(t *testing.T) {
	ts := startServer(t, Config{})
	tests := []struct {
		name, method, path, body string
		wantHTTP                 int
		wantCode                 clarifaipb.StatusCode
	}{
		{"malformed JSON", http.MethodPost, "/v2/models/colors/outputs", `{"inputs":[`, http.StatusBadRequest, clarifaipb.StatusCode_PREDICT_INVALID_REQUEST},
		{"wrong field type", http.MethodPost, "/v2/models/colors/outputs", `{"inputs":"x"}`, http.StatusBadRequest, clarifaipb.StatusCode_PREDICT_INVALID_REQUEST},
		{"unknown model", http.MethodPost, "/v2/models/nope/outputs", `{"inputs":[{"data":{"text":{"raw":"a"}}}]}`, http.StatusNotFound, clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST},
		{"other owner", http.MethodPost, "/v2/users/x/apps/main/models/colors/outputs", `{"inputs":[{"data":{"text":{"raw":"a"}}}]}`, http.StatusNotFound, clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST},
		{"no inputs", http.MethodPost, "/v2/models/colors/outputs", `{}`, http.StatusBadRequest, clarifaipb.StatusCode_PREDICT_INVALID_REQUEST},
		{"GET", http.MethodGet, "/v2/models/colors/outputs", ``, http.StatusMethodNotAllowed, clarifaipb.StatusCode_CONN_METHOD_NOT_ALLOWED},
		{"unknown path", http.MethodPost, "/v2/inputs", `{}`, http.StatusNotFound, clarifaipb.StatusCode_CONN_DOES_NOT_EXIST},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			httpStatus, resp := postJSON(t, tt.method, ts.URL+tt.path, tt.body)

			if httpStatus != tt.wantHTTP {
				t.Errorf("HTTP status = %d, want %d", httpStatus, tt.wantHTTP)
			}
			if got := resp.GetStatus().GetCode(); got != tt.wantCode {
				t.Errorf("status = %v, want %v", got, tt.wantCode)
			}
			if resp.GetStatus().GetDescription() == "" {
				t.Errorf("status has no description: %v", resp.GetStatus())
			}
		})
	}
}

func TestHandler_RESTMixedStatus(t *testing.T) {
	ts := startServer(t, Config{})
	body := `{"inputs":[
		{"id":"a","data":{"text":{"raw":"fine"}}},
		{"id":"b","data":{"text":{"url":"https://example.com/a.txt"}}}]}`

	httpStatus, resp := postJSON(t, http.MethodPost, ts.URL+"/v2/models/text-stats/outputs", body)

	if httpStatus != http.StatusOK {
		t.Errorf("HTTP status = %d, want 200", httpStatus)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_MIXED_STATUS {
		t.Errorf("status = %v, want MIXED_STATUS", got)
	}
	if got := resp.GetOutputs()[1].GetStatus().GetCode(); got != clarifaipb.StatusCode_INPUT_FAILED {
		t.Errorf("URL output status = %v, want INPUT_FAILED", got)
	}
}

func TestHandler_GRPC(t *testing.T) {
	ts := startServer(t, Config{UserID: "u", AppID: "a"})
	client := newGRPCClient(t, ts.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	png := encodePNG(t, halvesImage(10, 10, pureBlue, pureBlue))
	resp, err := client.PostModelOutputs(ctx, &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "u", AppId: "a"},
		ModelId:   "colors",
		Inputs:    []*clarifaipb.Input{imageInput("img", png)},
	})
	if err != nil {
		t.Fatalf("PostModelOutputs: %v", err)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
		t.Fatalf("status = %v, want SUCCESS", got)
	}
	if values := conceptValues(resp.GetOutputs()[0]); values["blue"] != 1 {
		t.Errorf("concepts = %v, want blue 1", values)
	}
	if model := resp.GetOutputs()[0].GetModel(); model.GetUserId() != "u" || model.GetAppId() != "a" {
		t.Errorf("output model = %v, want owner u/a", model)
	}
}

func TestHandler_GRPCModelNotFound(t *testing.T) {
	ts := startServer(t, Config{})
	client := newGRPCClient(t, ts.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := client.PostModelOutputs(ctx, &clarifaipb.PostModelOutputsRequest{
		ModelId: "missing",
		Inputs:  []*clarifaipb.Input{textInput("", "x")},
	})

	// Clarifai reports errors in the message with gRPC status OK.
	if err != nil {
		t.Fatalf("PostModelOutputs: %v, want gRPC status OK", err)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST {
		t.Errorf("status = %v, want MODEL_DOES_NOT_EXIST", got)
	}
}
