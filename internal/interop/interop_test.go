package interop_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/interop"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

const testKey = "test-key-0123456789"

// testImage holds bytes that survive base64 only if every byte is kept: a PNG
// signature with NUL and 0xFF.
var testImage = []byte("\x89PNG\r\n\x1a\n\x00\xff\xfe\x00IDAT")

var createdAt = timestamppb.New(time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC))

// fakeV2 is a V2 server that records the last request and its metadata. It
// accepts only testKey and, like Clarifai, reports an unknown key in the
// response status with gRPC code OK.
type fakeV2 struct {
	clarifaipb.UnimplementedV2Server

	mu           sync.Mutex
	lastRequest  proto.Message
	lastMetadata metadata.MD

	// collectors is what ListCollectors returns.
	collectors []*clarifaipb.Collector
}

func (s *fakeV2) record(ctx context.Context, req proto.Message) *clarifaipb.Status {
	md, _ := metadata.FromIncomingContext(ctx)

	s.mu.Lock()
	s.lastRequest = proto.Clone(req)
	s.lastMetadata = md.Copy()
	s.mu.Unlock()

	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Key "+testKey {
		return &clarifaipb.Status{Code: clarifaipb.StatusCode_CONN_KEY_NOT_FOUND, Description: "API key not found"}
	}
	return nil
}

func (s *fakeV2) last(t *testing.T) (proto.Message, metadata.MD) {
	t.Helper()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastRequest == nil {
		t.Fatal("the server received no request")
	}
	return s.lastRequest, s.lastMetadata
}

func success() *clarifaipb.Status {
	return &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"}
}

func (s *fakeV2) PostModelOutputs(ctx context.Context, req *clarifaipb.PostModelOutputsRequest) (*clarifaipb.MultiOutputResponse, error) {
	if status := s.record(ctx, req); status != nil {
		return &clarifaipb.MultiOutputResponse{Status: status}, nil
	}

	response := &clarifaipb.MultiOutputResponse{Status: success()}
	for _, in := range req.GetInputs() {
		response.Outputs = append(response.Outputs, &clarifaipb.Output{
			Id:     "output-" + in.GetId(),
			Status: success(),
			Input:  in,
			Data: &clarifaipb.Data{
				Concepts: []*clarifaipb.Concept{{Id: "ai_cat", Name: "cat", Value: 0.99, AppId: "main"}},
			},
		})
	}
	return response, nil
}

func (s *fakeV2) PostCollectors(ctx context.Context, req *clarifaipb.PostCollectorsRequest) (*clarifaipb.MultiCollectorResponse, error) {
	if status := s.record(ctx, req); status != nil {
		return &clarifaipb.MultiCollectorResponse{Status: status}, nil
	}

	response := &clarifaipb.MultiCollectorResponse{Status: success()}
	for _, c := range req.GetCollectors() {
		echoed := proto.CloneOf(c)
		echoed.CreatedAt = createdAt
		response.Collectors = append(response.Collectors, echoed)
	}
	return response, nil
}

func (s *fakeV2) ListCollectors(ctx context.Context, req *clarifaipb.ListCollectorsRequest) (*clarifaipb.MultiCollectorResponse, error) {
	if status := s.record(ctx, req); status != nil {
		return &clarifaipb.MultiCollectorResponse{Status: status}, nil
	}
	return &clarifaipb.MultiCollectorResponse{Status: success(), Collectors: s.collectors}, nil
}

func (s *fakeV2) GetUser(ctx context.Context, req *clarifaipb.GetUserRequest) (*clarifaipb.SingleUserResponse, error) {
	if status := s.record(ctx, req); status != nil {
		return &clarifaipb.SingleUserResponse{Status: status}, nil
	}
	user := &clarifaipb.User{Id: "user-1", FirstName: "Ada", LastName: "Lovelace", CreatedAt: createdAt}
	return &clarifaipb.SingleUserResponse{Status: success(), User: user}, nil
}

// startServer serves srv on a random loopback port and returns its address.
func startServer(t *testing.T, srv *fakeV2) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}

	server := grpc.NewServer()
	clarifaipb.RegisterV2Server(server, srv)
	go func() {
		_ = server.Serve(lis)
	}()
	t.Cleanup(server.Stop)

	return lis.Addr().String()
}

func mustStruct(t *testing.T, fields map[string]any) *structpb.Struct {
	t.Helper()

	s, err := structpb.NewStruct(fields)
	if err != nil {
		t.Fatalf("build struct: %v", err)
	}
	return s
}

func assertAuthorization(t *testing.T, md metadata.MD, want string) {
	t.Helper()

	if got := md.Get("authorization"); len(got) != 1 || got[0] != want {
		t.Errorf("authorization metadata = %q, want [%q]", got, want)
	}
}

func TestCall_PostModelOutputs(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	request := map[string]any{
		"user_app_id": map[string]any{"user_id": "clarifai", "app_id": "main"},
		"model_id":    "general-image-recognition",
		"version_id":  "aa7f35c01e0642fda5cf400f543e7c40",
		"inputs": []any{map[string]any{
			"id": "input-1",
			"data": map[string]any{
				"image": map[string]any{"base64": base64.StdEncoding.EncodeToString(testImage)},
				"metadata": map[string]any{
					"camera": "dock-7",
					"flag":   true,
					"absent": nil,
					"empty":  map[string]any{},
					"nested": map[string]any{"depth": 2, "tags": []any{"a", "b"}, "empty": map[string]any{}},
				},
				"concepts": []any{map[string]any{"id": "ai_dog", "value": 0.75}},
			},
		}},
	}
	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address:  address,
		Key:      testKey,
		RPC:      "PostModelOutputs",
		Request:  request,
		Metadata: map[string]string{"x-request-id": "req-123"},
	})

	if result.GRPCCode != int(codes.OK) {
		t.Fatalf("grpc_code = %d (%s), want 0", result.GRPCCode, result.GRPCDetails)
	}

	wantMetadata := mustStruct(t, map[string]any{
		"camera": "dock-7",
		"flag":   true,
		"absent": nil,
		"empty":  map[string]any{},
		"nested": map[string]any{"depth": 2, "tags": []any{"a", "b"}, "empty": map[string]any{}},
	})
	wantRequest := &clarifaipb.PostModelOutputsRequest{
		UserAppId: &clarifaipb.UserAppIDSet{UserId: "clarifai", AppId: "main"},
		ModelId:   "general-image-recognition",
		VersionId: "aa7f35c01e0642fda5cf400f543e7c40",
		Inputs: []*clarifaipb.Input{{
			Id: "input-1",
			Data: &clarifaipb.Data{
				Image:    &clarifaipb.Image{Base64: testImage},
				Metadata: wantMetadata,
				Concepts: []*clarifaipb.Concept{{Id: "ai_dog", Value: 0.75}},
			},
		}},
	}
	gotRequest, md := srv.last(t)
	got := gotRequest.(*clarifaipb.PostModelOutputsRequest)
	if !proto.Equal(got, wantRequest) {
		t.Errorf("server received %v\nwant %v", got, wantRequest)
	}
	if image := got.GetInputs()[0].GetData().GetImage().GetBase64(); string(image) != string(testImage) {
		t.Errorf("image bytes = %x, want %x", image, testImage)
	}
	if !proto.Equal(got.GetInputs()[0].GetData().GetMetadata(), wantMetadata) {
		t.Errorf("metadata = %v, want %v", got.GetInputs()[0].GetData().GetMetadata(), wantMetadata)
	}
	assertAuthorization(t, md, "Key "+testKey)
	if id := md.Get("x-request-id"); len(id) != 1 || id[0] != "req-123" {
		t.Errorf("x-request-id metadata = %q, want [req-123]", id)
	}

	var response clarifaipb.MultiOutputResponse
	result.Unmarshal(t, &response)
	if response.GetStatus().GetCode() != clarifaipb.StatusCode_SUCCESS {
		t.Errorf("status code = %v, want SUCCESS", response.GetStatus().GetCode())
	}
	if len(response.GetOutputs()) != 1 {
		t.Fatalf("got %d outputs, want 1", len(response.GetOutputs()))
	}
	output := response.GetOutputs()[0]
	if !proto.Equal(output.GetInput(), wantRequest.GetInputs()[0]) {
		t.Errorf("echoed input = %v, want %v", output.GetInput(), wantRequest.GetInputs()[0])
	}
	if value := output.GetData().GetConcepts()[0].GetValue(); value != float32(0.99) {
		t.Errorf("concept value = %v, want float32 0.99", value)
	}
}

// The Node client reads a concept value as a float32 widened to a double,
// so 0.99 reaches JSON as 0.9900000095367432.
func TestCall_ConceptValueFloat32(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	address := startServer(t, &fakeV2{})

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "PostModelOutputs",
		Request: json.RawMessage(`{"model_id": "m", "inputs": [{"id": "a", "data": {"text": {"raw": "hi"}}}]}`),
	})

	var response struct {
		Outputs []struct {
			Data struct {
				Concepts []struct {
					Value float64 `json:"value"`
				} `json:"concepts"`
			} `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(result.Response, &response); err != nil {
		t.Fatalf("decode response %s: %v", result.Response, err)
	}
	if len(response.Outputs) != 1 || len(response.Outputs[0].Data.Concepts) != 1 {
		t.Fatalf("response has no concept: %s", result.Response)
	}
	if got, want := response.Outputs[0].Data.Concepts[0].Value, float64(float32(0.99)); got != want {
		t.Errorf("concept value = %v, want %v", got, want)
	}
}

func TestCall_PostCollectors(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	request := map[string]any{
		"user_app_id": map[string]any{"user_id": "me", "app_id": "dest-app"},
		"collectors": []any{
			map[string]any{
				"id":                      "collector-1",
				"description":             "copies dock camera predicts",
				"pre_queue_workflow_id":   "wf-pre",
				"post_queue_workflow_id":  "wf-post",
				"pre_queue_random_sample": 0.25,
				"collect_outputs":         true,
				"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
					"model_user_id":      "clarifai",
					"model_app_id":       "main",
					"model_id":           "general-image-recognition",
					"model_version_id":   "aa7f35c01e0642fda5cf400f543e7c40",
					"post_inputs_key_id": "post-inputs-key",
					"caller_user_id":     "caller-1",
				}},
				"status": map[string]any{"code": "COLLECTOR_INACTIVE"},
			},
			// An enum by number, a lowerCamel field name and a timestamp with
			// a UTC offset are valid proto3 JSON too.
			map[string]any{
				"id":                   "collector-2",
				"preQueueRandomSample": 1,
				"status":               map[string]any{"code": 52001},
				"created_at":           "2023-06-07T10:09:10.5+02:00",
			},
		},
	}
	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "PostCollectors",
		Request: request,
	})

	if result.GRPCCode != int(codes.OK) {
		t.Fatalf("grpc_code = %d (%s), want 0", result.GRPCCode, result.GRPCDetails)
	}

	wantCollectors := []*clarifaipb.Collector{
		{
			Id:                   "collector-1",
			Description:          "copies dock camera predicts",
			PreQueueWorkflowId:   "wf-pre",
			PostQueueWorkflowId:  "wf-post",
			PreQueueRandomSample: 0.25,
			CollectOutputs:       true,
			CollectorSource: &clarifaipb.CollectorSource{
				ApiPostModelOutputsCollectorSource: &clarifaipb.APIPostModelOutputsCollectorSource{
					ModelUserId:     "clarifai",
					ModelAppId:      "main",
					ModelId:         "general-image-recognition",
					ModelVersionId:  "aa7f35c01e0642fda5cf400f543e7c40",
					PostInputsKeyId: "post-inputs-key",
					CallerUserId:    "caller-1",
				},
			},
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_COLLECTOR_INACTIVE},
		},
		{
			Id:                   "collector-2",
			PreQueueRandomSample: 1,
			Status:               &clarifaipb.Status{Code: clarifaipb.StatusCode_COLLECTOR_ACTIVE},
			CreatedAt:            timestamppb.New(time.Date(2023, 6, 7, 8, 9, 10, 500_000_000, time.UTC)),
		},
	}
	wantRequest := &clarifaipb.PostCollectorsRequest{
		UserAppId:  &clarifaipb.UserAppIDSet{UserId: "me", AppId: "dest-app"},
		Collectors: wantCollectors,
	}
	gotRequest, md := srv.last(t)
	got := gotRequest.(*clarifaipb.PostCollectorsRequest)
	if !proto.Equal(got, wantRequest) {
		t.Errorf("server received %v\nwant %v", got, wantRequest)
	}
	if code := got.GetCollectors()[0].GetStatus().GetCode(); code != clarifaipb.StatusCode_COLLECTOR_INACTIVE {
		t.Errorf("first collector status code = %v, want COLLECTOR_INACTIVE", code)
	}
	assertAuthorization(t, md, "Key "+testKey)

	var response clarifaipb.MultiCollectorResponse
	result.Unmarshal(t, &response)
	if response.GetStatus().GetCode() != clarifaipb.StatusCode_SUCCESS {
		t.Errorf("status code = %v, want SUCCESS", response.GetStatus().GetCode())
	}
	if len(response.GetCollectors()) != len(wantCollectors) {
		t.Fatalf("got %d collectors, want %d", len(response.GetCollectors()), len(wantCollectors))
	}
	for i, want := range wantCollectors {
		want = proto.CloneOf(want)
		want.CreatedAt = createdAt
		if !proto.Equal(response.GetCollectors()[i], want) {
			t.Errorf("collector %d = %v, want %v", i, response.GetCollectors()[i], want)
		}
	}
}

func TestCall_ListCollectors(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{collectors: []*clarifaipb.Collector{
		{Id: "collector-1", CreatedAt: createdAt, Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_COLLECTOR_ACTIVE}},
		{Id: "collector-2", PreQueueRandomSample: 0.5, Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_COLLECTOR_INACTIVE}},
	}}
	address := startServer(t, srv)

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "ListCollectors",
		Request: &clarifaipb.ListCollectorsRequest{
			UserAppId: &clarifaipb.UserAppIDSet{UserId: "me", AppId: "dest-app"},
			Page:      2,
			PerPage:   50,
		},
	})

	if result.GRPCCode != int(codes.OK) {
		t.Fatalf("grpc_code = %d (%s), want 0", result.GRPCCode, result.GRPCDetails)
	}

	gotRequest, md := srv.last(t)
	got := gotRequest.(*clarifaipb.ListCollectorsRequest)
	if got.GetPage() != 2 || got.GetPerPage() != 50 {
		t.Errorf("page, per_page = %d, %d, want 2, 50", got.GetPage(), got.GetPerPage())
	}
	if got.GetUserAppId().GetAppId() != "dest-app" {
		t.Errorf("user_app_id.app_id = %q, want dest-app", got.GetUserAppId().GetAppId())
	}
	assertAuthorization(t, md, "Key "+testKey)

	var response clarifaipb.MultiCollectorResponse
	result.Unmarshal(t, &response)
	want := &clarifaipb.MultiCollectorResponse{Status: success(), Collectors: srv.collectors}
	if !proto.Equal(&response, want) {
		t.Errorf("response = %v\nwant %v", &response, want)
	}
}

func TestCall_GetUser(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "GetUser",
		Request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}},
	})

	gotRequest, md := srv.last(t)
	if got := gotRequest.(*clarifaipb.GetUserRequest).GetUserAppId().GetUserId(); got != "me" {
		t.Errorf("user_app_id.user_id = %q, want me", got)
	}
	assertAuthorization(t, md, "Key "+testKey)

	var response clarifaipb.SingleUserResponse
	result.Unmarshal(t, &response)
	want := &clarifaipb.SingleUserResponse{
		Status: success(),
		User:   &clarifaipb.User{Id: "user-1", FirstName: "Ada", LastName: "Lovelace", CreatedAt: createdAt},
	}
	if !proto.Equal(&response, want) {
		t.Errorf("response = %v\nwant %v", &response, want)
	}
}

// Clarifai reports an unknown key in the response status with gRPC code OK,
// and the client passes that status through.
func TestCall_KeyNotFound(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     "unknown-key",
		RPC:     "GetUser",
		Request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}},
	})

	if result.GRPCCode != int(codes.OK) {
		t.Fatalf("grpc_code = %d (%s), want 0", result.GRPCCode, result.GRPCDetails)
	}
	_, md := srv.last(t)
	assertAuthorization(t, md, "Key unknown-key")

	var status struct {
		Status struct {
			Code        string `json:"code"`
			Description string `json:"description"`
		} `json:"status"`
		User json.RawMessage `json:"user"`
	}
	if err := json.Unmarshal(result.Response, &status); err != nil {
		t.Fatalf("decode response %s: %v", result.Response, err)
	}
	if status.Status.Code != "CONN_KEY_NOT_FOUND" {
		t.Errorf("status.code = %q, want CONN_KEY_NOT_FOUND", status.Status.Code)
	}
	if status.Status.Description != "API key not found" {
		t.Errorf("status.description = %q, want %q", status.Status.Description, "API key not found")
	}
	if status.User != nil {
		t.Errorf("user = %s, want no user", status.User)
	}
}

func TestCall_NoKey(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		RPC:     "ListCollectors",
		Request: map[string]any{"user_app_id": map[string]any{"user_id": "me", "app_id": "dest-app"}},
	})

	_, md := srv.last(t)
	if got := md.Get("authorization"); len(got) != 0 {
		t.Errorf("authorization metadata = %q, want none", got)
	}

	var response clarifaipb.MultiCollectorResponse
	result.Unmarshal(t, &response)
	if response.GetStatus().GetCode() != clarifaipb.StatusCode_CONN_KEY_NOT_FOUND {
		t.Errorf("status code = %v, want CONN_KEY_NOT_FOUND", response.GetStatus().GetCode())
	}
}

func TestCall_GRPCError(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	address := startServer(t, &fakeV2{})

	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "GetApp",
		Request: map[string]any{"user_app_id": map[string]any{"user_id": "me", "app_id": "dest-app"}},
	})

	if result.GRPCCode != int(codes.Unimplemented) {
		t.Errorf("grpc_code = %d, want %d (Unimplemented)", result.GRPCCode, codes.Unimplemented)
	}
	if !strings.Contains(result.GRPCDetails, "GetApp") {
		t.Errorf("grpc_details = %q, want the method name", result.GRPCDetails)
	}
	if string(result.Response) != "null" {
		t.Errorf("response = %s, want null", result.Response)
	}
}

func TestRun_UnknownField(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	srv := &fakeV2{}
	address := startServer(t, srv)

	_, err := interop.Run(context.Background(), interop.CallRequest{
		Address: address,
		Key:     testKey,
		RPC:     "GetUser",
		Request: map[string]any{"user_app": map[string]any{"user_id": "me"}},
	})

	if err == nil || !strings.Contains(err.Error(), `unknown field "user_app"`) {
		t.Errorf("Run error = %v, want an unknown field error", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.lastRequest != nil {
		t.Errorf("server received %v, want no request", srv.lastRequest)
	}
}

func TestRun_UnsupportedRPC(t *testing.T) {
	t.Parallel()
	interop.RequireNode(t)
	address := startServer(t, &fakeV2{})

	_, err := interop.Run(context.Background(), interop.CallRequest{
		Address: address,
		RPC:     "PostConcepts",
	})

	if err == nil || !strings.Contains(err.Error(), "unsupported rpc") {
		t.Errorf("Run error = %v, want an unsupported rpc error", err)
	}
}
