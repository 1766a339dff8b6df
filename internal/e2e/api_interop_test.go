package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/interop"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// grpcStep is one RPC sent to the management API through Clarifai's official
// Node client, and the checks of its response.
type grpcStep struct {
	name string
	rpc  string
	key  string
	// request is proto3 JSON with snake_case names, as interop.CallRequest takes it.
	request any
	// want is the Clarifai status code of the response body.
	want  pb.StatusCode
	check func(t *testing.T, res interop.CallResult)
}

// grpcRunner sends the steps of one phase through the Node client.
type grpcRunner struct {
	addr    string
	secrets []string
}

// run sends the steps concurrently, at most one node process per CPU
// because each one spends most of a CPU second starting up, then checks each
// response in its own subtest. Steps of one phase must not depend on each
// other.
func (r *grpcRunner) run(t *testing.T, steps []grpcStep) {
	t.Helper()
	results := make([]interop.CallResult, len(steps))
	errs := make([]error, len(steps))
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, step := range steps {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			results[i], errs[i] = interop.Run(context.Background(), interop.CallRequest{
				Address: r.addr, Key: step.key, RPC: step.rpc, Request: step.request,
			})
		})
	}
	wg.Wait()

	for i, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if errs[i] != nil {
				t.Fatalf("node client: %v", errs[i])
			}
			r.checkCommon(t, results[i], step.want)
			if step.check != nil {
				step.check(t, results[i])
			}
		})
	}
}

// checkCommon checks what every response shares: gRPC status OK with the
// Clarifai status in the body, masked post_inputs_key_id values and no
// secret anywhere.
func (r *grpcRunner) checkCommon(t *testing.T, res interop.CallResult, want pb.StatusCode) {
	t.Helper()
	if res.GRPCCode != 0 {
		t.Fatalf("gRPC code %d (%s), want 0 with the outcome in the body", res.GRPCCode, res.GRPCDetails)
	}
	requireNoSecrets(t, res.Response, r.secrets)

	var doc map[string]any
	if err := json.Unmarshal(res.Response, &doc); err != nil {
		t.Fatalf("decode response %s: %v", res.Response, err)
	}
	checkResponseKeys(t, doc)

	st := decodeResult(t, res, &pb.BaseResponse{}).GetStatus()
	if st.GetCode() != want {
		t.Fatalf("status.code = %s, want %s (details %q)", st.GetCode(), want, st.GetDetails())
	}
	if st.GetDescription() == "" {
		t.Error("status.description is empty")
	}
	if !reqIDPattern.MatchString(st.GetReqId()) {
		t.Errorf("status.req_id = %q, want 32 hex characters", st.GetReqId())
	}
}

// decodeResult decodes the Node client's response into msg.
func decodeResult[M proto.Message](t *testing.T, res interop.CallResult, msg M) M {
	t.Helper()
	res.Unmarshal(t, msg)
	return msg
}

// grpcSource is the collector_source of the gRPC collectors.
func grpcSource(modelID, key string) map[string]any {
	return map[string]any{"api_post_model_outputs_collector_source": map[string]any{
		"model_user_id":      "clarifai",
		"model_app_id":       "main",
		"model_id":           modelID,
		"model_version_id":   "aa7f35c01e0642fda5cf400f543e7c40",
		"post_inputs_key_id": key,
		"caller_user_id":     bob,
	}}
}

func grpcCollector(id, modelID, key string, sample float64) map[string]any {
	return map[string]any{"id": id, "pre_queue_random_sample": sample, "collector_source": grpcSource(modelID, key)}
}

// trainingApp is the user_app_id of alice's destination app.
var trainingApp = map[string]any{"user_id": "me", "app_id": "training"}

// TestAPI_GRPCOfficialClient drives every RPC of the management API's gRPC
// listener through Clarifai's official Node client, clarifai-nodejs-grpc,
// on its success and error paths.
func TestAPI_GRPCOfficialClient(t *testing.T) {
	interop.RequireNode(t)
	s := startStack(t, stackOptions{})
	aliceKey := s.createKey(owner)
	readOnly := s.createKey(owner, identity.ScopeCollectorsGet, identity.ScopeAppsGet, identity.ScopeInputsGet)
	bobKey := s.createKey(bob)
	unknownKey := newUnknownKey(t)
	secrets := []string{aliceKey, readOnly, bobKey, unknownKey}

	// The apps that the steps share are made over REST, which costs no node process.
	rest := &restClient{addr: s.addrs.API, secrets: secrets}
	rest.do(t, "POST", "/v2/users/me/apps", aliceKey, `{"apps": [{"id": "training"}]}`, 200, pb.StatusCode_SUCCESS)
	rest.do(t, "POST", "/v2/users/me/apps", bobKey, `{"apps": [{"id": "bobs-app"}]}`, 200, pb.StatusCode_SUCCESS)

	g := &grpcRunner{addr: s.addrs.GRPC, secrets: secrets}
	f := &grpcFixture{t: t, alice: aliceKey, readOnly: readOnly, unknown: unknownKey}

	g.run(t, f.workflowPhase())
	g.run(t, f.firstPhase())

	// A collector with a policy, which the Node client does not know
	// (field 1000), made over REST in the app of the first phase.
	rest.do(t, "POST", "/v2/users/me/apps/grpc-app/collectors", aliceKey,
		`{"collectors": [{"id": "col-policy", "pre_queue_random_sample": 1, "policy": `+grpcPolicyJSON+`,
			"collector_source": {"api_post_model_outputs_collector_source": {"model_user_id": "clarifai", "model_app_id": "main",
			"model_id": "colors", "post_inputs_key_id": "`+aliceKey+`"}}}]}`, 200, pb.StatusCode_SUCCESS)

	g.run(t, f.secondPhase())
	t.Run("REST/paused collector stored", func(t *testing.T) {
		body := rest.do(t, "GET", "/v2/users/me/apps/training/collectors/col-2", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		requireCollectorState(t, decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector(), pb.StatusCode_COLLECTOR_INACTIVE)
	})
	t.Run("REST/rejected batch stored nothing", func(t *testing.T) {
		rest.do(t, "GET", "/v2/users/me/apps/training/collectors/col-new", aliceKey, "", 404, pb.StatusCode_COLLECTOR_MISSING)
	})

	g.run(t, f.thirdPhase())
	t.Run("REST/policy kept after a Node client overwrite", func(t *testing.T) {
		body := rest.do(t, "GET", "/v2/users/me/apps/grpc-app/collectors/col-policy", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		col := decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector()
		requirePolicy(t, col, grpcPolicy)
		if col.GetDescription() != "patched by the Node client" {
			t.Errorf("description = %q, want the Node client's overwrite", col.GetDescription())
		}
	})
	t.Run("REST/state after deletes", func(t *testing.T) {
		body := rest.do(t, "GET", "/v2/users/me/apps/training/inputs", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		requireIDs(t, "inputs", decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs(), "in-1-png", "in-2-text")
		body = rest.do(t, "GET", "/v2/users/me/apps/training/collectors", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		requireIDs(t, "collectors", decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors(), "col-2", "col-3")
	})

	g.run(t, f.lastPhase())
	t.Run("REST/no collector left", func(t *testing.T) {
		body := rest.do(t, "GET", "/v2/users/me/apps/training/collectors", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		requireIDs(t, "collectors", decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors())
	})
	t.Run("REST/no workflow left", func(t *testing.T) {
		body := rest.do(t, "GET", "/v2/users/me/apps/training/workflows", aliceKey, "", 200, pb.StatusCode_SUCCESS)
		requireIDs(t, "workflows", decodeJSON(t, body, &pb.MultiWorkflowResponse{}).GetWorkflows())
	})

	requireNoSecrets(t, []byte(s.logs.String()), secrets)
}

// grpcFixture holds the keys and the data the phases share. Checks of one
// phase record what later phases compare against.
type grpcFixture struct {
	t        *testing.T
	alice    string
	readOnly string
	unknown  string

	png, gif []byte
	metadata map[string]any
	// createdAt is the created_at of col-2 as PostCollectors returned it.
	createdAt string
}

// firstPhase creates the inputs and collectors and runs the steps that need
// nothing stored.
func (f *grpcFixture) firstPhase() []grpcStep {
	f.png = goImage(f.t, "video-001.png")
	f.gif = goImage(f.t, "video-001.gif")
	f.metadata = map[string]any{
		"camera": "dock-7",
		"nested": map[string]any{"empty": map[string]any{}, "list": []any{1.5, "x", true, nil}},
		"empty":  map[string]any{},
	}

	steps := []grpcStep{
		{name: "GetUser/me", rpc: "GetUser", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}},
			check: func(t *testing.T, res interop.CallResult) {
				if got := decodeResult(t, res, &pb.SingleUserResponse{}).GetUser().GetId(); got != owner {
					t.Errorf("user.id = %q, want %q", got, owner)
				}
			}},
		{name: "GetUser/no key", rpc: "GetUser", want: pb.StatusCode_CONN_KEY_INVALID,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}},
			check: func(t *testing.T, res interop.CallResult) {
				if user := decodeResult(t, res, &pb.SingleUserResponse{}).GetUser(); user != nil {
					t.Errorf("user = %v, want none without a key", user)
				}
			}},
		{name: "PostApps/new", rpc: "PostApps", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{
				"user_app_id": map[string]any{"user_id": "me"},
				"apps":        []any{map[string]any{"id": "grpc-app", "name": "gRPC app", "description": "made by the Node client"}},
			},
			check: func(t *testing.T, res interop.CallResult) {
				apps := decodeResult(t, res, &pb.MultiAppResponse{}).GetApps()
				requireIDs(t, "apps", apps, "grpc-app")
				if len(apps) == 1 && (apps[0].GetUserId() != owner || apps[0].GetCreatedAt() == nil) {
					t.Errorf("app = %v, want user_id %q and created_at", apps[0], owner)
				}
			}},
		{name: "ListApps/unknown key", rpc: "ListApps", key: f.unknown, want: pb.StatusCode_CONN_KEY_NOT_FOUND,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}}},
		{name: "GetApp/unknown app", rpc: "GetApp", key: f.alice, want: pb.StatusCode_CONN_DOES_NOT_EXIST,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me", "app_id": "no-such-app"}}},
		{name: "PostInputs/image text metadata", rpc: "PostInputs", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "inputs": []any{
				map[string]any{"id": "in-1-png", "data": map[string]any{
					"image":    map[string]any{"base64": base64.StdEncoding.EncodeToString(f.png)},
					"metadata": f.metadata,
				}},
				map[string]any{"id": "in-2-text", "data": map[string]any{"text": map[string]any{"raw": "Is this a question?"}}},
				map[string]any{"id": "in-3-gif", "data": map[string]any{"image": map[string]any{"base64": base64.StdEncoding.EncodeToString(f.gif)}}},
			}},
			check: func(t *testing.T, res interop.CallResult) {
				inputs := decodeResult(t, res, &pb.MultiInputResponse{}).GetInputs()
				requireIDs(t, "inputs", inputs, "in-1-png", "in-2-text", "in-3-gif")
				for _, in := range inputs {
					requireInputStatus(t, in, pb.StatusCode_INPUT_SUCCESS, "")
				}
			}},
		{name: "PostCollectors/three", rpc: "PostCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "collectors": []any{
				map[string]any{
					"id": "col-1", "description": "Bob's general predicts",
					"pre_queue_workflow_id": "wf-pre", "post_queue_workflow_id": "wf-post",
					"pre_queue_random_sample": 0.5, "collect_outputs": true,
					"collector_source": grpcSource("general-image-recognition", f.alice),
				},
				grpcCollector("col-2", "colors", f.alice, 1),
				grpcCollector("col-3", "text-stats", f.alice, 0.25),
			}},
			check: func(t *testing.T, res interop.CallResult) {
				cols := decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors()
				requireIDs(t, "collectors", cols, "col-1", "col-2", "col-3")
				if len(cols) != 3 {
					return
				}
				requireCollector(t, cols[0], pb.StatusCode_COLLECTOR_ACTIVE, maskedKey(f.alice))
				requireCollectorKey(t, cols[1], maskedKey(f.alice))
				f.createdAt = cols[1].GetCreatedAt().AsTime().String()
			}},
		{name: "PostCollectors/invalid fields", rpc: "PostCollectors", key: f.alice, want: pb.StatusCode_CONN_INVALID_REQUEST,
			request: map[string]any{"user_app_id": trainingApp, "collectors": []any{
				grpcCollector("bad id!", "colors", f.alice, 1),
				map[string]any{"id": "no-model", "pre_queue_random_sample": 1, "collector_source": map[string]any{
					"api_post_model_outputs_collector_source": map[string]any{"model_user_id": "clarifai", "post_inputs_key_id": f.alice},
				}},
				grpcCollector("sample-high", "colors", f.alice, 1.5),
				grpcCollector("no-key", "colors", "", 1),
				grpcCollector("valid", "colors", f.alice, 1),
			}},
			check: func(t *testing.T, res interop.CallResult) {
				resp := decodeResult(t, res, &pb.MultiCollectorResponse{})
				requireDetails(t, resp.GetStatus(),
					`collectors[0] (id "bad id!")`,
					`collectors[1] (id "no-model")`, "model_app_id is required",
					`collectors[2] (id "sample-high")`, "pre_queue_random_sample",
					`collectors[3] (id "no-key")`, "post_inputs_key_id is required")
				if len(resp.GetCollectors()) != 0 {
					t.Errorf("a rejected request returned collectors %q", idsOf(resp.GetCollectors()))
				}
			}},
		{name: "PostCollectors/missing scope", rpc: "PostCollectors", key: f.readOnly, want: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			request: map[string]any{"user_app_id": trainingApp, "collectors": []any{grpcCollector("col-read-only", "colors", f.alice, 1)}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.MultiCollectorResponse{}).GetStatus(), "Collectors_Add", "PostCollectors")
			}},
		{name: "ListCollectors/another user's app", rpc: "ListCollectors", key: f.alice, want: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			request: map[string]any{"user_app_id": map[string]any{"user_id": bob, "app_id": "bobs-app"}}},
		{name: "ListInputs/per_page above maximum", rpc: "ListInputs", key: f.alice, want: pb.StatusCode_CONN_INVALID_REQUEST,
			request: map[string]any{"user_app_id": trainingApp, "per_page": 1001}},
		{name: "PostCollectors/unknown workflow", rpc: "PostCollectors", key: f.alice, want: pb.StatusCode_CONN_INVALID_REQUEST,
			request: map[string]any{"user_app_id": trainingApp, "collectors": []any{map[string]any{
				"id": "col-no-workflow", "post_queue_workflow_id": "wf-missing",
				"collector_source": grpcSource("colors", f.alice),
			}}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.MultiCollectorResponse{}).GetStatus(), `post_queue_workflow_id "wf-missing"`)
			}},
		{name: "GetWorkflow/stored", rpc: "GetWorkflow", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "workflow_id": "wf-pre"},
			check: func(t *testing.T, res interop.CallResult) {
				wf := decodeResult(t, res, &pb.SingleWorkflowResponse{}).GetWorkflow()
				requireNodes(t, wf, "sample", "cats")
				if wf.GetDescription() != "half of the cats" || wf.GetAppId() != "training" || wf.GetCreatedAt() == nil {
					t.Errorf("workflow = %v, want wf-pre as posted", wf)
				}
				if got := wf.GetNodes()[0].GetModel().GetOutputInfo().GetParams().AsMap()["keep_fraction"]; got != 0.5 {
					t.Errorf("keep_fraction = %v, want 0.5", got)
				}
			}},
		{name: "ListWorkflows/second page", rpc: "ListWorkflows", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "page": 2, "per_page": 1},
			check: func(t *testing.T, res interop.CallResult) {
				// Both workflows share created_at, so the ID orders them.
				requireIDs(t, "workflows", decodeResult(t, res, &pb.MultiWorkflowResponse{}).GetWorkflows(), "wf-pre")
			}},
		{name: "ListWorkflows/missing scope", rpc: "ListWorkflows", key: f.readOnly, want: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			request: map[string]any{"user_app_id": trainingApp},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.MultiWorkflowResponse{}).GetStatus(), "Workflows_Get")
			}},
	}
	return append(steps, f.unservedSteps()...)
}

// unservedSteps call the RPCs that collectord answers with NOT_IMPLEMENTED.
func (f *grpcFixture) unservedSteps() []grpcStep {
	return []grpcStep{
		{name: "PostModelOutputs/not implemented", rpc: "PostModelOutputs", key: f.alice, want: pb.StatusCode_NOT_IMPLEMENTED,
			request: map[string]any{
				"user_app_id": map[string]any{"user_id": "clarifai", "app_id": "main"},
				"model_id":    "general-image-recognition",
				"inputs":      []any{map[string]any{"data": map[string]any{"text": map[string]any{"raw": "hello"}}}},
			}},
	}
}

// secondPhase reads what the first phase stored, pauses col-2 and checks
// the errors that need stored data.
func (f *grpcFixture) secondPhase() []grpcStep {
	return append(f.secondPhaseWorkflows(), []grpcStep{
		{name: "GetApp/created", rpc: "GetApp", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me", "app_id": "grpc-app"}},
			check: func(t *testing.T, res interop.CallResult) {
				app := decodeResult(t, res, &pb.SingleAppResponse{}).GetApp()
				if app.GetId() != "grpc-app" || app.GetName() != "gRPC app" || app.GetDescription() != "made by the Node client" {
					t.Errorf("app = %v, want grpc-app as posted", app)
				}
			}},
		{name: "ListApps/own apps", rpc: "ListApps", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}, "page": 1, "per_page": 10},
			check: func(t *testing.T, res interop.CallResult) {
				requireIDs(t, "apps", decodeResult(t, res, &pb.MultiAppResponse{}).GetApps(), "training", "grpc-app")
			}},
		{name: "PostApps/duplicate id", rpc: "PostApps", key: f.alice, want: pb.StatusCode_DATABASE_DUPLICATE_KEY,
			request: map[string]any{"user_app_id": map[string]any{"user_id": "me"}, "apps": []any{map[string]any{"id": "grpc-app"}}}},

		{name: "GetInput/image", rpc: "GetInput", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "input_id": "in-1-png"},
			check: func(t *testing.T, res interop.CallResult) {
				in := decodeResult(t, res, &pb.SingleInputResponse{}).GetInput()
				if !bytes.Equal(in.GetData().GetImage().GetBase64(), f.png) {
					t.Errorf("image bytes differ from the posted PNG (%d vs %d bytes)", len(in.GetData().GetImage().GetBase64()), len(f.png))
				}
				if got := in.GetData().GetMetadata().AsMap(); !reflect.DeepEqual(got, f.metadata) {
					t.Errorf("metadata = %v, want %v", got, f.metadata)
				}
				requireInputStatus(t, in, pb.StatusCode_INPUT_SUCCESS, "")
			}},
		{name: "ListInputs/second page", rpc: "ListInputs", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "page": 2, "per_page": 1},
			check: func(t *testing.T, res interop.CallResult) {
				requireIDs(t, "inputs", decodeResult(t, res, &pb.MultiInputResponse{}).GetInputs(), "in-2-text")
			}},
		{name: "GetInput/unknown input", rpc: "GetInput", key: f.alice, want: pb.StatusCode_INPUT_DOES_NOT_EXIST,
			request: map[string]any{"user_app_id": trainingApp, "input_id": "no-such-input"}},
		{name: "PostInputs/duplicate id", rpc: "PostInputs", key: f.alice, want: pb.StatusCode_MIXED_STATUS,
			request: map[string]any{"user_app_id": trainingApp, "inputs": []any{
				map[string]any{"id": "in-1-png", "data": map[string]any{"text": map[string]any{"raw": "again"}}},
				map[string]any{"id": "in-4-text", "data": map[string]any{"text": map[string]any{"raw": "new"}}},
			}},
			check: func(t *testing.T, res interop.CallResult) {
				inputs := decodeResult(t, res, &pb.MultiInputResponse{}).GetInputs()
				requireIDs(t, "inputs", inputs, "in-1-png", "in-4-text")
				if len(inputs) == 2 {
					requireInputStatus(t, inputs[0], pb.StatusCode_INPUT_DUPLICATE, "Input has a duplicate ID.")
					requireInputStatus(t, inputs[1], pb.StatusCode_INPUT_SUCCESS, "")
				}
			}},

		{name: "GetCollector/stored", rpc: "GetCollector", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "collector_id": "col-1"},
			check: func(t *testing.T, res interop.CallResult) {
				col := decodeResult(t, res, &pb.SingleCollectorResponse{}).GetCollector()
				requireCollector(t, col, pb.StatusCode_COLLECTOR_ACTIVE, maskedKey(f.alice))
			}},
		{name: "GetCollector/unknown collector", rpc: "GetCollector", key: f.alice, want: pb.StatusCode_COLLECTOR_MISSING,
			request: map[string]any{"user_app_id": trainingApp, "collector_id": "no-such-collector"}},
		{name: "ListCollectors/first page", rpc: "ListCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "page": 1, "per_page": 2},
			check: func(t *testing.T, res interop.CallResult) {
				requireIDs(t, "collectors", decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors(), "col-1", "col-2")
			}},
		{name: "ListCollectors/second page", rpc: "ListCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "page": 2, "per_page": 2},
			check: func(t *testing.T, res interop.CallResult) {
				// The rejected batch of the first phase stored nothing.
				requireIDs(t, "collectors", decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors(), "col-3")
			}},
		{name: "PostCollectors/duplicate id", rpc: "PostCollectors", key: f.alice, want: pb.StatusCode_DATABASE_DUPLICATE_KEY,
			request: map[string]any{"user_app_id": trainingApp, "collectors": []any{
				grpcCollector("col-new", "colors", f.alice, 1),
				grpcCollector("col-1", "colors", f.alice, 1),
			}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.MultiCollectorResponse{}).GetStatus(), `collectors[1] (id "col-1")`)
			}},
		{name: "PatchCollectors/pause", rpc: "PatchCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "action": "overwrite", "collectors": []any{map[string]any{
				"id": "col-2", "description": "paused", "pre_queue_random_sample": 0.75,
				"status":           map[string]any{"code": "COLLECTOR_INACTIVE"},
				"collector_source": grpcSource("colors", maskedKey(f.alice)),
			}}},
			check: func(t *testing.T, res interop.CallResult) {
				cols := decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors()
				requireIDs(t, "collectors", cols, "col-2")
				if len(cols) != 1 {
					return
				}
				requireCollectorState(t, cols[0], pb.StatusCode_COLLECTOR_INACTIVE)
				// The masked key in the request keeps the stored key.
				requireCollectorKey(t, cols[0], maskedKey(f.alice))
				if cols[0].GetDescription() != "paused" || cols[0].GetPreQueueRandomSample() != 0.75 {
					t.Errorf("description, sample = %q, %v; want paused, 0.75", cols[0].GetDescription(), cols[0].GetPreQueueRandomSample())
				}
				if got := cols[0].GetCreatedAt().AsTime().String(); got != f.createdAt {
					t.Errorf("created_at = %s, want the original %s", got, f.createdAt)
				}
			}},
		{name: "PatchCollectors/unknown collector", rpc: "PatchCollectors", key: f.alice, want: pb.StatusCode_COLLECTOR_MISSING,
			request: map[string]any{"user_app_id": trainingApp, "action": "overwrite", "collectors": []any{
				grpcCollector("no-such-collector", "colors", f.alice, 1),
			}}},
	}...)
}

// thirdPhase resumes col-2, overwrites the collector with a policy and
// deletes inputs and a collector.
func (f *grpcFixture) thirdPhase() []grpcStep {
	return []grpcStep{
		// The Node client cannot send the policy, and the stored one stays.
		{name: "PatchCollectors/collector with a policy", rpc: "PatchCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": grpcApp, "action": "overwrite", "collectors": []any{map[string]any{
				"id": "col-policy", "description": "patched by the Node client", "pre_queue_random_sample": 1,
				"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
					"model_user_id": "clarifai", "model_app_id": "main", "model_id": "colors",
				}},
			}}},
			check: func(t *testing.T, res interop.CallResult) {
				requireIDs(t, "collectors", decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors(), "col-policy")
			}},
		{name: "PatchCollectors/resume", rpc: "PatchCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "action": "overwrite", "collectors": []any{map[string]any{
				"id": "col-2", "description": "resumed", "pre_queue_random_sample": 1,
				"status":           map[string]any{"code": "COLLECTOR_ACTIVE"},
				"collector_source": grpcSource("colors", ""),
			}}},
			check: func(t *testing.T, res interop.CallResult) {
				cols := decodeResult(t, res, &pb.MultiCollectorResponse{}).GetCollectors()
				requireIDs(t, "collectors", cols, "col-2")
				if len(cols) == 1 {
					requireCollectorState(t, cols[0], pb.StatusCode_COLLECTOR_ACTIVE)
					// An empty post_inputs_key_id keeps the stored key.
					requireCollectorKey(t, cols[0], maskedKey(f.alice))
				}
			}},
		{name: "DeleteInputs/one", rpc: "DeleteInputs", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "ids": []any{"in-4-text"}}},
		{name: "DeleteInputs/one missing", rpc: "DeleteInputs", key: f.alice, want: pb.StatusCode_MIXED_STATUS,
			request: map[string]any{"user_app_id": trainingApp, "ids": []any{"in-3-gif", "no-such-input"}},
			check: func(t *testing.T, res interop.CallResult) {
				st := decodeResult(t, res, &pb.BaseResponse{}).GetStatus()
				requireDetails(t, st, `"no-such-input"`)
				if strings.Contains(st.GetDetails(), "in-3-gif") {
					t.Errorf("status.details = %q names the deleted input as missing", st.GetDetails())
				}
			}},
		{name: "DeleteCollectors/one missing", rpc: "DeleteCollectors", key: f.alice, want: pb.StatusCode_MIXED_STATUS,
			request: map[string]any{"user_app_id": trainingApp, "ids": []any{"col-1", "no-such-collector"}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.BaseResponse{}).GetStatus(), `"no-such-collector"`)
			}},
	}
}

// lastPhase deletes the remaining collectors and, since col-1 is gone, both
// workflows.
func (f *grpcFixture) lastPhase() []grpcStep {
	return []grpcStep{
		{name: "DeleteCollectors/delete_all", rpc: "DeleteCollectors", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "delete_all": true}},
		{name: "DeleteWorkflows/both", rpc: "DeleteWorkflows", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "ids": []any{"wf-pre", "wf-post"}}},
	}
}

// grpcApp is the user_app_id of the app the first phase creates.
var grpcApp = map[string]any{"user_id": "me", "app_id": "grpc-app"}

// grpcPolicyJSON is the policy of col-policy as REST JSON, and grpcPolicy
// the same policy as a message.
const grpcPolicyJSON = `{"max_inputs_per_day": 50, "dedup_window_seconds": 3600, "preview": true}`

var grpcPolicy = &pb.CollectorPolicy{MaxInputsPerDay: 50, DedupWindowSeconds: 3600, Preview: true}

// grpcNode returns a workflow node as proto3 JSON.
func grpcNode(id, typeID string, params map[string]any, input string) map[string]any {
	node := map[string]any{"id": id, "model": map[string]any{
		"id": id, "model_type_id": typeID, "output_info": map[string]any{"params": params},
	}}
	if input != "" {
		node["node_inputs"] = []any{map[string]any{"node_id": input}}
	}
	return node
}

// workflowPhase creates the workflows that col-1 of the first phase names,
// and checks the errors of PostWorkflows.
func (f *grpcFixture) workflowPhase() []grpcStep {
	thresholder := grpcNode("cats", "concept-thresholder", map[string]any{"concept_threshold_type": "GREATER_THAN"}, "sample")
	thresholder["model"].(map[string]any)["output_info"].(map[string]any)["data"] = map[string]any{
		"concepts": []any{map[string]any{"id": "cat", "value": 0.8}},
	}

	return []grpcStep{
		{name: "PostWorkflows/two", rpc: "PostWorkflows", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "workflows": []any{
				map[string]any{"id": "wf-pre", "description": "half of the cats", "nodes": []any{
					grpcNode("sample", "random-sample", map[string]any{"keep_fraction": 0.5}, ""),
					thresholder,
				}},
				map[string]any{"id": "wf-post", "metadata": map[string]any{"owner": "vision-team"}, "nodes": []any{
					grpcNode("floor", "min-probability-above", map[string]any{"threshold": 0.2}, ""),
				}},
			}},
			check: func(t *testing.T, res interop.CallResult) {
				wfs := decodeResult(t, res, &pb.MultiWorkflowResponse{}).GetWorkflows()
				requireIDs(t, "workflows", wfs, "wf-pre", "wf-post")
				if len(wfs) == 2 {
					requireNodes(t, wfs[0], "sample", "cats")
					if got := wfs[1].GetMetadata().AsMap()["owner"]; got != "vision-team" {
						t.Errorf("wf-post metadata.owner = %v, want vision-team", got)
					}
				}
			}},
		{name: "PostWorkflows/invalid node", rpc: "PostWorkflows", key: f.alice, want: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			request: map[string]any{"user_app_id": trainingApp, "workflows": []any{
				map[string]any{"id": "wf-bad", "nodes": []any{
					grpcNode("thr", "concept-thresholder", map[string]any{"concept_threshold_type": "ROUGHLY"}, ""),
				}},
			}},
			check: func(t *testing.T, res interop.CallResult) {
				resp := decodeResult(t, res, &pb.MultiWorkflowResponse{})
				requireDetails(t, resp.GetStatus(), `workflows[0] (id "wf-bad")`, `workflow node "thr"`, "output_info.params.concept_threshold_type")
				if len(resp.GetWorkflows()) != 0 {
					t.Errorf("a rejected request returned workflows %q", idsOf(resp.GetWorkflows()))
				}
			}},
		{name: "PostWorkflows/missing scope", rpc: "PostWorkflows", key: f.readOnly, want: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			request: map[string]any{"user_app_id": trainingApp, "workflows": []any{
				map[string]any{"id": "wf-read-only", "nodes": []any{grpcNode("floor", "min-probability-above", map[string]any{"threshold": 0.2}, "")}},
			}}},
	}
}

// secondPhaseWorkflows patch a workflow, try to delete one that col-1 uses,
// and read the collector whose policy the Node client does not know.
func (f *grpcFixture) secondPhaseWorkflows() []grpcStep {
	return []grpcStep{
		{name: "PatchWorkflows/merge", rpc: "PatchWorkflows", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": trainingApp, "action": "merge", "workflows": []any{
				map[string]any{"id": "wf-post", "description": "floor then ceiling", "nodes": []any{
					grpcNode("ceiling", "max-probability-below", map[string]any{"threshold": 0.9}, "floor"),
				}},
			}},
			check: func(t *testing.T, res interop.CallResult) {
				wfs := decodeResult(t, res, &pb.MultiWorkflowResponse{}).GetWorkflows()
				requireIDs(t, "workflows", wfs, "wf-post")
				if len(wfs) == 1 {
					requireNodes(t, wfs[0], "floor", "ceiling")
					if wfs[0].GetDescription() != "floor then ceiling" {
						t.Errorf("description = %q", wfs[0].GetDescription())
					}
				}
			}},
		{name: "PatchWorkflows/unsupported action", rpc: "PatchWorkflows", key: f.alice, want: pb.StatusCode_CONN_INVALID_REQUEST,
			request: map[string]any{"user_app_id": trainingApp, "action": "remove", "workflows": []any{map[string]any{"id": "wf-post"}}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.MultiWorkflowResponse{}).GetStatus(), `"remove"`, `"merge"`)
			}},
		{name: "DeleteWorkflows/in use", rpc: "DeleteWorkflows", key: f.alice, want: pb.StatusCode_FAILURE,
			request: map[string]any{"user_app_id": trainingApp, "ids": []any{"wf-pre"}},
			check: func(t *testing.T, res interop.CallResult) {
				requireDetails(t, decodeResult(t, res, &pb.BaseResponse{}).GetStatus(), `workflow "wf-pre"`, `collector "col-1"`)
			}},
		{name: "GetWorkflow/unknown workflow", rpc: "GetWorkflow", key: f.alice, want: pb.StatusCode_WORKFLOW_DOES_NOT_EXIST,
			request: map[string]any{"user_app_id": trainingApp, "workflow_id": "no-such-workflow"}},
		{name: "GetCollector/with a policy", rpc: "GetCollector", key: f.alice, want: pb.StatusCode_SUCCESS,
			request: map[string]any{"user_app_id": grpcApp, "collector_id": "col-policy"},
			check: func(t *testing.T, res interop.CallResult) {
				col := decodeResult(t, res, &pb.SingleCollectorResponse{}).GetCollector()
				if col.GetId() != "col-policy" || col.GetPreQueueRandomSample() != 1 {
					t.Errorf("collector = %v, want col-policy as posted", col)
				}
				// The Node client drops the field it does not know.
				if col.GetPolicy() != nil {
					t.Errorf("the Node client returned policy %v, which its schema lacks", col.GetPolicy())
				}
			}},
	}
}
