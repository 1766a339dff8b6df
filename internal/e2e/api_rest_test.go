package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/identity"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// restCase is one REST request to the management API, its raw JSON body as
// a curl user writes it, and the response it must get.
type restCase struct {
	name     string
	method   string
	path     string
	key      string
	body     string
	wantHTTP int
	wantCode pb.StatusCode
	// check runs extra assertions on the response body.
	check func(t *testing.T, body []byte)
}

// restClient sends REST requests to one stack and checks what every
// response shares.
type restClient struct {
	addr string
	// secrets must never appear in a response.
	secrets []string
}

// run runs the cases in order as subtests, because later cases build on the
// state that earlier ones leave.
func (c *restClient) run(t *testing.T, cases []restCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := c.do(t, tc.method, tc.path, tc.key, tc.body, tc.wantHTTP, tc.wantCode)
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

// do sends one request and fails the test unless the HTTP status is
// wantHTTP and the body is a JSON object whose status has wantCode. It also
// checks the request ID, the http_status_code field, snake_case keys, the
// masking of post_inputs_key_id and the absence of every secret.
func (c *restClient) do(t *testing.T, method, path, key, body string, wantHTTP int, wantCode pb.StatusCode) []byte {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+c.addr+path, reader)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Key "+key)
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}

	if resp.StatusCode != wantHTTP {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, wantHTTP, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	requireNoSecrets(t, data, c.secrets)

	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v: %s", method, path, err, data)
	}
	checkStatusJSON(t, doc, wantCode, wantHTTP)
	checkResponseKeys(t, doc)
	return data
}

var reqIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkStatusJSON checks the status object of a REST response as JSON: the
// code by name, a description, a request ID and the HTTP status.
func checkStatusJSON(t *testing.T, doc map[string]any, wantCode pb.StatusCode, wantHTTP int) {
	t.Helper()
	st, ok := doc["status"].(map[string]any)
	if !ok {
		t.Fatalf("response has no status object: %v", doc)
	}
	if st["code"] != wantCode.String() {
		t.Fatalf("status.code = %v, want %s (details %q)", st["code"], wantCode, st["details"])
	}
	if d, _ := st["description"].(string); d == "" {
		t.Error("status.description is empty")
	}
	if id, _ := st["req_id"].(string); !reqIDPattern.MatchString(id) {
		t.Errorf("status.req_id = %v, want 32 hex characters", st["req_id"])
	}
	if got, _ := st["http_status_code"].(float64); int(got) != wantHTTP {
		t.Errorf("status.http_status_code = %v, want %d", st["http_status_code"], wantHTTP)
	}
}

// checkResponseKeys walks a decoded JSON response: every key outside user
// metadata is snake_case, and every post_inputs_key_id is masked.
func checkResponseKeys(t *testing.T, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, item := range v {
			if k != strings.ToLower(k) {
				t.Errorf("response key %q is not snake_case", k)
			}
			if k == "post_inputs_key_id" {
				requireMasked(t, item)
			}
			if k != "metadata" {
				checkResponseKeys(t, item)
			}
		}
	case []any:
		for _, item := range v {
			checkResponseKeys(t, item)
		}
	}
}

var maskPattern = regexp.MustCompile(`^\*{4}[A-Za-z0-9_-]{0,4}$`)

// requireMasked checks that a post_inputs_key_id value is "****" with at
// most the last 4 characters of the key.
func requireMasked(t *testing.T, v any) {
	t.Helper()
	s, _ := v.(string)
	if !maskPattern.MatchString(s) {
		t.Errorf("post_inputs_key_id = %q, want it masked as ****xxxx", v)
	}
}

// maskedKey is the form of a key that responses show.
func maskedKey(key string) string {
	return "****" + key[len(key)-4:]
}

func requireNoSecrets(t *testing.T, body []byte, secrets []string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && bytes.Contains(body, []byte(secret)) {
			t.Errorf("the response contains a secret key ending in %q", secret[len(secret)-4:])
		}
	}
}

// createAppKey runs `collectord keys create --app` and returns the printed
// key of an app key for app.
func createAppKey(t *testing.T, s *stack, user, app string) string {
	t.Helper()
	args := []string{"keys", "create", "--data-dir", s.dataDir, "--user", user, "--app", app}
	var stdout, stderr bytes.Buffer
	if err := cli.Main(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("keys create --app: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// newUnknownKey returns a well-formed key that no key store holds.
func newUnknownKey(t *testing.T) string {
	t.Helper()
	key, err := identity.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// decodeJSON decodes a REST body into msg, rejecting fields msg lacks.
func decodeJSON[M proto.Message](t *testing.T, body []byte, msg M) M {
	t.Helper()
	if err := protojson.Unmarshal(body, msg); err != nil {
		t.Fatalf("decode %T: %v: %s", msg, err, body)
	}
	return msg
}

// statusOf decodes the status of any REST response body.
func statusOf(t *testing.T, body []byte) *pb.Status {
	t.Helper()
	var resp pb.BaseResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &resp); err != nil {
		t.Fatalf("decode status: %v: %s", err, body)
	}
	return resp.GetStatus()
}

// idsOf returns the IDs of items, in order.
func idsOf[T interface{ GetId() string }](items []T) []string {
	out := make([]string, len(items))
	for i, item := range items {
		out[i] = item.GetId()
	}
	return out
}

func requireIDs[T interface{ GetId() string }](t *testing.T, kind string, items []T, want ...string) {
	t.Helper()
	if got := idsOf(items); !slices.Equal(got, want) {
		t.Errorf("%s ids = %q, want %q", kind, got, want)
	}
}

func requireDetails(t *testing.T, st *pb.Status, parts ...string) {
	t.Helper()
	for _, part := range parts {
		if !strings.Contains(st.GetDetails(), part) {
			t.Errorf("status.details = %q, want it to mention %q", st.GetDetails(), part)
		}
	}
}

func requireRecent(t *testing.T, field string, got time.Time) {
	t.Helper()
	if d := time.Since(got); d < 0 || d > time.Hour {
		t.Errorf("%s = %v, want the time of the request", field, got)
	}
}

// restMetadata is the metadata of the REST inputs: nested and empty objects
// and a list, which must come back JSON-equal.
const restMetadata = `{"camera": "dock-7", "nested": {"empty": {}, "list": [1.5, "x", true, null]}, "empty": {}}`

// restSource is a collector_source with placeholders for the model ID and
// the post inputs key, in the form of Clarifai's collector examples.
const restSource = `"collector_source": {
	"api_post_model_outputs_collector_source": {
		"model_user_id": "clarifai",
		"model_app_id": "main",
		"model_id": %q,
		"model_version_id": "aa7f35c01e0642fda5cf400f543e7c40",
		"post_inputs_key_id": %q,
		"caller_user_id": "bob"
	}
}`

func restSourceJSON(modelID, key string) string {
	return fmt.Sprintf(restSource, modelID, key)
}

// TestAPI_REST sends the management API the raw JSON bodies of Clarifai's
// curl examples, with a personal key on /v2/users/me/apps/... paths and an
// app key on the paths without the users/apps prefix.
func TestAPI_REST(t *testing.T) {
	s := startStack(t, stackOptions{})
	pat := s.createKey(owner)
	appKey := createAppKey(t, s, owner, "rest-app")
	readOnly := s.createKey(owner, identity.ScopeCollectorsGet, identity.ScopeAppsGet)
	bobKey := s.createKey(bob)
	unknownKey := newUnknownKey(t)
	c := &restClient{addr: s.addrs.API, secrets: []string{pat, appKey, readOnly, bobKey, unknownKey}}

	c.run(t, restUserAndAppCases(pat, appKey, bobKey, unknownKey))
	c.run(t, restInputCases(t, pat, appKey, readOnly))
	c.run(t, restWorkflowCases(pat, appKey, readOnly))
	c.run(t, restCollectorCases(pat, appKey, readOnly, unknownKey))
	c.run(t, restWorkflowCleanupCases(pat, appKey))
	c.run(t, restUnservedCases(pat))
	c.run(t, restGatewayCases(pat))

	requireNoSecrets(t, []byte(s.logs.String()), c.secrets)
}

func restUserAndAppCases(pat, appKey, bobKey, unknownKey string) []restCase {
	return []restCase{
		{name: "GetUser/me", method: "GET", path: "/v2/users/me", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				if got := decodeJSON(t, body, &pb.SingleUserResponse{}).GetUser().GetId(); got != owner {
					t.Errorf("user.id = %q, want %q", got, owner)
				}
			}},
		{name: "GetUser/own id", method: "GET", path: "/v2/users/" + owner, key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "GetUser/no key", method: "GET", path: "/v2/users/me", wantHTTP: 401, wantCode: pb.StatusCode_CONN_KEY_INVALID},
		{name: "GetUser/unknown key", method: "GET", path: "/v2/users/me", key: unknownKey, wantHTTP: 401, wantCode: pb.StatusCode_CONN_KEY_NOT_FOUND,
			check: func(t *testing.T, body []byte) {
				if got := statusOf(t, body).GetDescription(); got != "API key not found" {
					t.Errorf("status.description = %q, want Clarifai's %q", got, "API key not found")
				}
			}},
		{name: "GetUser/another user", method: "GET", path: "/v2/users/bob", key: pat, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},

		{name: "PostApps/two", method: "POST", path: "/v2/users/me/apps", key: pat,
			body:     `{"apps": [{"id": "rest-app", "name": "REST app", "description": "Inputs from curl"}, {"id": "other-app"}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiAppResponse{})
				requireIDs(t, "apps", resp.GetApps(), "rest-app", "other-app")
				for _, app := range resp.GetApps() {
					if app.GetUserId() != owner {
						t.Errorf("app %s: user_id = %q, want %q", app.GetId(), app.GetUserId(), owner)
					}
					requireRecent(t, "created_at", app.GetCreatedAt().AsTime())
				}
			}},
		{name: "PostApps/bob", method: "POST", path: "/v2/users/me/apps", key: bobKey,
			body: `{"apps": [{"id": "bobs-app"}]}`, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "PostApps/duplicate id", method: "POST", path: "/v2/users/me/apps", key: pat,
			body: `{"apps": [{"id": "rest-app"}]}`, wantHTTP: 409, wantCode: pb.StatusCode_DATABASE_DUPLICATE_KEY},
		{name: "PostApps/app key", method: "POST", path: "/v2/users/me/apps", key: appKey,
			body: `{"apps": [{"id": "from-app-key"}]}`, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{name: "PostApps/invalid id", method: "POST", path: "/v2/users/me/apps", key: pat,
			body: `{"apps": [{"id": "no spaces"}]}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},

		{name: "GetApp/by path", method: "GET", path: "/v2/users/me/apps/rest-app", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				app := decodeJSON(t, body, &pb.SingleAppResponse{}).GetApp()
				if app.GetId() != "rest-app" || app.GetName() != "REST app" || app.GetDescription() != "Inputs from curl" {
					t.Errorf("app = %v, want rest-app as posted", app)
				}
			}},
		{name: "GetApp/app key", method: "GET", path: "/v2/app", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				if got := decodeJSON(t, body, &pb.SingleAppResponse{}).GetApp().GetId(); got != "rest-app" {
					t.Errorf("app.id = %q, want the key's app rest-app", got)
				}
			}},
		{name: "GetApp/personal key without app", method: "GET", path: "/v2/app", key: pat, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
		{name: "GetApp/unknown app", method: "GET", path: "/v2/users/me/apps/no-such-app", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_CONN_DOES_NOT_EXIST},
		{name: "GetApp/another user's app", method: "GET", path: "/v2/users/bob/apps/bobs-app", key: pat, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},

		{name: "ListApps/personal key", method: "GET", path: "/v2/users/me/apps?page=1&per_page=10", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				// Both apps share created_at, so the ID orders them.
				requireIDs(t, "apps", decodeJSON(t, body, &pb.MultiAppResponse{}).GetApps(), "other-app", "rest-app")
			}},
		{name: "ListApps/second page", method: "GET", path: "/v2/users/me/apps?page=2&per_page=1", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireIDs(t, "apps", decodeJSON(t, body, &pb.MultiAppResponse{}).GetApps(), "rest-app")
			}},
		{name: "ListApps/app key", method: "GET", path: "/v2/apps", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireIDs(t, "apps", decodeJSON(t, body, &pb.MultiAppResponse{}).GetApps(), "rest-app")
			}},
		{name: "ListApps/per_page above maximum", method: "GET", path: "/v2/users/me/apps?per_page=1001", key: pat, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
	}
}

func restInputCases(t *testing.T, pat, appKey, readOnly string) []restCase {
	png := goImage(t, "video-001.png")
	var wantMetadata map[string]any
	if err := json.Unmarshal([]byte(restMetadata), &wantMetadata); err != nil {
		t.Fatal(err)
	}
	const inputs = "/v2/users/me/apps/rest-app/inputs"

	return []restCase{
		{name: "PostInputs/image text url", method: "POST", path: inputs, key: pat,
			body: fmt.Sprintf(`{
				"inputs": [
					{"id": "in-1-png", "data": {"image": {"base64": %q}, "metadata": %s}},
					{"id": "in-2-text", "data": {"text": {"raw": "Is this a question?"}}},
					{"id": "in-3-url", "data": {"image": {"url": "https://images.example/metro-north.jpg", "allow_duplicate_url": true}, "concepts": [{"id": "train", "value": 1}, {"id": "bus", "value": 0}]}}
				]
			}`, base64.StdEncoding.EncodeToString(png), restMetadata),
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiInputResponse{})
				requireIDs(t, "inputs", resp.GetInputs(), "in-1-png", "in-2-text", "in-3-url")
				for _, in := range resp.GetInputs() {
					if got := in.GetStatus().GetCode(); got != pb.StatusCode_INPUT_SUCCESS {
						t.Errorf("input %s: status = %s, want INPUT_SUCCESS", in.GetId(), got)
					}
				}
			}},
		{name: "PostInputs/duplicate id", method: "POST", path: inputs, key: pat,
			body:     `{"inputs": [{"id": "in-1-png", "data": {"text": {"raw": "again"}}}, {"id": "in-4-text", "data": {"text": {"raw": "new"}}}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_MIXED_STATUS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiInputResponse{})
				requireIDs(t, "inputs", resp.GetInputs(), "in-1-png", "in-4-text")
				requireInputStatus(t, resp.GetInputs()[0], pb.StatusCode_INPUT_DUPLICATE, "Input has a duplicate ID.")
				requireInputStatus(t, resp.GetInputs()[1], pb.StatusCode_INPUT_SUCCESS, "")
			}},
		{name: "PostInputs/suffix by number", method: "POST", path: "/v2/inputs", key: appKey,
			body:     `{"input_id_conflict_resolution": 2, "inputs": [{"id": "in-1-png", "data": {"text": {"raw": "renamed"}}}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				got := decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs()[0].GetId()
				if !strings.HasPrefix(got, "in-1-png-") {
					t.Errorf("input id = %q, want in-1-png with a suffix", got)
				}
			}},
		{name: "PostInputs/skip by name", method: "POST", path: "/v2/inputs", key: appKey,
			body:     `{"input_id_conflict_resolution": "SKIP", "inputs": [{"id": "in-1-png", "data": {"text": {"raw": "skipped"}}}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_FAILURE,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiInputResponse{})
				requireInputStatus(t, resp.GetInputs()[0], pb.StatusCode_INPUT_DUPLICATE, "Input has a duplicate ID.")
			}},
		{name: "PostInputs/no data", method: "POST", path: "/v2/inputs", key: appKey,
			body: `{"inputs": [{"id": "empty", "data": {}}]}`, wantHTTP: 400, wantCode: pb.StatusCode_FAILURE,
			check: func(t *testing.T, body []byte) {
				in := decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs()[0]
				if got := in.GetStatus().GetCode(); got != pb.StatusCode_INPUT_INVALID_ARGUMENT {
					t.Errorf("input status = %s, want INPUT_INVALID_ARGUMENT", got)
				}
			}},
		{name: "PostInputs/personal key without app", method: "POST", path: "/v2/inputs", key: pat,
			body: `{"inputs": [{"data": {"text": {"raw": "where to?"}}}]}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
		{name: "PostInputs/app key on another app", method: "POST", path: "/v2/users/me/apps/other-app/inputs", key: appKey,
			body: `{"inputs": [{"data": {"text": {"raw": "elsewhere"}}}]}`, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{name: "PostInputs/missing scope", method: "POST", path: inputs, key: readOnly,
			body: `{"inputs": [{"data": {"text": {"raw": "read only"}}}]}`, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},

		{name: "GetInput/image", method: "GET", path: inputs + "/in-1-png", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				in := decodeJSON(t, body, &pb.SingleInputResponse{}).GetInput()
				if !bytes.Equal(in.GetData().GetImage().GetBase64(), png) {
					t.Errorf("image bytes differ from the posted PNG (%d vs %d bytes)", len(in.GetData().GetImage().GetBase64()), len(png))
				}
				if got := in.GetData().GetMetadata().AsMap(); !reflect.DeepEqual(got, wantMetadata) {
					t.Errorf("metadata = %v, want %v", got, wantMetadata)
				}
				requireInputStatus(t, in, pb.StatusCode_INPUT_SUCCESS, "")
				requireRecent(t, "created_at", in.GetCreatedAt().AsTime())
			}},
		{name: "GetInput/app key", method: "GET", path: "/v2/inputs/in-2-text", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				if got := decodeJSON(t, body, &pb.SingleInputResponse{}).GetInput().GetData().GetText().GetRaw(); got != "Is this a question?" {
					t.Errorf("text.raw = %q", got)
				}
			}},
		{name: "GetInput/url kept", method: "GET", path: inputs + "/in-3-url", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				data := decodeJSON(t, body, &pb.SingleInputResponse{}).GetInput().GetData()
				if got := data.GetImage().GetUrl(); got != "https://images.example/metro-north.jpg" {
					t.Errorf("image.url = %q", got)
				}
				concepts := data.GetConcepts()
				if len(concepts) != 2 || concepts[0].GetId() != "train" || concepts[0].GetValue() != 1 || concepts[1].GetValue() != 0 {
					t.Errorf("concepts = %v, want train=1 and bus=0", concepts)
				}
			}},
		{name: "GetInput/unknown input", method: "GET", path: inputs + "/no-such-input", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_INPUT_DOES_NOT_EXIST},

		{name: "ListInputs/second page", method: "GET", path: inputs + "?page=2&per_page=1", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireIDs(t, "inputs", decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs(), "in-2-text")
			}},
		{name: "ListInputs/app key", method: "GET", path: "/v2/inputs?per_page=1000", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				// Three from the first request, in-4-text and the suffixed copy.
				if got := decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs(); len(got) != 5 {
					t.Errorf("the app holds %d inputs %q, want 5", len(got), idsOf(got))
				}
			}},
		{name: "ListInputs/missing scope", method: "GET", path: inputs, key: readOnly, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "Inputs_Get", "ListInputs")
			}},
		{name: "ListInputs/by ids", method: "GET", path: inputs + "?ids=in-2-text&ids=no-such-input&ids=in-1-png", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireIDs(t, "inputs", decodeJSON(t, body, &pb.MultiInputResponse{}).GetInputs(), "in-2-text", "in-1-png")
			}},
		{name: "ListInputs/another user's app", method: "GET", path: "/v2/users/bob/apps/bobs-app/inputs", key: pat, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{name: "ListInputs/per_page above maximum", method: "GET", path: "/v2/inputs?page=1&per_page=1001", key: appKey, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},

		{name: "DeleteInputs/one missing", method: "DELETE", path: inputs, key: pat,
			body: `{"ids": ["in-3-url", "no-such-input"]}`, wantHTTP: 200, wantCode: pb.StatusCode_MIXED_STATUS,
			check: func(t *testing.T, body []byte) {
				st := statusOf(t, body)
				requireDetails(t, st, `"no-such-input"`)
				if strings.Contains(st.GetDetails(), "in-3-url") {
					t.Errorf("status.details = %q names the deleted input as missing", st.GetDetails())
				}
			}},
		{name: "DeleteInputs/deleted input is gone", method: "GET", path: inputs + "/in-3-url", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_INPUT_DOES_NOT_EXIST},
		{name: "DeleteInputs/all missing", method: "DELETE", path: "/v2/inputs", key: appKey,
			body: `{"ids": ["no-such-input"]}`, wantHTTP: 404, wantCode: pb.StatusCode_INPUT_DOES_NOT_EXIST},
		{name: "DeleteInputs/app key", method: "DELETE", path: "/v2/inputs", key: appKey,
			body: `{"ids": ["in-4-text"]}`, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "DeleteInputs/no ids", method: "DELETE", path: "/v2/inputs", key: appKey,
			body: `{"ids": []}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
	}
}

func requireInputStatus(t *testing.T, in *pb.Input, code pb.StatusCode, details string) {
	t.Helper()
	if got := in.GetStatus().GetCode(); got != code {
		t.Errorf("input %s: status.code = %s, want %s", in.GetId(), got, code)
	}
	if got := in.GetStatus().GetDetails(); got != details {
		t.Errorf("input %s: status.details = %q, want %q", in.GetId(), got, details)
	}
}

func restCollectorCases(pat, appKey, readOnly, unknownKey string) []restCase {
	const collectors = "/v2/users/me/apps/rest-app/collectors"

	cases := []restCase{
		{name: "PostCollectors/all fields", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [{
				"id": "col-1",
				"description": "Bob's general predicts",
				"pre_queue_workflow_id": "wf-pre",
				"post_queue_workflow_id": "wf-post",
				"pre_queue_random_sample": 0.5,
				"collect_outputs": true,
				` + restSourceJSON("general-image-recognition", pat) + `
			}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiCollectorResponse{})
				requireIDs(t, "collectors", resp.GetCollectors(), "col-1")
				requireCollector(t, resp.GetCollectors()[0], pb.StatusCode_COLLECTOR_ACTIVE, maskedKey(pat))
			}},
		{name: "PostCollectors/app key", method: "POST", path: "/v2/collectors", key: appKey,
			body: `{"collectors": [
				{"id": "col-2", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", appKey) + `},
				{"id": "col-3", "pre_queue_random_sample": 0.25, ` + restSourceJSON("text-stats", appKey) + `}
			]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiCollectorResponse{})
				requireIDs(t, "collectors", resp.GetCollectors(), "col-2", "col-3")
				for _, col := range resp.GetCollectors() {
					requireCollectorKey(t, col, maskedKey(appKey))
				}
			}},
		{name: "PostCollectors/invalid fields", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [
				{"id": "bad id!", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `},
				{"id": "no-model", "pre_queue_random_sample": 1, "collector_source": {"api_post_model_outputs_collector_source": {"model_user_id": "clarifai", "post_inputs_key_id": "` + pat + `"}}},
				{"id": "sample-high", "pre_queue_random_sample": 1.5, ` + restSourceJSON("colors", pat) + `},
				{"id": "no-key", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", "") + `},
				{"id": "no-filter", ` + restSourceJSON("colors", pat) + `},
				{"id": "valid", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}
			]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiCollectorResponse{})
				requireDetails(t, resp.GetStatus(),
					`collectors[0] (id "bad id!")`,
					`collectors[1] (id "no-model")`, "model_app_id is required",
					`collectors[2] (id "sample-high")`, "pre_queue_random_sample",
					`collectors[3] (id "no-key")`, "post_inputs_key_id is required",
					`collectors[4] (id "no-filter")`)
				if strings.Contains(resp.GetStatus().GetDetails(), "collectors[5]") {
					t.Errorf("status.details = %q names the valid collector", resp.GetStatus().GetDetails())
				}
				if len(resp.GetCollectors()) != 0 {
					t.Errorf("a rejected request returned collectors %q", idsOf(resp.GetCollectors()))
				}
			}},
		{name: "PostCollectors/duplicate id", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [
				{"id": "col-new", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `},
				{"id": "col-1", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}
			]}`,
			wantHTTP: 409, wantCode: pb.StatusCode_DATABASE_DUPLICATE_KEY,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetStatus(), `collectors[1] (id "col-1")`)
			}},
		{name: "PostCollectors/unknown workflow", method: "POST", path: collectors, key: pat,
			body:     `{"collectors": [{"id": "col-no-workflow", "pre_queue_workflow_id": "wf-missing", ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `collectors[0] (id "col-no-workflow")`, `pre_queue_workflow_id "wf-missing"`)
			}},
		{name: "DeleteWorkflows/in use", method: "DELETE", path: "/v2/users/me/apps/rest-app/workflows", key: pat,
			body: `{"ids": ["wf-pre"]}`, wantHTTP: 400, wantCode: pb.StatusCode_FAILURE,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `workflow "wf-pre"`, `collector "col-1"`, "pre_queue_workflow_id")
			}},
		{name: "PostCollectors/unknown post_inputs_key_id", method: "POST", path: collectors, key: pat,
			body:     `{"collectors": [{"id": "col-unknown-key", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", unknownKey) + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetStatus(), "post_inputs_key_id is not a known API key")
			}},
		{name: "PostCollectors/post_inputs_key_id of another app", method: "POST", path: "/v2/users/me/apps/other-app/collectors", key: pat,
			body:     `{"collectors": [{"id": "col-other", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", appKey) + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `is a key of app "rest-app"`)
			}},
		{name: "PostCollectors/missing scope", method: "POST", path: collectors, key: readOnly,
			body:     `{"collectors": [{"id": "col-read-only", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "Collectors_Add", "PostCollectors")
			}},
		{name: "PostCollectors/no key", method: "POST", path: collectors,
			body:     `{"collectors": [{"id": "col-no-key", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 401, wantCode: pb.StatusCode_CONN_KEY_INVALID},
		{name: "PostCollectors/another user's app", method: "POST", path: "/v2/users/bob/apps/bobs-app/collectors", key: pat,
			body:     `{"collectors": [{"id": "col-bob", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},

		{name: "GetCollector/by path", method: "GET", path: collectors + "/col-1", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireCollector(t, decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector(), pb.StatusCode_COLLECTOR_ACTIVE, maskedKey(pat))
			}},
		{name: "GetCollector/app key", method: "GET", path: "/v2/collectors/col-2", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				col := decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector()
				if got := col.GetCollectorSource().GetApiPostModelOutputsCollectorSource().GetModelId(); got != "colors" {
					t.Errorf("model_id = %q, want colors", got)
				}
			}},
		{name: "GetCollector/unknown collector", method: "GET", path: collectors + "/no-such-collector", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_COLLECTOR_MISSING},
		{name: "GetCollector/unknown app", method: "GET", path: "/v2/users/me/apps/no-such-app/collectors/col-1", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_CONN_DOES_NOT_EXIST},

		{name: "ListCollectors/first page", method: "GET", path: collectors + "?page=1&per_page=2", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireIDs(t, "collectors", decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors(), "col-1", "col-2")
			}},
		{name: "ListCollectors/second page", method: "GET", path: collectors + "?page=2&per_page=2", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				// The rejected batches above stored nothing.
				requireIDs(t, "collectors", decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors(), "col-3")
			}},
		{name: "ListCollectors/per_page above maximum", method: "GET", path: "/v2/collectors?per_page=1001", key: appKey, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
	}
	cases = append(cases, restPolicyCases(pat)...)
	return append(cases, []restCase{

		{name: "PatchCollectors/pause by name", method: "PATCH", path: collectors, key: pat,
			body: `{"action": "overwrite", "collectors": [{
				"id": "col-2", "description": "paused", "pre_queue_random_sample": 0.75,
				"status": {"code": "COLLECTOR_INACTIVE"},
				` + restSourceJSON("colors", maskedKey(appKey)) + `
			}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				col := decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors()[0]
				requireCollectorState(t, col, pb.StatusCode_COLLECTOR_INACTIVE)
				// The masked key in the request keeps the stored key.
				requireCollectorKey(t, col, maskedKey(appKey))
				if col.GetDescription() != "paused" || col.GetPreQueueRandomSample() != 0.75 {
					t.Errorf("description, sample = %q, %v; want paused, 0.75", col.GetDescription(), col.GetPreQueueRandomSample())
				}
			}},
		{name: "PatchCollectors/stored paused", method: "GET", path: collectors + "/col-2", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireCollectorState(t, decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector(), pb.StatusCode_COLLECTOR_INACTIVE)
			}},
		{name: "PatchCollectors/resume by number", method: "PATCH", path: "/v2/collectors", key: appKey,
			body: `{"action": "overwrite", "collectors": [{
				"id": "col-2", "description": "resumed", "pre_queue_random_sample": 1,
				"status": {"code": 52001},
				"collector_source": {"api_post_model_outputs_collector_source": {"model_user_id": "clarifai", "model_app_id": "main", "model_id": "colors"}}
			}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				col := decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors()[0]
				requireCollectorState(t, col, pb.StatusCode_COLLECTOR_ACTIVE)
				// An empty post_inputs_key_id keeps the stored key.
				requireCollectorKey(t, col, maskedKey(appKey))
			}},
		{name: "PatchCollectors/unsupported action", method: "PATCH", path: collectors, key: pat,
			body:     `{"action": "merge", "collectors": [{"id": "col-2", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", "") + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
		{name: "PatchCollectors/unknown collector", method: "PATCH", path: collectors, key: pat,
			body:     `{"action": "overwrite", "collectors": [{"id": "no-such-collector", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 404, wantCode: pb.StatusCode_COLLECTOR_MISSING},
		{name: "PatchCollectors/status not a collector state", method: "PATCH", path: collectors, key: pat,
			body:     `{"action": "overwrite", "collectors": [{"id": "col-2", "pre_queue_random_sample": 1, "status": {"code": "SUCCESS"}, ` + restSourceJSON("colors", "") + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},

		{name: "DeleteCollectors/one missing", method: "DELETE", path: collectors, key: pat,
			body: `{"ids": ["col-1", "no-such-collector"]}`, wantHTTP: 200, wantCode: pb.StatusCode_MIXED_STATUS,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `"no-such-collector"`)
			}},
		{name: "DeleteCollectors/deleted collector is gone", method: "GET", path: collectors + "/col-1", key: pat, wantHTTP: 404, wantCode: pb.StatusCode_COLLECTOR_MISSING},
		{name: "DeleteCollectors/ids and delete_all", method: "DELETE", path: collectors, key: pat,
			body: `{"ids": ["col-2"], "delete_all": true}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST},
		{name: "DeleteCollectors/missing scope", method: "DELETE", path: collectors, key: readOnly,
			body: `{"delete_all": true}`, wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{name: "DeleteCollectors/delete_all", method: "DELETE", path: "/v2/collectors", key: appKey,
			body: `{"delete_all": true}`, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "DeleteCollectors/none left", method: "GET", path: "/v2/collectors", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				if !bytes.Contains(body, []byte(`"collectors":[]`)) {
					t.Errorf("body = %s, want an empty collectors list", body)
				}
			}},
	}...)
}

func requireCollectorKey(t *testing.T, col *pb.Collector, want string) {
	t.Helper()
	if got := col.GetCollectorSource().GetApiPostModelOutputsCollectorSource().GetPostInputsKeyId(); got != want {
		t.Errorf("collector %s: post_inputs_key_id = %q, want %q", col.GetId(), got, want)
	}
}

func requireCollectorState(t *testing.T, col *pb.Collector, want pb.StatusCode) {
	t.Helper()
	if got := col.GetStatus().GetCode(); got != want {
		t.Errorf("collector %s: status.code = %s, want %s", col.GetId(), got, want)
	}
}

// requireCollector checks col-1 as posted with every field.
func requireCollector(t *testing.T, col *pb.Collector, state pb.StatusCode, key string) {
	t.Helper()
	requireCollectorState(t, col, state)
	requireCollectorKey(t, col, key)
	requireRecent(t, "created_at", col.GetCreatedAt().AsTime())

	want := &pb.Collector{
		Id:                   "col-1",
		Description:          "Bob's general predicts",
		PreQueueWorkflowId:   "wf-pre",
		PostQueueWorkflowId:  "wf-post",
		PreQueueRandomSample: 0.5,
		CollectOutputs:       true,
		CollectorSource: &pb.CollectorSource{ApiPostModelOutputsCollectorSource: &pb.APIPostModelOutputsCollectorSource{
			ModelUserId:     "clarifai",
			ModelAppId:      "main",
			ModelId:         "general-image-recognition",
			ModelVersionId:  "aa7f35c01e0642fda5cf400f543e7c40",
			PostInputsKeyId: key,
			CallerUserId:    bob,
		}},
	}
	got := proto.CloneOf(col)
	got.CreatedAt, got.Status = nil, nil
	if !proto.Equal(got, want) {
		t.Errorf("collector = %v\nwant %v", got, want)
	}
}

func restUnservedCases(pat string) []restCase {
	return []restCase{
		// The management API has no REST route for predicts, so a predict
		// sent to it meets an unknown path.
		{name: "PostModelOutputs/no REST route", method: "POST", path: "/v2/users/clarifai/apps/main/models/general-image-recognition/outputs", key: pat,
			body: `{"inputs": [{"data": {"text": {"raw": "hello"}}}]}`, wantHTTP: 404, wantCode: pb.StatusCode_CONN_DOES_NOT_EXIST},
	}
}

func restGatewayCases(pat string) []restCase {
	const collectors = "/v2/users/me/apps/rest-app/collectors"
	return []restCase{
		{name: "Gateway/malformed JSON", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT},
		{name: "Gateway/unknown field", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [{"id": "col-x", "unknown_field": 1}]}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "unknown_field")
			}},
		// data.geo is a Clarifai field that collectord's subset of the
		// protos leaves out, so a REST body that sets it is rejected.
		{name: "Gateway/Clarifai field outside the subset", method: "POST", path: "/v2/users/me/apps/rest-app/inputs", key: pat,
			body: `{"inputs": [{"data": {"text": {"raw": "here"}, "geo": {"geo_point": {"longitude": -30, "latitude": 40}}}}]}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `unknown field "geo"`)
			}},
		// A key pasted without quotes is a syntax error whose message would
		// quote the key, and the response checks reject any secret in the body.
		{name: "Gateway/unquoted key", method: "POST", path: collectors, key: pat,
			body:     `{"collectors": [{"id": "col-x", "collector_source": {"api_post_model_outputs_collector_source": {"post_inputs_key_id": ` + pat + `}}}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT},
		{name: "Gateway/unknown enum name", method: "PATCH", path: collectors, key: pat,
			body: `{"action": "overwrite", "collectors": [{"id": "col-2", "status": {"code": "COLLECTOR_SLEEPING"}}]}`, wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT},
		{name: "Gateway/string for a number", method: "GET", path: collectors + "?per_page=ten", key: pat,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_BAD_REQUEST_FORMAT},
		{name: "Gateway/unknown path", method: "GET", path: "/v2/users/me/apps/rest-app/collector", key: pat,
			wantHTTP: 404, wantCode: pb.StatusCode_CONN_DOES_NOT_EXIST},
		{name: "Gateway/wrong method", method: "PUT", path: collectors, key: pat,
			body: `{"collectors": []}`, wantHTTP: 405, wantCode: pb.StatusCode_CONN_METHOD_NOT_ALLOWED},
		{name: "Gateway/wrong method on user", method: "DELETE", path: "/v2/users/me", key: pat,
			wantHTTP: 405, wantCode: pb.StatusCode_CONN_METHOD_NOT_ALLOWED},
	}
}

// Workflow nodes as a curl user writes them: a random sample, a concept
// thresholder that reads it, and a probability floor.
const (
	restSampleNode = `{"id": "sample", "model": {"id": "sample", "model_type_id": "random-sample",
		"output_info": {"params": {"keep_fraction": 0.5}}}}`
	restThresholdNode = `{"id": "cats", "model": {"id": "cats", "model_type_id": "concept-thresholder",
		"output_info": {"params": {"concept_threshold_type": "GREATER_THAN"}, "data": {"concepts": [{"id": "cat", "value": 0.8}]}}},
		"node_inputs": [{"node_id": "sample"}]}`
	restFloorNode = `{"id": "floor", "model": {"id": "floor", "model_type_id": "min-probability-above",
		"output_info": {"params": {"threshold": 0.2}}}}`
)

// nodeIDsOf returns the node IDs of a workflow, in order.
func nodeIDsOf(wf *pb.Workflow) []string {
	return idsOf(wf.GetNodes())
}

func requireNodes(t *testing.T, wf *pb.Workflow, want ...string) {
	t.Helper()
	if got := nodeIDsOf(wf); !slices.Equal(got, want) {
		t.Errorf("workflow %s: nodes = %q, want %q", wf.GetId(), got, want)
	}
}

func restWorkflowCases(pat, appKey, readOnly string) []restCase {
	const workflows = "/v2/users/me/apps/rest-app/workflows"

	return []restCase{
		{name: "PostWorkflows/two", method: "POST", path: workflows, key: pat,
			body: `{"workflows": [
				{"id": "wf-pre", "description": "half of the cats", "nodes": [` + restSampleNode + `, ` + restThresholdNode + `]},
				{"id": "wf-post", "metadata": {"owner": "vision-team"}, "nodes": [` + restFloorNode + `]}
			]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiWorkflowResponse{})
				requireIDs(t, "workflows", resp.GetWorkflows(), "wf-pre", "wf-post")
				if len(resp.GetWorkflows()) != 2 {
					return
				}
				pre := resp.GetWorkflows()[0]
				requireNodes(t, pre, "sample", "cats")
				if pre.GetAppId() != "rest-app" || pre.GetUserId() != owner || pre.GetDescription() != "half of the cats" {
					t.Errorf("wf-pre = app %q, user %q, description %q", pre.GetAppId(), pre.GetUserId(), pre.GetDescription())
				}
				requireRecent(t, "created_at", pre.GetCreatedAt().AsTime())
				if got := resp.GetWorkflows()[1].GetMetadata().AsMap()["owner"]; got != "vision-team" {
					t.Errorf("wf-post metadata.owner = %v, want vision-team", got)
				}
			}},
		{name: "PostWorkflows/app key", method: "POST", path: "/v2/workflows", key: appKey,
			body:     `{"workflows": [{"id": "wf-extra", "nodes": [` + restFloorNode + `]}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "PostWorkflows/invalid nodes", method: "POST", path: workflows, key: pat,
			body: `{"workflows": [
				{"id": "unknown-op", "nodes": [{"id": "blur", "model": {"model_type_id": "blur-detector"}}]},
				{"id": "no-param", "nodes": [{"id": "sample", "model": {"model_type_id": "random-sample"}}]},
				{"id": "bad-comparator", "nodes": [{"id": "thr", "model": {"model_type_id": "concept-thresholder",
					"output_info": {"params": {"concept_threshold_type": "ROUGHLY"}, "data": {"concepts": [{"id": "cat", "value": 0.5}]}}}}]},
				{"id": "valid", "nodes": [` + restFloorNode + `]}
			]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			check: func(t *testing.T, body []byte) {
				resp := decodeJSON(t, body, &pb.MultiWorkflowResponse{})
				requireDetails(t, resp.GetStatus(),
					`workflows[0] (id "unknown-op")`, `workflow node "blur"`, "model.model_type_id", `"blur-detector"`,
					`workflows[1] (id "no-param")`, `workflow node "sample"`, "output_info.params.keep_fraction",
					`workflows[2] (id "bad-comparator")`, `workflow node "thr"`, "output_info.params.concept_threshold_type")
				if strings.Contains(resp.GetStatus().GetDetails(), "workflows[3]") {
					t.Errorf("status.details = %q names the valid workflow", resp.GetStatus().GetDetails())
				}
				if len(resp.GetWorkflows()) != 0 {
					t.Errorf("a rejected request returned workflows %q", idsOf(resp.GetWorkflows()))
				}
			}},
		// This node runs without remote model endpoints, so a remote-model
		// node names an endpoint that does not exist.
		{name: "PostWorkflows/remote model without endpoint", method: "POST", path: workflows, key: pat,
			body: `{"workflows": [{"id": "wf-remote", "nodes": [{"id": "labeler", "model": {"model_type_id": "remote-model",
				"output_info": {"params": {"endpoint": "labeler", "model_id": "general"}}}}]}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `workflow node "labeler"`, "output_info.params.endpoint", `"labeler"`)
			}},
		{name: "PostWorkflows/duplicate id", method: "POST", path: workflows, key: pat,
			body:     `{"workflows": [{"id": "wf-pre", "nodes": [` + restFloorNode + `]}]}`,
			wantHTTP: 409, wantCode: pb.StatusCode_DATABASE_DUPLICATE_KEY},
		{name: "PostWorkflows/missing scope", method: "POST", path: workflows, key: readOnly,
			body:     `{"workflows": [{"id": "wf-read-only", "nodes": [` + restFloorNode + `]}]}`,
			wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "Workflows_Add", "PostWorkflows")
			}},

		{name: "GetWorkflow/by path", method: "GET", path: workflows + "/wf-pre", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				wf := decodeJSON(t, body, &pb.SingleWorkflowResponse{}).GetWorkflow()
				requireNodes(t, wf, "sample", "cats")
				if got := wf.GetNodes()[1].GetNodeInputs(); len(got) != 1 || got[0].GetNodeId() != "sample" {
					t.Errorf("node cats reads %v, want sample", got)
				}
			}},
		{name: "GetWorkflow/app key", method: "GET", path: "/v2/workflows/wf-post", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requireNodes(t, decodeJSON(t, body, &pb.SingleWorkflowResponse{}).GetWorkflow(), "floor")
			}},
		{name: "GetWorkflow/unknown workflow", method: "GET", path: workflows + "/no-such-workflow", key: pat,
			wantHTTP: 404, wantCode: pb.StatusCode_WORKFLOW_DOES_NOT_EXIST},
		{name: "GetWorkflow/missing scope", method: "GET", path: workflows + "/wf-pre", key: readOnly,
			wantHTTP: 403, wantCode: pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "Workflows_Get")
			}},

		{name: "ListWorkflows/first page", method: "GET", path: workflows + "?page=1&per_page=2", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				// Both workflows share created_at, so the ID orders them.
				requireIDs(t, "workflows", decodeJSON(t, body, &pb.MultiWorkflowResponse{}).GetWorkflows(), "wf-post", "wf-pre")
			}},
		{name: "ListWorkflows/second page", method: "GET", path: workflows + "?page=2&per_page=2", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				// The rejected batches above stored nothing.
				requireIDs(t, "workflows", decodeJSON(t, body, &pb.MultiWorkflowResponse{}).GetWorkflows(), "wf-extra")
			}},

		{name: "PatchWorkflows/merge", method: "PATCH", path: workflows, key: pat,
			body: `{"action": "merge", "workflows": [{"id": "wf-pre", "nodes": [
				{"id": "sample", "model": {"model_type_id": "random-sample", "output_info": {"params": {"keep_fraction": 0.25}}}},
				{"id": "floor", "model": {"model_type_id": "min-probability-above", "output_info": {"params": {"threshold": 0.1}}},
				 "node_inputs": [{"node_id": "cats"}]}
			]}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				wf := decodeJSON(t, body, &pb.MultiWorkflowResponse{}).GetWorkflows()[0]
				requireNodes(t, wf, "sample", "cats", "floor")
				if got := wf.GetNodes()[0].GetModel().GetOutputInfo().GetParams().AsMap()["keep_fraction"]; got != 0.25 {
					t.Errorf("merged sample keep_fraction = %v, want 0.25", got)
				}
				if wf.GetDescription() != "half of the cats" {
					t.Errorf("merge without description changed it to %q", wf.GetDescription())
				}
			}},
		{name: "PatchWorkflows/overwrite", method: "PATCH", path: "/v2/workflows", key: appKey,
			body:     `{"action": "overwrite", "workflows": [{"id": "wf-extra", "description": "sample only", "nodes": [` + restSampleNode + `]}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				wf := decodeJSON(t, body, &pb.MultiWorkflowResponse{}).GetWorkflows()[0]
				requireNodes(t, wf, "sample")
				if wf.GetDescription() != "sample only" {
					t.Errorf("description = %q, want sample only", wf.GetDescription())
				}
			}},
		{name: "PatchWorkflows/unsupported action", method: "PATCH", path: workflows, key: pat,
			body:     `{"action": "remove", "workflows": [{"id": "wf-pre"}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `"remove"`, `"overwrite"`, `"merge"`)
			}},
		{name: "PatchWorkflows/invalid node", method: "PATCH", path: workflows, key: pat,
			body: `{"action": "merge", "workflows": [{"id": "wf-post", "nodes": [
				{"id": "floor", "model": {"model_type_id": "min-probability-above", "output_info": {"params": {"threshold": 7}}}}
			]}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_WORKFLOW_INVALID_ARGUMENT,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `workflows[0] (id "wf-post")`, `workflow node "floor"`, "output_info.params.threshold")
			}},
		{name: "PatchWorkflows/unknown workflow", method: "PATCH", path: workflows, key: pat,
			body:     `{"action": "overwrite", "workflows": [{"id": "no-such-workflow", "nodes": [` + restFloorNode + `]}]}`,
			wantHTTP: 404, wantCode: pb.StatusCode_WORKFLOW_DOES_NOT_EXIST},
		{name: "PatchWorkflows/rejected patch changed nothing", method: "GET", path: workflows + "/wf-post", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				wf := decodeJSON(t, body, &pb.SingleWorkflowResponse{}).GetWorkflow()
				if got := wf.GetNodes()[0].GetModel().GetOutputInfo().GetParams().AsMap()["threshold"]; got != 0.2 {
					t.Errorf("wf-post threshold = %v, want the stored 0.2", got)
				}
			}},
	}
}

// restWorkflowCleanupCases run after every collector is deleted, so no
// workflow is in use any more.
func restWorkflowCleanupCases(pat, appKey string) []restCase {
	const workflows = "/v2/users/me/apps/rest-app/workflows"
	return []restCase{
		{name: "DeleteWorkflows/one missing", method: "DELETE", path: workflows, key: pat,
			body: `{"ids": ["wf-extra", "no-such-workflow"]}`, wantHTTP: 200, wantCode: pb.StatusCode_MIXED_STATUS,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), "deleted 1 of 2 workflows", `"no-such-workflow"`)
			}},
		{name: "DeleteWorkflows/unknown key", method: "DELETE", path: workflows, key: "not-a-key-of-this-server",
			body: `{"ids": ["wf-pre"]}`, wantHTTP: 401, wantCode: pb.StatusCode_CONN_KEY_NOT_FOUND},
		{name: "DeleteWorkflows/delete_all", method: "DELETE", path: "/v2/workflows", key: appKey,
			body: `{"delete_all": true}`, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS},
		{name: "DeleteWorkflows/none left", method: "GET", path: "/v2/workflows", key: appKey, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				if !bytes.Contains(body, []byte(`"workflows":[]`)) {
					t.Errorf("body = %s, want an empty workflows list", body)
				}
			}},
	}
}

// restPolicy is a collector policy with every field set.
const restPolicy = `"policy": {"max_inputs_per_hour": 100, "max_inputs_per_day": 1000, "dedup_window_seconds": 600,
	"max_inputs_per_concept": 5, "balance_window_seconds": 86400, "preview": true}`

var wantRESTPolicy = &pb.CollectorPolicy{
	MaxInputsPerHour: 100, MaxInputsPerDay: 1000, DedupWindowSeconds: 600,
	MaxInputsPerConcept: 5, BalanceWindowSeconds: 86400, Preview: true,
}

func requirePolicy(t *testing.T, col *pb.Collector, want *pb.CollectorPolicy) {
	t.Helper()
	if got := col.GetPolicy(); !proto.Equal(got, want) {
		t.Errorf("collector %s: policy = %v, want %v", col.GetId(), got, want)
	}
}

// restPolicyCases create a preview collector with a policy, read it back,
// overwrite it without a policy as Clarifai's clients do, and read its
// empty preview.
func restPolicyCases(pat string) []restCase {
	const collectors = "/v2/users/me/apps/rest-app/collectors"
	return []restCase{
		{name: "PostCollectors/policy", method: "POST", path: collectors, key: pat,
			body:     `{"collectors": [{"id": "col-policy", "pre_queue_random_sample": 1, ` + restPolicy + `, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requirePolicy(t, decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors()[0], wantRESTPolicy)
			}},
		{name: "GetCollector/policy stored", method: "GET", path: collectors + "/col-policy", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				requirePolicy(t, decodeJSON(t, body, &pb.SingleCollectorResponse{}).GetCollector(), wantRESTPolicy)
			}},
		{name: "PatchCollectors/without policy keeps it", method: "PATCH", path: collectors, key: pat,
			body:     `{"action": "overwrite", "collectors": [{"id": "col-policy", "description": "no policy sent", "pre_queue_random_sample": 1, ` + restSourceJSON("colors", "") + `}]}`,
			wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				col := decodeJSON(t, body, &pb.MultiCollectorResponse{}).GetCollectors()[0]
				requirePolicy(t, col, wantRESTPolicy)
				if col.GetDescription() != "no policy sent" {
					t.Errorf("description = %q, want the overwrite applied", col.GetDescription())
				}
			}},
		{name: "PostCollectors/invalid policy", method: "POST", path: collectors, key: pat,
			body: `{"collectors": [{"id": "col-bad-policy", "pre_queue_random_sample": 1,
				"policy": {"max_inputs_per_concept": 3}, ` + restSourceJSON("colors", pat) + `}]}`,
			wantHTTP: 400, wantCode: pb.StatusCode_CONN_INVALID_REQUEST,
			check: func(t *testing.T, body []byte) {
				requireDetails(t, statusOf(t, body), `collectors[0] (id "col-bad-policy")`, "policy.max_inputs_per_concept", "balance_window_seconds")
			}},
		{name: "GetCollectorPreview/no data", method: "GET", path: collectors + "/col-policy/preview", key: pat, wantHTTP: 200, wantCode: pb.StatusCode_SUCCESS,
			check: func(t *testing.T, body []byte) {
				p := decodeJSON(t, body, &pb.SingleCollectorPreviewResponse{}).GetPreview()
				if p.GetCollectorId() != "col-policy" || len(p.GetCounts()) != 0 || len(p.GetRecords()) != 0 {
					t.Errorf("preview = %v, want an empty preview of col-policy", p)
				}
			}},
		{name: "GetCollectorPreview/unknown collector", method: "GET", path: collectors + "/no-such-collector/preview", key: pat,
			wantHTTP: 404, wantCode: pb.StatusCode_COLLECTOR_MISSING},
	}
}
