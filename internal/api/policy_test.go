package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// collectorWithPolicy returns collectorJSON with a policy object.
func collectorWithPolicy(id, policy string) string {
	return strings.TrimSuffix(collectorJSON(id, alicePostKey), "}") + `,"policy":` + policy + `}`
}

const fullPolicy = `{"max_inputs_per_hour":100,"max_inputs_per_day":1000,"dedup_window_seconds":600,` +
	`"max_inputs_per_concept":5,"balance_window_seconds":86400,"preview":true}`

func TestREST_CollectorPolicyRoundTrip(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()

	post := env.postCollectors(collectorWithPolicy("with-policy", fullPolicy), collectorJSON("without-policy", alicePostKey))
	post.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	created := post.list(t, "collectors")
	want := map[string]any{
		"max_inputs_per_hour": 100.0, "max_inputs_per_day": 1000.0, "dedup_window_seconds": 600.0,
		"max_inputs_per_concept": 5.0, "balance_window_seconds": 86400.0, "preview": true,
	}
	for name, v := range want {
		if got := field(created[0], "policy", name); got != v {
			t.Errorf("policy.%s = %v, want %v", name, got, v)
		}
	}
	if got := field(created[1], "policy"); got != nil {
		t.Errorf("a collector without a policy shows policy %v", got)
	}

	stored, err := env.store.GetCollector(ctx, "alice", "dest", "with-policy")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	wantPolicy := collector.Policy{
		MaxPerHour: 100, MaxPerDay: 1000, DedupWindow: 10 * time.Minute,
		MaxPerConcept: 5, BalanceWindow: 24 * time.Hour, Preview: true,
	}
	if stored.Policy != wantPolicy {
		t.Errorf("stored policy = %+v, want %+v", stored.Policy, wantPolicy)
	}

	get := env.do(http.MethodGet, collectorsPath+"/with-policy", keyHeader(alicePAT), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(get.json, "collector", "policy", "dedup_window_seconds"); got != 600.0 {
		t.Errorf("GetCollector policy.dedup_window_seconds = %v, want 600", got)
	}

	// An overwrite without policy, as Clarifai's clients send it, keeps the policy.
	patch := func(item string) restResponse {
		return env.do(http.MethodPatch, collectorsPath, keyHeader(alicePAT), `{"action":"overwrite","collectors":[`+item+`]}`)
	}
	patch(collectorJSON("with-policy", alicePostKey)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	stored, err = env.store.GetCollector(ctx, "alice", "dest", "with-policy")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if stored.Policy != wantPolicy {
		t.Errorf("policy after an overwrite without one = %+v, want it kept", stored.Policy)
	}

	// A new policy replaces it whole; an empty one clears it.
	patch(collectorWithPolicy("with-policy", `{"max_inputs_per_day":7}`)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	stored, _ = env.store.GetCollector(ctx, "alice", "dest", "with-policy")
	if stored.Policy != (collector.Policy{MaxPerDay: 7}) {
		t.Errorf("policy after overwrite = %+v, want MaxPerDay 7 alone", stored.Policy)
	}
	cleared := patch(collectorWithPolicy("with-policy", `{}`))
	cleared.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	stored, _ = env.store.GetCollector(ctx, "alice", "dest", "with-policy")
	if stored.Policy != (collector.Policy{}) {
		t.Errorf("policy after an empty one = %+v, want none", stored.Policy)
	}
	if got := field(cleared.list(t, "collectors")[0], "policy"); got != nil {
		t.Errorf("response shows policy %v after it was cleared", got)
	}
}

func TestREST_CollectorPolicyInvalid(t *testing.T) {
	env := newTestEnv(t)
	cases := []struct {
		name   string
		policy string
		want   []string
	}{
		{name: "concept cap without window", policy: `{"max_inputs_per_concept":3}`,
			want: []string{"policy.max_inputs_per_concept", "balance_window_seconds"}},
		{name: "dedup window above 30 days", policy: `{"dedup_window_seconds":2592001}`,
			want: []string{"policy.dedup_window_seconds", "30 days"}},
		{name: "hour budget too large", policy: `{"max_inputs_per_hour":4000000000}`,
			want: []string{"policy.max_inputs_per_hour"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := env.postCollectors(collectorWithPolicy("c", tc.policy))
			r.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
			requireDetailsMention(t, r, append([]string{`collectors[0] (id "c")`}, tc.want...)...)
		})
	}

	// A negative window is not a uint32, so the gateway rejects the body.
	env.postCollectors(collectorWithPolicy("c", `{"dedup_window_seconds":-1}`)).
		requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_BAD_REQUEST_FORMAT)
}

func TestGRPC_CollectorPolicy(t *testing.T) {
	env := newTestEnv(t)
	ctx := withKey(alicePAT)
	app := &pb.UserAppIDSet{UserId: "me", AppId: "dest"}

	col := grpcCollector("g-policy", alicePostKey)
	col.Policy = &pb.CollectorPolicy{MaxInputsPerHour: 3, DedupWindowSeconds: 30, Preview: true}
	post, err := env.grpc.PostCollectors(ctx, &pb.PostCollectorsRequest{UserAppId: app, Collectors: []*pb.Collector{col}})
	if err != nil {
		t.Fatalf("PostCollectors: %v", err)
	}
	requireCode(t, "PostCollectors", post.GetStatus(), pb.StatusCode_SUCCESS)

	get, err := env.grpc.GetCollector(ctx, &pb.GetCollectorRequest{UserAppId: app, CollectorId: "g-policy"})
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	if !proto.Equal(get.GetCollector().GetPolicy(), col.Policy) {
		t.Errorf("policy = %v, want %v", get.GetCollector().GetPolicy(), col.Policy)
	}

	col.Id = "g-bad"
	col.Policy = &pb.CollectorPolicy{MaxInputsPerConcept: 10}
	bad, err := env.grpc.PostCollectors(ctx, &pb.PostCollectorsRequest{UserAppId: app, Collectors: []*pb.Collector{col}})
	if err != nil {
		t.Fatalf("PostCollectors: %v", err)
	}
	requireCode(t, "PostCollectors invalid policy", bad.GetStatus(), pb.StatusCode_CONN_INVALID_REQUEST)
}

func TestREST_CollectorPreview(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	env.postCollectors(collectorWithPolicy("quiet", `{"preview":true}`), collectorWithPolicy("busy", `{"preview":true}`)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	// A collector that never previewed has an empty preview.
	empty := env.do(http.MethodGet, collectorsPath+"/quiet/preview", keyHeader(aliceReadOnly), "")
	empty.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(empty.json, "preview", "collector_id"); got != "quiet" {
		t.Errorf("preview.collector_id = %v, want quiet: %s", got, empty.raw)
	}
	if field(empty.json, "preview", "counts") != nil || field(empty.json, "preview", "records") != nil {
		t.Errorf("empty preview has counts or records: %s", empty.raw)
	}

	ref := admission.Ref{UserID: "alice", AppID: "dest", CollectorID: "busy"}
	records := []*pb.PreviewRecord{{
		RecordId: "rec-1", CapturedAt: timestamppb.New(time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)),
		CallerUserId: "bob", CollectorVersion: 1,
		Input:          &pb.Input{Data: &pb.Data{Text: &pb.Text{Raw: "a cat"}}},
		OutputConcepts: []*pb.Concept{{Id: "cat", Value: 0.9}},
	}}
	if err := env.store.AddPreview(ctx, ref, map[string]int64{"kept": 1, "sampled_out": 4}, records, admission.DefaultPreviewRecords); err != nil {
		t.Fatalf("AddPreview: %v", err)
	}
	busy := env.do(http.MethodGet, collectorsPath+"/busy/preview", keyHeader(alicePAT), "")
	busy.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	counts := map[string]any{}
	for _, c := range field(busy.json, "preview", "counts").([]any) {
		counts[field(c, "outcome").(string)] = field(c, "count")
	}
	// protojson writes int64 as a string.
	if counts["kept"] != "1" || counts["sampled_out"] != "4" {
		t.Errorf("counts = %v, want kept 1 and sampled_out 4", counts)
	}
	recs, _ := field(busy.json, "preview", "records").([]any)
	if len(recs) != 1 || field(recs[0], "record_id") != "rec-1" || field(recs[0], "input", "data", "text", "raw") != "a cat" {
		t.Errorf("records = %v, want rec-1 with its input", recs)
	}

	// Unknown collectors and apps, and keys without the scope.
	env.do(http.MethodGet, collectorsPath+"/nope/preview", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_COLLECTOR_MISSING)
	env.do(http.MethodGet, "/v2/users/me/apps/no-such-app/collectors/busy/preview", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_CONN_DOES_NOT_EXIST)
	env.do(http.MethodGet, collectorsPath+"/busy/preview", keyHeader(alicePostKey), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodGet, "/v2/users/alice/apps/dest/collectors/busy/preview", keyHeader(bobPAT), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
}

func TestGRPC_CollectorPreview(t *testing.T) {
	env := newTestEnv(t)
	ctx := withKey(alicePAT)
	app := &pb.UserAppIDSet{UserId: "me", AppId: "dest"}
	env.postCollectors(collectorJSON("c", alicePostKey)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	got, err := env.grpc.GetCollectorPreview(ctx, &pb.GetCollectorPreviewRequest{UserAppId: app, CollectorId: "c"})
	if err != nil {
		t.Fatalf("GetCollectorPreview: %v", err)
	}
	requireCode(t, "GetCollectorPreview", got.GetStatus(), pb.StatusCode_SUCCESS)
	if p := got.GetPreview(); p.GetCollectorId() != "c" || len(p.GetCounts()) != 0 || len(p.GetRecords()) != 0 {
		t.Errorf("preview = %v, want an empty preview of c", p)
	}

	missing, err := env.grpc.GetCollectorPreview(ctx, &pb.GetCollectorPreviewRequest{UserAppId: app, CollectorId: "nope"})
	if err != nil {
		t.Fatalf("GetCollectorPreview: %v", err)
	}
	requireCode(t, "GetCollectorPreview unknown", missing.GetStatus(), pb.StatusCode_COLLECTOR_MISSING)
	if missing.GetPreview() != nil {
		t.Errorf("a missing collector has preview %v", missing.GetPreview())
	}

	noID, err := env.grpc.GetCollectorPreview(ctx, &pb.GetCollectorPreviewRequest{UserAppId: app})
	if err != nil {
		t.Fatalf("GetCollectorPreview: %v", err)
	}
	requireCode(t, "GetCollectorPreview without id", noID.GetStatus(), pb.StatusCode_CONN_INVALID_REQUEST)
}
