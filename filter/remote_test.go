package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

const testKey = "remote-test-key-5f2c9a"

// receivedRequest is what the fake API saw of one predict request.
type receivedRequest struct {
	method string
	// path is escaped, so that an id containing "/" shows as one segment.
	path          string
	authorization string
	contentType   string
	body          *clarifaipb.PostModelOutputsRequest
	bodyErr       error
}

// fakeClarifai is a stand-in for a Clarifai-compatible model API on 127.0.0.1. Its
// handler responds to every request with respond.
type fakeClarifai struct {
	server  *httptest.Server
	respond func(w http.ResponseWriter, r *http.Request)

	mu       sync.Mutex
	requests []receivedRequest
	// connections counts the TCP connections that clients opened.
	connections atomic.Int64
	// release unblocks handlers that wait for the client to give up.
	release chan struct{}
}

func newFakeClarifai(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) *fakeClarifai {
	t.Helper()

	fake := &fakeClarifai{respond: respond, release: make(chan struct{})}
	fake.server = httptest.NewUnstartedServer(http.HandlerFunc(fake.serve))
	fake.server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			fake.connections.Add(1)
		}
	}
	fake.server.Start()

	// Cleanups run last in, first out: release blocked handlers, then close.
	t.Cleanup(fake.server.Close)
	t.Cleanup(func() { close(fake.release) })

	return fake
}

func (f *fakeClarifai) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)

	received := receivedRequest{
		method:        r.Method,
		path:          r.URL.EscapedPath(),
		authorization: r.Header.Get("Authorization"),
		contentType:   r.Header.Get("Content-Type"),
		body:          &clarifaipb.PostModelOutputsRequest{},
		bodyErr:       err,
	}
	if err == nil {
		received.bodyErr = protojson.Unmarshal(raw, received.body)
	}

	f.mu.Lock()
	f.requests = append(f.requests, received)
	f.mu.Unlock()

	f.respond(w, r)
}

// lastRequest returns the most recent request, failing the test when there is none.
func (f *fakeClarifai) lastRequest(t *testing.T) receivedRequest {
	t.Helper()

	f.mu.Lock()
	defer f.mu.Unlock()

	if len(f.requests) == 0 {
		t.Fatal("the fake API received no request")
	}

	return f.requests[len(f.requests)-1]
}

// requestCount returns how many requests the fake API received.
func (f *fakeClarifai) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()

	return len(f.requests)
}

// respondJSON returns a handler that writes status and body as JSON, with extra headers.
func respondJSON(status int, body string, headers ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// remoteInput is the captured input that the tests send to the remote model.
func remoteInput() *clarifaipb.Input {
	return &clarifaipb.Input{
		Id: "in-1",
		Data: &clarifaipb.Data{
			Image: &clarifaipb.Image{Url: "https://samples.example/cat.jpg"},
		},
	}
}

// remoteModel returns an operator calling the fake API as model general of user u, app a.
func remoteModel(fake *fakeClarifai, timeout time.Duration) *RemoteModel {
	return &RemoteModel{
		EndpointName: "vision",
		Endpoint:     &RemoteEndpoint{BaseURL: fake.server.URL, Key: testKey, Timeout: timeout},
		UserID:       "u",
		AppID:        "a",
		ModelID:      "general",
		VersionID:    "v7",
	}
}

func TestRemoteModel_Apply(t *testing.T) {
	const success = `{"status": {"code": 10000, "description": "Ok"},
		"outputs": [{"id": "o1", "status": {"code": 10000}, "input": {"id": "in-1"},
			"data": {"concepts": [{"id": "cat", "name": "cat", "value": 0.6000000238418579}, {"id": "pet", "value": 0.25}]}}]}`

	tests := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request)
		want    []string
		// wantHTTP is the HTTP status in the RemoteError, or -1 when Apply must succeed.
		wantHTTP       int
		wantCode       clarifaipb.StatusCode
		wantRetryAfter time.Duration
	}{
		{"success", respondJSON(200, success), []string{"cat", "pet"}, -1, 0, 0},
		{"success with unknown fields", respondJSON(200, `{"status": {"code": 10000, "req_id": "r1"}, "outputs": [{"status": {"code": 10000}, "created_at": "2025-01-01T00:00:00Z", "model": {"id": "general", "app_id": "a"}, "data": {"concepts": [{"id": "cat", "value": 0.9, "app_id": "main"}]}}]}`), []string{"cat"}, -1, 0, 0},
		{"success without concepts", respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}, "data": {}}]}`), []string{}, -1, 0, 0},
		{"mixed status input failed", respondJSON(200, `{"status": {"code": 10010, "description": "Mixed Success"}, "outputs": [{"status": {"code": 30002, "description": "Input failed", "details": "Failed to download the image"}, "input": {"id": "in-1"}}]}`), []string{}, -1, 0, 0},
		{"mixed status enum names", respondJSON(200, `{"status": {"code": "MIXED_STATUS"}, "outputs": [{"status": {"code": "INPUT_FAILED"}}]}`), []string{}, -1, 0, 0},
		{"output try again", respondJSON(200, `{"status": {"code": 10010}, "outputs": [{"status": {"code": 10030, "description": "Try the request again"}}]}`), nil, 200, clarifaipb.StatusCode_TRY_AGAIN, 0},
		{"throttled with retry after", respondJSON(429, `{"status": {"code": 11005, "description": "Making too many requests"}}`, "Retry-After", "7"), nil, 429, 11005, 7 * time.Second},
		{"server error", respondJSON(500, `{"status": {"code": 99009, "description": "Internal error"}}`), nil, 500, clarifaipb.StatusCode_INTERNAL_UNCATEGORIZED, 0},
		{"bad gateway without body", respondJSON(502, ``), nil, 502, 0, 0},
		{"unauthorized", respondJSON(401, `{"status": {"code": 11008, "description": "API key not found", "details": "key `+testKey+` is not valid"}}`), nil, 401, clarifaipb.StatusCode_CONN_KEY_INVALID, 0},
		{"forbidden", respondJSON(403, `{"status": {"code": 11007, "description": "Insufficient scopes"}}`), nil, 403, clarifaipb.StatusCode_CONN_INSUFFICIENT_SCOPES, 0},
		{"model not found", respondJSON(404, `{"status": {"code": 21200, "description": "Model does not exist"}}`), nil, 404, clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST, 0},
		{"bad request", respondJSON(400, `{"status": {"code": 21202, "description": "Invalid argument"}}`), nil, 400, clarifaipb.StatusCode_MODEL_INVALID_ARGUMENT, 0},
		{"garbage body", respondJSON(200, `<html>upstream connect error</html>`), nil, 200, 0, 0},
		{"overall failure", respondJSON(200, `{"status": {"code": 10020, "description": "Failure", "details": "Gateway timeout"}, "outputs": [{"status": {"code": 30002}}]}`), nil, 200, clarifaipb.StatusCode_FAILURE, 0},
		{"missing status", respondJSON(200, `{"outputs": [{"status": {"code": 10000}, "data": {"concepts": [{"id": "cat", "value": 0.9}]}}]}`), nil, 200, 0, 0},
		{"no outputs", respondJSON(200, `{"status": {"code": 10000}, "outputs": []}`), nil, 200, clarifaipb.StatusCode_SUCCESS, 0},
		{"two outputs", respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}, {"status": {"code": 10000}}]}`), nil, 200, clarifaipb.StatusCode_SUCCESS, 0},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeClarifai(t, tt.respond)
			op := remoteModel(fake, 0)
			input := remoteInput()

			got, err := op.Apply(context.Background(), &Item{Input: input}, concepts("ignored", float32(1)))

			requireRequest(t, fake.lastRequest(t), "/v2/users/u/apps/a/models/general/versions/v7/outputs", input)

			if tt.wantHTTP < 0 {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}

				if ids := conceptIDs(got); !slices.Equal(ids, tt.want) {
					t.Errorf("Apply passed %v, want %v", ids, tt.want)
				}

				return
			}

			var remoteErr *RemoteError
			if !errors.As(err, &remoteErr) {
				t.Fatalf("Apply = %v, %v; want a *RemoteError", conceptIDs(got), err)
			}

			if remoteErr.HTTPStatus != tt.wantHTTP {
				t.Errorf("HTTPStatus = %d, want %d", remoteErr.HTTPStatus, tt.wantHTTP)
			}

			if remoteErr.Code != tt.wantCode {
				t.Errorf("Code = %v, want %v", remoteErr.Code, tt.wantCode)
			}

			if remoteErr.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", remoteErr.RetryAfter, tt.wantRetryAfter)
			}

			if len(got) != 0 {
				t.Errorf("Apply passed %v together with an error", conceptIDs(got))
			}

			requireErrorNames(t, err, `"vision"`)
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q contains the endpoint key", err)
			}
		})
	}
}

// requireRequest checks the path, headers and body of a predict request.
func requireRequest(t *testing.T, got receivedRequest, path string, input *clarifaipb.Input) {
	t.Helper()

	if got.method != http.MethodPost {
		t.Errorf("method = %s, want POST", got.method)
	}

	if got.path != path {
		t.Errorf("path = %s, want %s", got.path, path)
	}

	if got.authorization != "Key "+testKey {
		t.Errorf("Authorization = %q, want %q", got.authorization, "Key "+testKey)
	}

	if got.contentType != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got.contentType)
	}

	if got.bodyErr != nil {
		t.Fatalf("request body is not a PostModelOutputsRequest: %v", got.bodyErr)
	}

	if len(got.body.GetInputs()) != 1 || !proto.Equal(got.body.GetInputs()[0], input) {
		t.Errorf("request inputs = %v, want exactly %v", got.body.GetInputs(), input)
	}
}

func TestRemoteModel_RequestBody(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}]}`))
	op := remoteModel(fake, 0)

	if _, err := op.Apply(context.Background(), &Item{Input: remoteInput()}, nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	body := fake.lastRequest(t).body
	if body.GetModelId() != "general" {
		t.Errorf("model_id = %q, want general", body.GetModelId())
	}

	if body.GetVersionId() != "v7" {
		t.Errorf("version_id = %q, want v7", body.GetVersionId())
	}

	if user, app := body.GetUserAppId().GetUserId(), body.GetUserAppId().GetAppId(); user != "u" || app != "a" {
		t.Errorf("user_app_id = %s/%s, want u/a", user, app)
	}
}

func TestRemoteModel_Paths(t *testing.T) {
	tests := []struct {
		name      string
		userID    string
		appID     string
		versionID string
		baseSlash bool
		want      string
	}{
		{"user app and version", "u", "a", "v1", false, "/v2/users/u/apps/a/models/general/versions/v1/outputs"},
		{"latest version", "u", "a", "", false, "/v2/users/u/apps/a/models/general/outputs"},
		{"app of the key", "", "", "", false, "/v2/models/general/outputs"},
		{"base URL with trailing slash", "u", "a", "", true, "/v2/users/u/apps/a/models/general/outputs"},
		{"escaped ids", "u/x", "a b", "v?1", false, "/v2/users/u%2Fx/apps/a%20b/models/general/versions/v%3F1/outputs"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}]}`))
			op := remoteModel(fake, 0)
			op.UserID, op.AppID, op.VersionID = tt.userID, tt.appID, tt.versionID
			if tt.baseSlash {
				op.Endpoint.BaseURL += "/"
			}

			if _, err := op.Apply(context.Background(), &Item{Input: remoteInput()}, nil); err != nil {
				t.Fatalf("Apply: %v", err)
			}

			if got := fake.lastRequest(t).path; got != tt.want {
				t.Errorf("path = %s, want %s", got, tt.want)
			}

			if tt.userID == "" && fake.lastRequest(t).body.GetUserAppId() != nil {
				t.Errorf("user_app_id = %v, want none when the key's app is used", fake.lastRequest(t).body.GetUserAppId())
			}
		})
	}
}

func TestRemoteModel_Timeout(t *testing.T) {
	fake := newFakeClarifai(t, nil)
	fake.respond = func(_ http.ResponseWriter, r *http.Request) {
		// Respond only after the client gave up, or when the test ends.
		select {
		case <-r.Context().Done():
		case <-fake.release:
		}
	}
	op := remoteModel(fake, 50*time.Millisecond)

	_, err := op.Apply(context.Background(), &Item{Input: remoteInput()}, nil)

	var remoteErr *RemoteError
	if !errors.As(err, &remoteErr) {
		t.Fatalf("Apply error = %v, want a *RemoteError", err)
	}

	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("Apply error = %v, want a timeout", err)
	}

	if remoteErr.HTTPStatus != 0 {
		t.Errorf("HTTPStatus = %d, want 0 because no response arrived", remoteErr.HTTPStatus)
	}

	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the endpoint key", err)
	}
}

func TestRemoteModel_ConnectionRefused(t *testing.T) {
	// A listener that is closed at once leaves a 127.0.0.1 port that refuses connections.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	address := listener.Addr().String()
	listener.Close()

	op := &RemoteModel{EndpointName: "down", Endpoint: &RemoteEndpoint{BaseURL: "http://" + address, Key: testKey}, ModelID: "general"}

	_, err = op.Apply(context.Background(), &Item{Input: remoteInput()}, nil)

	var remoteErr *RemoteError
	if !errors.As(err, &remoteErr) {
		t.Fatalf("Apply error = %v, want a *RemoteError", err)
	}

	requireErrorNames(t, err, `"down"`)
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the endpoint key", err)
	}
}

func TestRemoteModel_OutputInput(t *testing.T) {
	// Without Item.Input, the input echoed in the predict output is sent.
	fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}}]}`))
	op := remoteModel(fake, 0)
	input := remoteInput()

	if _, err := op.Apply(context.Background(), &Item{Output: &clarifaipb.Output{Input: input}}, nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	requireRequest(t, fake.lastRequest(t), "/v2/users/u/apps/a/models/general/versions/v7/outputs", input)

	if _, err := op.Apply(context.Background(), &Item{}, nil); err == nil {
		t.Errorf("Apply on an item without input succeeded, want an error")
	}
}

func TestRemoteModel_KeepAlive(t *testing.T) {
	fake := newFakeClarifai(t, respondJSON(200, `{"status": {"code": 10000}, "outputs": [{"status": {"code": 10000}, "data": {"concepts": [{"id": "cat", "value": 0.9}]}}]}`))
	endpoints := map[string]*RemoteEndpoint{"vision": {BaseURL: fake.server.URL, Key: testKey}}
	workflow := &clarifaipb.Workflow{Nodes: []*clarifaipb.WorkflowNode{
		node(t, "remote", TypeRemoteModel, map[string]any{"endpoint": "vision", "model_id": "general"}, ""),
	}}

	// Two compilations of the same Config share the endpoint's client and connections.
	var flows []*Workflow
	for range 2 {
		wf, err := Config{RemoteEndpoints: endpoints}.Compile(workflow)
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		flows = append(flows, wf)
	}

	first := flows[0].Nodes[0].Operator.(*RemoteModel).Endpoint.httpClient()
	second := flows[1].Nodes[0].Operator.(*RemoteModel).Endpoint.httpClient()
	if first != second {
		t.Errorf("the two compilations use different HTTP clients for one endpoint")
	}

	for i := range 4 {
		decision, err := flows[i%2].EvaluateInput(context.Background(), &Item{Input: remoteInput()}, nil)
		if err != nil || !decision.Keep {
			t.Fatalf("EvaluateInput = %+v, %v; want keep", decision, err)
		}
	}

	if got := fake.connections.Load(); got != 1 {
		t.Errorf("4 sequential requests opened %d connections, want 1 kept alive", got)
	}
}

func TestRemoteEndpoint_StringHidesKey(t *testing.T) {
	endpoint := &RemoteEndpoint{BaseURL: "http://127.0.0.1:1", Key: testKey}
	endpoints := map[string]*RemoteEndpoint{"vision": endpoint}

	for _, printed := range []string{endpoint.String(), fmt.Sprint(endpoints), fmt.Sprintf("%+v", endpoints), fmt.Sprintf("%#v", endpoints)} {
		if strings.Contains(printed, testKey) {
			t.Errorf("printed endpoint %q contains the key", printed)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"99999999999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}

	for _, tt := range tests {
		if got := parseRetryAfter(tt.value, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}
