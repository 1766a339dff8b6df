package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// Workflow nodes in the Clarifai REST shape: a random sample, a concept
// thresholder that reads it, and a remote model.
const (
	sampleNode = `{"id":"sample","model":{"id":"sample","model_type_id":"random-sample",` +
		`"output_info":{"params":{"keep_fraction":0.5}}}}`
	thresholdNode = `{"id":"thr","model":{"id":"thr","model_type_id":"concept-thresholder",` +
		`"output_info":{"params":{"concept_threshold_type":"GREATER_THAN"},"data":{"concepts":[{"id":"cat","value":0.8}]}}},` +
		`"node_inputs":[{"node_id":"sample"}]}`
	remoteNode = `{"id":"labeler","model":{"id":"labeler","model_type_id":"remote-model",` +
		`"output_info":{"params":{"endpoint":"labeler","model_id":"general"}}}}`
)

const workflowsPath = "/v2/users/me/apps/dest/workflows"

// workflowJSON returns one workflow of a PostWorkflows or PatchWorkflows
// body; an empty description is left out.
func workflowJSON(id, description string, nodes ...string) string {
	body := `{"id":"` + id + `"`
	if description != "" {
		body += `,"description":"` + description + `"`
	}
	if len(nodes) > 0 {
		body += `,"nodes":[` + strings.Join(nodes, ",") + `]`
	}
	return body + "}"
}

func (e *testEnv) postWorkflows(items ...string) restResponse {
	e.t.Helper()
	return e.do(http.MethodPost, workflowsPath, keyHeader(alicePAT), `{"workflows":[`+strings.Join(items, ",")+`]}`)
}

func (e *testEnv) patchWorkflows(action string, items ...string) restResponse {
	e.t.Helper()
	return e.do(http.MethodPatch, workflowsPath, keyHeader(alicePAT),
		`{"action":"`+action+`","workflows":[`+strings.Join(items, ",")+`]}`)
}

func (e *testEnv) deleteWorkflows(body string) restResponse {
	e.t.Helper()
	return e.do(http.MethodDelete, workflowsPath, keyHeader(alicePAT), body)
}

// nodeChain returns the node IDs of a REST workflow object, joined by ",".
func nodeChain(wf any) string {
	nodes, _ := field(wf, "nodes").([]any)
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i], _ = field(n, "id").(string)
	}
	return strings.Join(ids, ",")
}

func requireDetailsMention(t *testing.T, r restResponse, parts ...string) {
	t.Helper()
	for _, part := range parts {
		if !strings.Contains(r.details(), part) {
			t.Errorf("details %q do not mention %q", r.details(), part)
		}
	}
}

func TestREST_WorkflowLifecycle(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()

	post := env.postWorkflows(
		`{"id":"wf-chain","description":"half, then cats","metadata":{"team":"vision","tags":["a"]},"nodes":[`+
			sampleNode+`,`+thresholdNode+`]}`,
		workflowJSON("wf-remote", "", remoteNode))
	post.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	created := post.list(t, "workflows")
	if len(created) != 2 {
		t.Fatalf("PostWorkflows returned %d workflows, want 2", len(created))
	}
	if got := nodeChain(created[0]); got != "sample,thr" {
		t.Errorf("nodes = %s, want sample,thr", got)
	}
	for name, want := range map[string]string{"id": "wf-chain", "app_id": "dest", "user_id": "alice", "description": "half, then cats"} {
		if got := field(created[0], name); got != want {
			t.Errorf("%s = %v, want %q", name, got, want)
		}
	}
	if field(created[0], "created_at") == nil || field(created[0], "modified_at") == nil {
		t.Errorf("created_at or modified_at is missing: %v", created[0])
	}
	if got := field(created[0], "metadata", "team"); got != "vision" {
		t.Errorf("metadata.team = %v, want vision", got)
	}

	stored, err := env.store.GetWorkflow(ctx, "alice", "dest", "wf-chain")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if stored.Version != 1 || len(stored.Nodes) != 2 || stored.Metadata["team"] != "vision" {
		t.Errorf("stored workflow = version %d, %d nodes, metadata %v", stored.Version, len(stored.Nodes), stored.Metadata)
	}

	// Get by the long path and by an app key on the short one.
	get := env.do(http.MethodGet, workflowsPath+"/wf-chain", keyHeader(alicePAT), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(get.json, "workflow", "nodes"); got == nil {
		t.Errorf("GetWorkflow has no nodes: %s", get.raw)
	}
	if got := field(get.json, "workflow", "nodes").([]any)[1]; field(got, "node_inputs") == nil {
		t.Errorf("node thr lost its node_inputs: %v", got)
	}
	short := env.do(http.MethodGet, "/v2/workflows/wf-remote", keyHeader(aliceAppKey), "")
	short.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(short.json, "workflow", "nodes").([]any)[0]; field(got, "model", "model_type_id") != "remote-model" {
		t.Errorf("wf-remote node = %v, want a remote-model node", got)
	}

	// Merge replaces a node by ID and appends a new one.
	minAbove := `{"id":"floor","model":{"model_type_id":"min-probability-above","output_info":{"params":{"threshold":0.2}}},` +
		`"node_inputs":[{"node_id":"thr"}]}`
	newSample := `{"id":"sample","model":{"model_type_id":"random-sample","output_info":{"params":{"keep_fraction":0.25}}}}`
	merge := env.patchWorkflows("merge", workflowJSON("wf-chain", "", newSample, minAbove))
	merge.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	merged := merge.list(t, "workflows")[0]
	if got := nodeChain(merged); got != "sample,thr,floor" {
		t.Errorf("merged nodes = %s, want sample,thr,floor", got)
	}
	if got := field(merged, "nodes").([]any)[0]; field(got, "model", "output_info", "params", "keep_fraction") != 0.25 {
		t.Errorf("merged sample node = %v, want keep_fraction 0.25", got)
	}
	if got := field(merged, "description"); got != "half, then cats" {
		t.Errorf("merge without description changed it to %v", got)
	}
	if got := field(merged, "metadata", "team"); got != "vision" {
		t.Errorf("merge without metadata changed it: %v", field(merged, "metadata"))
	}

	// Overwrite replaces the node list, and description and metadata when given.
	overwrite := env.patchWorkflows("overwrite",
		`{"id":"wf-chain","description":"only the sample","metadata":{"team":"ml"},"nodes":[`+sampleNode+`]}`)
	overwrite.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	over := overwrite.list(t, "workflows")[0]
	if got := nodeChain(over); got != "sample" {
		t.Errorf("overwritten nodes = %s, want sample", got)
	}
	if field(over, "description") != "only the sample" || field(over, "metadata", "team") != "ml" {
		t.Errorf("overwrite = description %v, metadata %v", field(over, "description"), field(over, "metadata"))
	}
	stored, err = env.store.GetWorkflow(ctx, "alice", "dest", "wf-chain")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if stored.Version != 3 || len(stored.Nodes) != 1 {
		t.Errorf("stored after two patches = version %d with %d nodes, want version 3 with 1", stored.Version, len(stored.Nodes))
	}
	if !stored.CreatedAt.Equal(timeField(t, created[0], "created_at")) {
		t.Errorf("patch changed created_at to %v", stored.CreatedAt)
	}

	// Delete one, then the rest.
	env.deleteWorkflows(`{"ids":["wf-chain"]}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.do(http.MethodGet, workflowsPath+"/wf-chain", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_WORKFLOW_DOES_NOT_EXIST)
	env.deleteWorkflows(`{"delete_all":true}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if _, err := env.store.GetWorkflow(ctx, "alice", "dest", "wf-remote"); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("wf-remote after delete_all: error %v, want ErrNotFound", err)
	}
	list := env.do(http.MethodGet, workflowsPath, keyHeader(alicePAT), "")
	list.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if !strings.Contains(list.raw, `"workflows":[]`) {
		t.Errorf("ListWorkflows after delete_all = %s, want an empty list", list.raw)
	}
}

// timeField parses an RFC 3339 timestamp field of a REST object.
func timeField(t *testing.T, v any, name string) time.Time {
	t.Helper()
	s, _ := field(v, name).(string)
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", name, s, err)
	}
	return parsed
}

func TestREST_ListWorkflowsPagination(t *testing.T) {
	env := newTestEnv(t)
	for _, id := range []string{"w1", "w2", "w3"} {
		env.postWorkflows(workflowJSON(id, "", sampleNode)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	}

	pages := map[string]string{
		"?page=1&per_page=2": "w1,w2",
		"?page=2&per_page=2": "w3",
		"?page=3&per_page=2": "",
		"":                   "w1,w2,w3",
	}
	for query, want := range pages {
		r := env.do(http.MethodGet, workflowsPath+query, keyHeader(alicePAT), "")
		r.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
		var got []string
		for _, wf := range r.list(t, "workflows") {
			got = append(got, field(wf, "id").(string))
		}
		if strings.Join(got, ",") != want {
			t.Errorf("ListWorkflows%s = %v, want %s", query, got, want)
		}
	}

	env.do(http.MethodGet, workflowsPath+"?per_page=1001", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)

	// Another app's workflows are not listed.
	other := env.do(http.MethodGet, "/v2/users/me/apps/other/workflows", keyHeader(alicePAT), "")
	other.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if n := len(other.list(t, "workflows")); n != 0 {
		t.Errorf("app other lists %d workflows, want 0", n)
	}
}

func TestREST_PostWorkflowsValidation(t *testing.T) {
	env := newTestEnv(t)
	env.postWorkflows(workflowJSON("existing", "", sampleNode)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	cases := []struct {
		name     string
		items    []string
		httpCode int
		code     pb.StatusCode
		want     []string
	}{
		{name: "unknown operator",
			items:    []string{workflowJSON("w", "", `{"id":"blur","model":{"model_type_id":"blur-detector"}}`)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{`workflows[0] (id "w")`, `workflow node "blur"`, "model.model_type_id", `"blur-detector"`}},
		{name: "missing parameter",
			items:    []string{workflowJSON("w", "", `{"id":"s","model":{"model_type_id":"random-sample"}}`)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{`workflow node "s"`, "output_info.params.keep_fraction", "missing parameter"}},
		{name: "bad comparator",
			items: []string{workflowJSON("w", "", `{"id":"t","model":{"model_type_id":"concept-thresholder",`+
				`"output_info":{"params":{"concept_threshold_type":"ROUGHLY"},"data":{"concepts":[{"id":"cat","value":0.5}]}}}}`)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{`workflow node "t"`, "output_info.params.concept_threshold_type", `"ROUGHLY"`}},
		{name: "unknown remote endpoint",
			items: []string{workflowJSON("w", "", `{"id":"r","model":{"model_type_id":"remote-model",`+
				`"output_info":{"params":{"endpoint":"elsewhere","model_id":"m"}}}}`)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{`workflow node "r"`, "output_info.params.endpoint", `"elsewhere"`}},
		{name: "no nodes", items: []string{workflowJSON("w", "")},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{"nodes is empty"}},
		{name: "invalid id", items: []string{workflowJSON("no spaces", "", sampleNode)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_CONN_INVALID_REQUEST,
			want: []string{`id "no spaces"`}},
		{name: "repeated id", items: []string{workflowJSON("twice", "", sampleNode), workflowJSON("twice", "", sampleNode)},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_CONN_INVALID_REQUEST,
			want: []string{`workflows[1] (id "twice")`, "more than once"}},
		{name: "existing id", items: []string{workflowJSON("fresh", "", sampleNode), workflowJSON("existing", "", sampleNode)},
			httpCode: http.StatusConflict, code: pb.StatusCode_DATABASE_DUPLICATE_KEY,
			want: []string{`workflows[1] (id "existing")`, "already exists"}},
		{name: "every problem at once",
			items: []string{
				workflowJSON("ok", "", sampleNode),
				workflowJSON("bad-1", "", `{"id":"a","model":{"model_type_id":"nope"}}`),
				workflowJSON("bad-2", "", `{"id":"b","model":{"model_type_id":"max-probability-below","output_info":{"params":{"threshold":2}}}}`),
			},
			httpCode: http.StatusBadRequest, code: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			want: []string{`workflows[1] (id "bad-1")`, `workflows[2] (id "bad-2")`, `workflow node "b"`, "output_info.params.threshold"}},
		{name: "empty batch", items: nil,
			httpCode: http.StatusBadRequest, code: pb.StatusCode_CONN_INVALID_REQUEST,
			want: []string{"workflows is empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := env.postWorkflows(tc.items...)
			r.requireStatus(t, tc.httpCode, tc.code)
			requireDetailsMention(t, r, tc.want...)
			if n := len(r.list(t, "workflows")); n != 0 {
				t.Errorf("a rejected request returned %d workflows", n)
			}
		})
	}

	// Only the workflow posted first exists: every rejected batch stored nothing.
	list := env.do(http.MethodGet, workflowsPath, keyHeader(alicePAT), "")
	if n := len(list.list(t, "workflows")); n != 1 {
		t.Errorf("the app holds %d workflows after the rejected batches, want 1: %s", n, list.raw)
	}
}

func TestREST_WorkflowScopesAndOwners(t *testing.T) {
	env := newTestEnv(t)
	env.postWorkflows(workflowJSON("w", "", sampleNode)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	readOnly := env.do(http.MethodGet, workflowsPath, keyHeader(aliceReadOnly), "")
	readOnly.requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	requireDetailsMention(t, readOnly, "Workflows_Get", "ListWorkflows")

	post := env.do(http.MethodPost, workflowsPath, keyHeader(aliceReadOnly), `{"workflows":[`+workflowJSON("x", "", sampleNode)+`]}`)
	post.requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	requireDetailsMention(t, post, "Workflows_Add")

	del := env.do(http.MethodDelete, workflowsPath, keyHeader(alicePostKey), `{"ids":["w"]}`)
	del.requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)

	env.do(http.MethodGet, workflowsPath, "", "").requireStatus(t, http.StatusUnauthorized, pb.StatusCode_CONN_KEY_INVALID)
	env.do(http.MethodGet, "/v2/users/alice/apps/dest/workflows/w", keyHeader(bobPAT), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodGet, "/v2/users/me/apps/other/workflows/w", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_WORKFLOW_DOES_NOT_EXIST)
	env.do(http.MethodGet, "/v2/workflows/w", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
}

func TestREST_PatchWorkflowsErrors(t *testing.T) {
	env := newTestEnv(t)
	env.postWorkflows(workflowJSON("w1", "first", sampleNode), workflowJSON("w2", "", sampleNode)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	remove := env.patchWorkflows("remove", workflowJSON("w1", "", sampleNode))
	remove.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	requireDetailsMention(t, remove, `"remove"`, `"overwrite"`, `"merge"`)

	missing := env.patchWorkflows("overwrite", workflowJSON("w1", "changed", sampleNode), workflowJSON("nope", "", sampleNode))
	missing.requireStatus(t, http.StatusNotFound, pb.StatusCode_WORKFLOW_DOES_NOT_EXIST)
	requireDetailsMention(t, missing, `workflows[1] (id "nope")`)

	// A merged node that does not compile is named, and nothing changes.
	badNode := `{"id":"sample","model":{"model_type_id":"random-sample","output_info":{"params":{"keep_fraction":"most"}}}}`
	invalid := env.patchWorkflows("merge", workflowJSON("w1", "changed", sampleNode), workflowJSON("w2", "", badNode))
	invalid.requireStatus(t, http.StatusBadRequest, pb.StatusCode_WORKFLOW_INVALID_ARGUMENT)
	requireDetailsMention(t, invalid, `workflows[1] (id "w2")`, `workflow node "sample"`, "output_info.params.keep_fraction")

	// A node that reads a node the merge does not keep breaks the chain.
	orphan := `{"id":"tail","model":{"model_type_id":"max-probability-below","output_info":{"params":{"threshold":0.9}}},"node_inputs":[{"node_id":"gone"}]}`
	broken := env.patchWorkflows("merge", workflowJSON("w1", "", orphan))
	broken.requireStatus(t, http.StatusBadRequest, pb.StatusCode_WORKFLOW_INVALID_ARGUMENT)
	requireDetailsMention(t, broken, `workflow node "tail"`, "node_inputs")

	w1, err := env.store.GetWorkflow(context.Background(), "alice", "dest", "w1")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if w1.Version != 1 || w1.Description != "first" {
		t.Errorf("rejected patches changed w1: version %d, description %q", w1.Version, w1.Description)
	}
}

func TestREST_CollectorWorkflowReferences(t *testing.T) {
	env := newTestEnv(t)
	env.postWorkflows(workflowJSON("wf-local", "", sampleNode), workflowJSON("wf-remote", "", remoteNode)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.do(http.MethodPost, "/v2/users/me/apps/other/workflows", keyHeader(alicePAT),
		`{"workflows":[`+workflowJSON("wf-other-app", "", sampleNode)+`]}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	withWorkflows := func(id, pre, post string) string {
		item := strings.TrimSuffix(collectorJSON(id, alicePostKey), "}")
		if pre != "" {
			item += `,"pre_queue_workflow_id":"` + pre + `"`
		}
		if post != "" {
			item += `,"post_queue_workflow_id":"` + post + `"`
		}
		return item + "}"
	}

	cases := []struct {
		name string
		item string
		want []string
	}{
		{name: "unknown pre-queue workflow", item: withWorkflows("c1", "wf-missing", ""),
			want: []string{`pre_queue_workflow_id "wf-missing"`, `app "dest"`}},
		{name: "unknown post-queue workflow", item: withWorkflows("c1", "", "wf-missing"),
			want: []string{`post_queue_workflow_id "wf-missing"`}},
		{name: "workflow of another app", item: withWorkflows("c1", "wf-other-app", ""),
			want: []string{`pre_queue_workflow_id "wf-other-app"`}},
		{name: "remote model before the queue", item: withWorkflows("c1", "wf-remote", ""),
			want: []string{`pre_queue_workflow_id "wf-remote"`, `workflow node "labeler"`, "remote-model", "post_queue_workflow_id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := env.postCollectors(tc.item)
			r.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
			requireDetailsMention(t, r, tc.want...)
		})
	}

	ok := env.postCollectors(withWorkflows("c1", "wf-local", "wf-remote"))
	ok.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	created := ok.list(t, "collectors")[0]
	if field(created, "pre_queue_workflow_id") != "wf-local" || field(created, "post_queue_workflow_id") != "wf-remote" {
		t.Errorf("collector workflows = %v, %v", field(created, "pre_queue_workflow_id"), field(created, "post_queue_workflow_id"))
	}

	// PatchCollectors checks the references too.
	patch := env.do(http.MethodPatch, collectorsPath, keyHeader(alicePAT),
		`{"action":"overwrite","collectors":[`+withWorkflows("c1", "wf-remote", "")+`]}`)
	patch.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	requireDetailsMention(t, patch, `collectors[0] (id "c1")`, `workflow node "labeler"`)

	// A remote-model node cannot enter a workflow that a collector runs before the queue.
	remoteAfterSample := strings.TrimSuffix(remoteNode, "}") + `,"node_inputs":[{"node_id":"sample"}]}`
	addRemote := env.patchWorkflows("merge", workflowJSON("wf-local", "", remoteAfterSample))
	addRemote.requireStatus(t, http.StatusBadRequest, pb.StatusCode_WORKFLOW_INVALID_ARGUMENT)
	requireDetailsMention(t, addRemote, `collector "c1"`, `workflow node "labeler"`, "pre_queue_workflow_id")
	// The post-queue workflow may change freely.
	env.patchWorkflows("overwrite", workflowJSON("wf-remote", "", remoteNode)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
}

func TestREST_DeleteWorkflowInUse(t *testing.T) {
	env := newTestEnv(t)
	env.postWorkflows(workflowJSON("wf-pre", "", sampleNode), workflowJSON("wf-post", "", sampleNode), workflowJSON("wf-free", "", sampleNode)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	item := strings.TrimSuffix(collectorJSON("uses-both", alicePostKey), "}") +
		`,"pre_queue_workflow_id":"wf-pre","post_queue_workflow_id":"wf-post"}`
	env.postCollectors(item).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	inUse := env.deleteWorkflows(`{"ids":["wf-pre"]}`)
	inUse.requireStatus(t, http.StatusBadRequest, pb.StatusCode_FAILURE)
	requireDetailsMention(t, inUse, `workflow "wf-pre"`, `collector "uses-both"`, "pre_queue_workflow_id")

	mixed := env.deleteWorkflows(`{"ids":["wf-free","wf-post","nope"]}`)
	mixed.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	requireDetailsMention(t, mixed, "deleted 1 of 3 workflows", `"nope"`, `workflow "wf-post"`, "post_queue_workflow_id")

	env.deleteWorkflows(`{"ids":["nope"]}`).requireStatus(t, http.StatusNotFound, pb.StatusCode_WORKFLOW_DOES_NOT_EXIST)
	env.deleteWorkflows(`{"ids":["wf-pre"],"delete_all":true}`).requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	env.deleteWorkflows(`{}`).requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)

	all := env.deleteWorkflows(`{"delete_all":true}`)
	all.requireStatus(t, http.StatusBadRequest, pb.StatusCode_FAILURE)
	requireDetailsMention(t, all, `workflow "wf-pre"`, `workflow "wf-post"`)

	// Once the collector is gone, the workflows can go.
	env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"ids":["uses-both"]}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.deleteWorkflows(`{"delete_all":true}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	list := env.do(http.MethodGet, workflowsPath, keyHeader(alicePAT), "")
	if n := len(list.list(t, "workflows")); n != 0 {
		t.Errorf("%d workflows left after delete_all, want 0", n)
	}
}

func TestGRPC_Workflows(t *testing.T) {
	env := newTestEnv(t)
	ctx := withKey(alicePAT)
	app := &pb.UserAppIDSet{UserId: "me", AppId: "dest"}

	params, err := structpb.NewStruct(map[string]any{"threshold": 0.3})
	if err != nil {
		t.Fatal(err)
	}
	node := &pb.WorkflowNode{Id: "floor", Model: &pb.Model{ModelTypeId: "min-probability-above", OutputInfo: &pb.OutputInfo{Params: params}}}

	post, err := env.grpc.PostWorkflows(ctx, &pb.PostWorkflowsRequest{UserAppId: app, Workflows: []*pb.Workflow{
		{Id: "g1", Description: "over gRPC", Nodes: []*pb.WorkflowNode{node}},
	}})
	if err != nil {
		t.Fatalf("PostWorkflows: %v", err)
	}
	requireCode(t, "PostWorkflows", post.GetStatus(), pb.StatusCode_SUCCESS)

	get, err := env.grpc.GetWorkflow(ctx, &pb.GetWorkflowRequest{UserAppId: app, WorkflowId: "g1"})
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}
	requireCode(t, "GetWorkflow", get.GetStatus(), pb.StatusCode_SUCCESS)
	if got := get.GetWorkflow(); got.GetDescription() != "over gRPC" || len(got.GetNodes()) != 1 || got.GetAppId() != "dest" {
		t.Errorf("GetWorkflow = %v", got)
	}

	// A node with an unknown operator is named in the details.
	bad, err := env.grpc.PostWorkflows(ctx, &pb.PostWorkflowsRequest{UserAppId: app, Workflows: []*pb.Workflow{
		{Id: "g2", Nodes: []*pb.WorkflowNode{{Id: "mystery", Model: &pb.Model{ModelTypeId: "mystery-op"}}}},
	}})
	if err != nil {
		t.Fatalf("PostWorkflows: %v", err)
	}
	requireCode(t, "PostWorkflows invalid", bad.GetStatus(), pb.StatusCode_WORKFLOW_INVALID_ARGUMENT)
	if d := bad.GetStatus().GetDetails(); !strings.Contains(d, `workflow node "mystery"`) || !strings.Contains(d, "model.model_type_id") {
		t.Errorf("details %q do not name the node and field", d)
	}

	patch, err := env.grpc.PatchWorkflows(ctx, &pb.PatchWorkflowsRequest{UserAppId: app, Action: "merge", Workflows: []*pb.Workflow{
		{Id: "g1", Description: "patched"},
	}})
	if err != nil {
		t.Fatalf("PatchWorkflows: %v", err)
	}
	requireCode(t, "PatchWorkflows", patch.GetStatus(), pb.StatusCode_SUCCESS)
	if got := patch.GetWorkflows()[0]; got.GetDescription() != "patched" || len(got.GetNodes()) != 1 {
		t.Errorf("patched workflow = %v, want description patched and the stored node", got)
	}

	list, err := env.grpc.ListWorkflows(ctx, &pb.ListWorkflowsRequest{UserAppId: app, Page: 1, PerPage: 10})
	if err != nil {
		t.Fatalf("ListWorkflows: %v", err)
	}
	requireCode(t, "ListWorkflows", list.GetStatus(), pb.StatusCode_SUCCESS)
	if len(list.GetWorkflows()) != 1 {
		t.Errorf("ListWorkflows returned %d workflows, want 1", len(list.GetWorkflows()))
	}

	del, err := env.grpc.DeleteWorkflows(ctx, &pb.DeleteWorkflowsRequest{UserAppId: app, Ids: []string{"g1"}})
	if err != nil {
		t.Fatalf("DeleteWorkflows: %v", err)
	}
	requireCode(t, "DeleteWorkflows", del.GetStatus(), pb.StatusCode_SUCCESS)

	gone, err := env.grpc.GetWorkflow(ctx, &pb.GetWorkflowRequest{UserAppId: app, WorkflowId: "g1"})
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}
	requireCode(t, "GetWorkflow deleted", gone.GetStatus(), pb.StatusCode_WORKFLOW_DOES_NOT_EXIST)
	if gone.GetStatus().GetDescription() != "Workflow does not exist" {
		t.Errorf("description = %q", gone.GetStatus().GetDescription())
	}
}
