package api_test

import (
	"context"
	"strings"
	"testing"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

func grpcCollector(id, key string) *pb.Collector {
	return &pb.Collector{
		Id:                   id,
		Description:          "from gRPC",
		PreQueueRandomSample: 0.25,
		CollectorSource: &pb.CollectorSource{ApiPostModelOutputsCollectorSource: &pb.APIPostModelOutputsCollectorSource{
			ModelUserId: "clarifai", ModelAppId: "main", ModelId: "general-image-recognition", PostInputsKeyId: key,
		}},
	}
}

func requireCode(t *testing.T, call string, st *pb.Status, want pb.StatusCode) {
	t.Helper()
	if st.GetCode() != want {
		t.Errorf("%s: status.code = %s, want %s (details %q)", call, st.GetCode(), want, st.GetDetails())
	}
	if len(st.GetReqId()) != 32 {
		t.Errorf("%s: status.req_id = %q, want 32 hex characters", call, st.GetReqId())
	}
}

func TestGRPC_CollectorLifecycle(t *testing.T) {
	env := newTestEnv(t)
	ctx := withKey(alicePAT)
	app := &pb.UserAppIDSet{UserId: "me", AppId: "dest"}

	post, err := env.grpc.PostCollectors(ctx, &pb.PostCollectorsRequest{
		UserAppId: app, Collectors: []*pb.Collector{grpcCollector("g1", alicePostKey), grpcCollector("g2", alicePostKey)},
	})
	if err != nil {
		t.Fatalf("PostCollectors: %v", err)
	}
	requireCode(t, "PostCollectors", post.GetStatus(), pb.StatusCode_SUCCESS)
	for _, c := range post.GetCollectors() {
		key := c.GetCollectorSource().GetApiPostModelOutputsCollectorSource().GetPostInputsKeyId()
		if key != "****"+alicePostKey[len(alicePostKey)-4:] {
			t.Errorf("collector %s: post_inputs_key_id = %q, want it masked", c.GetId(), key)
		}
	}

	get, err := env.grpc.GetCollector(ctx, &pb.GetCollectorRequest{UserAppId: app, CollectorId: "g1"})
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	requireCode(t, "GetCollector", get.GetStatus(), pb.StatusCode_SUCCESS)
	if get.GetCollector().GetPreQueueRandomSample() != 0.25 {
		t.Errorf("pre_queue_random_sample = %v, want 0.25", get.GetCollector().GetPreQueueRandomSample())
	}

	list, err := env.grpc.ListCollectors(ctx, &pb.ListCollectorsRequest{UserAppId: app, PerPage: 1, Page: 2})
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	if len(list.GetCollectors()) != 1 || list.GetCollectors()[0].GetId() != "g2" {
		t.Errorf("page 2 of 1 = %v, want [g2]", list.GetCollectors())
	}

	paused := grpcCollector("g1", "")
	paused.Status = &pb.Status{Code: pb.StatusCode_COLLECTOR_INACTIVE}
	patch, err := env.grpc.PatchCollectors(ctx, &pb.PatchCollectorsRequest{
		UserAppId: app, Action: "overwrite", Collectors: []*pb.Collector{paused},
	})
	if err != nil {
		t.Fatalf("PatchCollectors: %v", err)
	}
	requireCode(t, "PatchCollectors", patch.GetStatus(), pb.StatusCode_SUCCESS)
	if got := patch.GetCollectors()[0].GetStatus().GetCode(); got != pb.StatusCode_COLLECTOR_INACTIVE {
		t.Errorf("patched state = %s, want COLLECTOR_INACTIVE", got)
	}

	badAction, err := env.grpc.PatchCollectors(ctx, &pb.PatchCollectorsRequest{UserAppId: app, Action: "remove", Collectors: []*pb.Collector{paused}})
	if err != nil {
		t.Fatalf("PatchCollectors: %v", err)
	}
	requireCode(t, "PatchCollectors remove", badAction.GetStatus(), pb.StatusCode_CONN_INVALID_REQUEST)

	del, err := env.grpc.DeleteCollectors(ctx, &pb.DeleteCollectorsRequest{UserAppId: app, Ids: []string{"g1", "g2"}})
	if err != nil {
		t.Fatalf("DeleteCollectors: %v", err)
	}
	requireCode(t, "DeleteCollectors", del.GetStatus(), pb.StatusCode_SUCCESS)
	left, err := env.store.ListCollectors(context.Background(), "alice", "dest", 0, 10)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if len(left) != 0 {
		t.Errorf("%d collectors left after DeleteCollectors", len(left))
	}
}

func TestGRPC_ErrorsInBody(t *testing.T) {
	env := newTestEnv(t)
	app := &pb.UserAppIDSet{UserId: "me", AppId: "dest"}

	cases := []struct {
		name string
		ctx  context.Context
		want pb.StatusCode
		http int32
	}{
		{"no key", context.Background(), pb.StatusCode_CONN_KEY_INVALID, 401},
		{"unknown key", withKey("nobody-knows-this"), pb.StatusCode_CONN_KEY_NOT_FOUND, 401},
		{"missing scope", withKey(aliceReadOnly), pb.StatusCode_CONN_INSUFFICIENT_SCOPES, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := env.grpc.PostCollectors(tc.ctx, &pb.PostCollectorsRequest{
				UserAppId: app, Collectors: []*pb.Collector{grpcCollector("x", alicePostKey)},
			})
			if err != nil {
				t.Fatalf("gRPC error %v, want status OK with the error in the body", err)
			}
			requireCode(t, tc.name, resp.GetStatus(), tc.want)
			if resp.GetStatus().GetHttpStatusCode() != tc.http {
				t.Errorf("http_status_code = %d, want %d", resp.GetStatus().GetHttpStatusCode(), tc.http)
			}
		})
	}

	other, err := env.grpc.ListCollectors(withKey(alicePAT), &pb.ListCollectorsRequest{UserAppId: &pb.UserAppIDSet{UserId: "bob", AppId: "bobapp"}})
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	requireCode(t, "other user's app", other.GetStatus(), pb.StatusCode_CONN_INSUFFICIENT_SCOPES)

	missing, err := env.grpc.GetCollector(withKey(alicePAT), &pb.GetCollectorRequest{UserAppId: app, CollectorId: "ghost"})
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	requireCode(t, "unknown collector", missing.GetStatus(), pb.StatusCode_COLLECTOR_MISSING)
	if !strings.Contains(missing.GetStatus().GetDetails(), `"ghost"`) {
		t.Errorf("details %q do not name the collector", missing.GetStatus().GetDetails())
	}

	noApp, err := env.grpc.ListCollectors(withKey(alicePAT), &pb.ListCollectorsRequest{})
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	requireCode(t, "no app", noApp.GetStatus(), pb.StatusCode_CONN_INVALID_REQUEST)
}

func TestGRPC_UnservedRPCs(t *testing.T) {
	env := newTestEnv(t)

	predict, err := env.grpc.PostModelOutputs(withKey(alicePAT), &pb.PostModelOutputsRequest{ModelId: "m"})
	if err != nil {
		t.Fatalf("PostModelOutputs: %v", err)
	}
	requireCode(t, "PostModelOutputs", predict.GetStatus(), pb.StatusCode_NOT_IMPLEMENTED)
}

func TestGRPC_InputsAndUser(t *testing.T) {
	env := newTestEnv(t)
	ctx := withKey(aliceAppKey)

	post, err := env.grpc.PostInputs(ctx, &pb.PostInputsRequest{Inputs: []*pb.Input{
		{Id: "t1", Data: &pb.Data{Text: &pb.Text{Raw: "hello"}}},
		{Id: "t1", Data: &pb.Data{Text: &pb.Text{Raw: "again"}}},
	}})
	if err != nil {
		t.Fatalf("PostInputs: %v", err)
	}
	requireCode(t, "PostInputs", post.GetStatus(), pb.StatusCode_MIXED_STATUS)
	if got := post.GetInputs()[1].GetStatus().GetDetails(); got != "Input has a duplicate ID." {
		t.Errorf("duplicate details = %q", got)
	}

	get, err := env.grpc.GetInput(ctx, &pb.GetInputRequest{InputId: "t1"})
	if err != nil {
		t.Fatalf("GetInput: %v", err)
	}
	if get.GetInput().GetData().GetText().GetRaw() != "hello" {
		t.Errorf("GetInput text = %q, want hello", get.GetInput().GetData().GetText().GetRaw())
	}

	user, err := env.grpc.GetUser(ctx, &pb.GetUserRequest{UserAppId: &pb.UserAppIDSet{UserId: "me"}})
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	requireCode(t, "GetUser", user.GetStatus(), pb.StatusCode_SUCCESS)
	if user.GetUser().GetId() != "alice" {
		t.Errorf("user.id = %q, want alice", user.GetUser().GetId())
	}
}

func TestGRPC_MessageAboveDefaultLimit(t *testing.T) {
	env := newTestEnv(t)

	// 5 MiB is above gRPC's default receive limit of 4 MiB and below the
	// 20 MB limit of one image.
	image := make([]byte, 5<<20)
	copy(image, "\x89PNG")
	resp, err := env.grpc.PostInputs(withKey(aliceAppKey), &pb.PostInputsRequest{Inputs: []*pb.Input{
		{Id: "big", Data: &pb.Data{Image: &pb.Image{Base64: image}}},
	}})
	if err != nil {
		t.Fatalf("PostInputs: %v", err)
	}
	requireCode(t, "PostInputs", resp.GetStatus(), pb.StatusCode_SUCCESS)
	if n := len(resp.GetInputs()[0].GetData().GetImage().GetBase64()); n != 0 {
		t.Errorf("the response echoes %d image bytes", n)
	}
}
