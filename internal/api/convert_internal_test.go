package api

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/collector"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestPolicy_RoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   *pb.CollectorPolicy
		want collector.Policy
	}{
		{name: "absent", in: nil, want: collector.Policy{}},
		{name: "every field",
			in: &pb.CollectorPolicy{
				MaxInputsPerHour: 10, MaxInputsPerDay: 100, DedupWindowSeconds: 3600,
				MaxInputsPerConcept: 5, BalanceWindowSeconds: 86400, Preview: true,
			},
			want: collector.Policy{
				MaxPerHour: 10, MaxPerDay: 100, DedupWindow: time.Hour,
				MaxPerConcept: 5, BalanceWindow: 24 * time.Hour, Preview: true,
			}},
		{name: "preview only", in: &pb.CollectorPolicy{Preview: true}, want: collector.Policy{Preview: true}},
		{name: "upper bounds",
			in: &pb.CollectorPolicy{
				MaxInputsPerHour: maxPolicyCount, DedupWindowSeconds: maxPolicyWindowSeconds,
				MaxInputsPerConcept: maxPolicyCount, BalanceWindowSeconds: maxPolicyWindowSeconds,
			},
			want: collector.Policy{
				MaxPerHour: maxPolicyCount, DedupWindow: 30 * 24 * time.Hour,
				MaxPerConcept: maxPolicyCount, BalanceWindow: 30 * 24 * time.Hour,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policyFromProto(tc.in)
			if err != nil {
				t.Fatalf("policyFromProto: %v", err)
			}
			if got != tc.want {
				t.Errorf("policyFromProto = %+v, want %+v", got, tc.want)
			}

			back := policyToProto(got)
			if tc.in == nil || proto.Equal(tc.in, &pb.CollectorPolicy{}) {
				if back != nil {
					t.Errorf("policyToProto of the zero policy = %v, want nil", back)
				}
				return
			}
			if !proto.Equal(back, tc.in) {
				t.Errorf("policyToProto = %v, want %v", back, tc.in)
			}
		})
	}
}

func TestPolicy_Invalid(t *testing.T) {
	cases := []struct {
		name string
		in   *pb.CollectorPolicy
		want []string
	}{
		{name: "concept cap without window", in: &pb.CollectorPolicy{MaxInputsPerConcept: 3},
			want: []string{"policy.max_inputs_per_concept needs policy.balance_window_seconds"}},
		{name: "dedup window above 30 days", in: &pb.CollectorPolicy{DedupWindowSeconds: maxPolicyWindowSeconds + 1},
			want: []string{"policy.dedup_window_seconds", "30 days"}},
		{name: "balance window above 30 days", in: &pb.CollectorPolicy{MaxInputsPerConcept: 1, BalanceWindowSeconds: maxPolicyWindowSeconds + 1},
			want: []string{"policy.balance_window_seconds", "above the maximum"}},
		{name: "hour budget too large", in: &pb.CollectorPolicy{MaxInputsPerHour: maxPolicyCount + 1},
			want: []string{"policy.max_inputs_per_hour"}},
		{name: "day budget too large", in: &pb.CollectorPolicy{MaxInputsPerDay: 4_000_000_000},
			want: []string{"policy.max_inputs_per_day", "4000000000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policyFromProto(tc.in)
			ae, ok := asAPIError(err)
			if !ok {
				t.Fatalf("policyFromProto error = %v, want an API error", err)
			}
			if ae.code != pb.StatusCode_CONN_INVALID_REQUEST {
				t.Errorf("code = %s, want CONN_INVALID_REQUEST", ae.code)
			}
			for _, part := range tc.want {
				if !strings.Contains(ae.details, part) {
					t.Errorf("details %q do not mention %q", ae.details, part)
				}
			}
		})
	}
}

func TestCollectorFromProto_Policy(t *testing.T) {
	in := &pb.Collector{
		Id:                   "c",
		PreQueueRandomSample: 1,
		CollectorSource: &pb.CollectorSource{ApiPostModelOutputsCollectorSource: &pb.APIPostModelOutputsCollectorSource{
			ModelUserId: "u", ModelAppId: "a", ModelId: "m", PostInputsKeyId: "key",
		}},
		Policy: &pb.CollectorPolicy{MaxInputsPerDay: 7, Preview: true},
	}
	col, err := collectorFromProto(in)
	if err != nil {
		t.Fatalf("collectorFromProto: %v", err)
	}
	if col.Policy != (collector.Policy{MaxPerDay: 7, Preview: true}) {
		t.Errorf("Policy = %+v, want MaxPerDay 7 and Preview", col.Policy)
	}
	if got := collectorToProto(col).GetPolicy(); !proto.Equal(got, in.GetPolicy()) {
		t.Errorf("collectorToProto policy = %v, want %v", got, in.GetPolicy())
	}

	in.Policy = &pb.CollectorPolicy{MaxInputsPerConcept: 2}
	if _, err := collectorFromProto(in); err == nil {
		t.Error("collectorFromProto accepted max_inputs_per_concept without balance_window_seconds")
	}
}

func TestWithStoredFields_Policy(t *testing.T) {
	old := collector.Collector{ID: "c", PostInputsKey: "stored-key-0123456789", Policy: collector.Policy{MaxPerHour: 9}}

	merged, _ := withStoredFields(&pb.Collector{Id: "c"}, old)
	if got := merged.GetPolicy().GetMaxInputsPerHour(); got != 9 {
		t.Errorf("absent policy: max_inputs_per_hour = %d, want the stored 9", got)
	}

	merged, _ = withStoredFields(&pb.Collector{Id: "c", Policy: &pb.CollectorPolicy{}}, old)
	if !proto.Equal(merged.GetPolicy(), &pb.CollectorPolicy{}) {
		t.Errorf("empty policy: got %v, want it kept empty to clear every limit", merged.GetPolicy())
	}
}

// wfNode builds a workflow node of an operator type with output_info.params.
func wfNode(t *testing.T, id, typeID string, params map[string]any, input string) *pb.WorkflowNode {
	t.Helper()
	n := &pb.WorkflowNode{Id: id, Model: &pb.Model{Id: id, ModelTypeId: typeID}}
	if params != nil {
		s, err := structpb.NewStruct(params)
		if err != nil {
			t.Fatal(err)
		}
		n.Model.OutputInfo = &pb.OutputInfo{Params: s}
	}
	if input != "" {
		n.NodeInputs = []*pb.NodeInput{{NodeId: input}}
	}
	return n
}

func nodeIDs(nodes []*pb.WorkflowNode) string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.GetId() + "=" + n.GetModel().GetModelTypeId()
	}
	return strings.Join(ids, ",")
}

func TestPatchedNodes(t *testing.T) {
	stored := []*pb.WorkflowNode{
		wfNode(t, "a", filter.TypeRandomSample, nil, ""),
		wfNode(t, "b", filter.TypeMaxProbabilityBelow, nil, "a"),
	}
	cases := []struct {
		name    string
		action  string
		request []*pb.WorkflowNode
		want    string
	}{
		{name: "overwrite replaces the list", action: actionOverwrite,
			request: []*pb.WorkflowNode{wfNode(t, "c", filter.TypeMinProbabilityAbove, nil, "")},
			want:    "c=min-probability-above"},
		{name: "merge replaces by id and appends", action: actionMerge,
			request: []*pb.WorkflowNode{
				wfNode(t, "new", filter.TypeConceptSynonymMapper, nil, "b"),
				wfNode(t, "a", filter.TypeMetadataFilter, nil, ""),
			},
			want: "a=metadata-filter,b=max-probability-below,new=concept-synonym-mapper"},
		{name: "overwrite without nodes keeps them", action: actionOverwrite,
			want: "a=random-sample,b=max-probability-below"},
		{name: "merge without nodes keeps them", action: actionMerge,
			want: "a=random-sample,b=max-probability-below"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := patchedNodes(tc.action, stored, tc.request)
			if ids := nodeIDs(got); ids != tc.want {
				t.Errorf("nodes = %s, want %s", ids, tc.want)
			}
		})
	}
	if ids := nodeIDs(stored); ids != "a=random-sample,b=max-probability-below" {
		t.Errorf("patchedNodes changed the stored nodes to %s", ids)
	}
}

func TestCompileNodes_NamesNodeAndField(t *testing.T) {
	s := &Server{}
	cases := []struct {
		name  string
		nodes []*pb.WorkflowNode
		want  []string
	}{
		{name: "no nodes", want: []string{"nodes is empty"}},
		{name: "unknown operator",
			nodes: []*pb.WorkflowNode{wfNode(t, "n1", "blur-detector", nil, "")},
			want:  []string{`"n1"`, "model.model_type_id", `"blur-detector"`}},
		{name: "missing parameter",
			nodes: []*pb.WorkflowNode{wfNode(t, "sample", filter.TypeRandomSample, map[string]any{}, "")},
			want:  []string{`"sample"`, "output_info.params.keep_fraction", "missing parameter"}},
		{name: "bad comparator",
			nodes: []*pb.WorkflowNode{wfNode(t, "thr", filter.TypeConceptThresholder,
				map[string]any{"concept_threshold_type": "ABOUT"}, "")},
			want: []string{`"thr"`, "output_info.params.concept_threshold_type", `"ABOUT"`}},
		{name: "remote model without endpoints",
			nodes: []*pb.WorkflowNode{wfNode(t, "remote", filter.TypeRemoteModel,
				map[string]any{"endpoint": "labeler", "model_id": "m"}, "")},
			want: []string{`"remote"`, "output_info.params.endpoint"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ae, ok := asAPIError(s.compileNodes(tc.nodes))
			if !ok {
				t.Fatal("compileNodes accepted an invalid workflow")
			}
			if ae.code != pb.StatusCode_WORKFLOW_INVALID_ARGUMENT {
				t.Errorf("code = %s, want WORKFLOW_INVALID_ARGUMENT", ae.code)
			}
			for _, part := range tc.want {
				if !strings.Contains(ae.details, part) {
					t.Errorf("details %q do not mention %q", ae.details, part)
				}
			}
		})
	}
}

func TestWorkflowDeleteError(t *testing.T) {
	inUse := `workflow "w2" is used by collector "c" (pre_queue_workflow_id)`
	cases := []struct {
		name    string
		total   int
		missing []string
		inUse   []string
		code    pb.StatusCode
		want    []string
	}{
		{name: "all deleted", total: 2},
		{name: "all missing", total: 1, missing: []string{"w1"},
			code: pb.StatusCode_WORKFLOW_DOES_NOT_EXIST, want: []string{`"w1"`, `app "dest"`}},
		{name: "only in use", total: 1, inUse: []string{inUse},
			code: pb.StatusCode_FAILURE, want: []string{"deleted no workflow", `collector "c"`}},
		{name: "missing and in use", total: 2, missing: []string{"w1"}, inUse: []string{inUse},
			code: pb.StatusCode_FAILURE, want: []string{`"w1"`, `collector "c"`}},
		{name: "some deleted", total: 3, inUse: []string{inUse},
			code: pb.StatusCode_MIXED_STATUS, want: []string{"deleted 2 of 3 workflows", `collector "c"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := workflowDeleteError("dest", tc.total, tc.missing, tc.inUse)
			if tc.code == pb.StatusCode_ZERO {
				if err != nil {
					t.Fatalf("error = %v, want nil", err)
				}
				return
			}
			ae, ok := asAPIError(err)
			if !ok {
				t.Fatalf("error = %v, want an API error", err)
			}
			if ae.code != tc.code {
				t.Errorf("code = %s, want %s", ae.code, tc.code)
			}
			for _, part := range tc.want {
				if !strings.Contains(ae.details, part) {
					t.Errorf("details %q do not mention %q", ae.details, part)
				}
			}
		})
	}
}

// A balance window without a concept cap is accepted and dropped, because 0
// turns the cap off like every other limit.
func TestPolicy_WindowWithoutCap(t *testing.T) {
	p, err := policyFromProto(&pb.CollectorPolicy{BalanceWindowSeconds: 60, MaxInputsPerHour: 5})
	if err != nil {
		t.Fatalf("policyFromProto: %v", err)
	}
	if p.BalanceWindow != 0 || p.MaxPerHour != 5 {
		t.Errorf("policy = %+v, want no balance window and 5 per hour", p)
	}
}

// A policy alone is enough for a collector: it keeps everything within its
// limits.
func TestCollector_PolicyAlone(t *testing.T) {
	if !hasPolicy(&pb.CollectorPolicy{DedupWindowSeconds: 600}) {
		t.Error("hasPolicy(dedup window) = false, want true")
	}
	if hasPolicy(&pb.CollectorPolicy{BalanceWindowSeconds: 600}) {
		t.Error("hasPolicy(window without cap) = true, want false")
	}
	if hasPolicy(nil) {
		t.Error("hasPolicy(nil) = true, want false")
	}
}
