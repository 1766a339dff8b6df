package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestREST_CollectorLifecycle(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()

	// Create, as in Clarifai's curl example.
	post := env.postCollectors(collectorJSON("general-sample", alicePostKey))
	post.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	created := post.list(t, "collectors")
	if len(created) != 1 {
		t.Fatalf("PostCollectors returned %d collectors, want 1", len(created))
	}
	if got := field(created[0], "status", "code"); got != "COLLECTOR_ACTIVE" {
		t.Errorf("status.code = %v, want COLLECTOR_ACTIVE", got)
	}
	src := field(created[0], "collector_source", "api_post_model_outputs_collector_source")
	wantMask := "****" + alicePostKey[len(alicePostKey)-4:]
	if got := field(src, "post_inputs_key_id"); got != wantMask {
		t.Errorf("post_inputs_key_id = %v, want %q", got, wantMask)
	}
	if got := field(src, "model_id"); got != "general-image-recognition" {
		t.Errorf("model_id = %v", got)
	}
	if field(created[0], "created_at") == nil {
		t.Error("created_at is missing")
	}

	stored, err := env.store.GetCollector(ctx, "alice", "dest", "general-sample")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if stored.PostInputsKey != alicePostKey {
		t.Error("the store does not hold the post inputs key that was posted")
	}
	if stored.RandomSample != float32(0.1) {
		t.Errorf("stored RandomSample = %v, want 0.1", stored.RandomSample)
	}

	// Read back one and the list.
	get := env.do(http.MethodGet, collectorsPath+"/general-sample", keyHeader(alicePAT), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(get.json, "collector", "description"); got != "collect from general" {
		t.Errorf("GetCollector description = %v", got)
	}
	list := env.do(http.MethodGet, collectorsPath, keyHeader(aliceReadOnly), "")
	list.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if n := len(list.list(t, "collectors")); n != 1 {
		t.Errorf("ListCollectors returned %d, want 1", n)
	}

	// Pause with overwrite, sending back the masked key as a GET showed it.
	patchBody := `{"action":"overwrite","collectors":[{"id":"general-sample","description":"paused",` +
		`"pre_queue_random_sample":0.2,"status":{"code":"COLLECTOR_INACTIVE"},` +
		`"collector_source":{"api_post_model_outputs_collector_source":{"model_user_id":"clarifai",` +
		`"model_app_id":"main","model_id":"general-image-recognition","post_inputs_key_id":"` + wantMask + `"}}}]}`
	patch := env.do(http.MethodPatch, collectorsPath, keyHeader(alicePAT), patchBody)
	patch.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(patch.list(t, "collectors")[0], "status", "code"); got != "COLLECTOR_INACTIVE" {
		t.Errorf("patched status = %v, want COLLECTOR_INACTIVE", got)
	}

	patched, err := env.store.GetCollector(ctx, "alice", "dest", "general-sample")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if !patched.Paused || patched.Description != "paused" || patched.RandomSample != float32(0.2) {
		t.Errorf("patched collector = paused %v, description %q, sample %v", patched.Paused, patched.Description, patched.RandomSample)
	}
	if patched.PostInputsKey != alicePostKey {
		t.Error("overwrite with the masked key changed the stored key")
	}
	if !patched.CreatedAt.Equal(stored.CreatedAt) {
		t.Errorf("created_at changed from %v to %v", stored.CreatedAt, patched.CreatedAt)
	}

	// Delete by id.
	del := env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"ids":["general-sample"]}`)
	del.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	deleted := env.do(http.MethodGet, collectorsPath+"/general-sample", keyHeader(alicePAT), "")
	deleted.requireStatus(t, http.StatusNotFound, pb.StatusCode_COLLECTOR_MISSING)

	if n := env.counterValue("PostCollectors", "SUCCESS"); n != 1 {
		t.Errorf("collectord_api_requests_total{rpc=PostCollectors,code=SUCCESS} = %d, want 1", n)
	}
	if n := env.counterValue("GetCollector", "COLLECTOR_MISSING"); n != 1 {
		t.Errorf("collectord_api_requests_total{rpc=GetCollector,code=COLLECTOR_MISSING} = %d, want 1", n)
	}
}

func TestREST_Auth(t *testing.T) {
	env := newTestEnv(t)
	cases := []struct {
		name     string
		method   string
		path     string
		auth     string
		body     string
		httpCode int
		code     pb.StatusCode
	}{
		{"no key", http.MethodGet, collectorsPath, "", "", 401, pb.StatusCode_CONN_KEY_INVALID},
		{"malformed key", http.MethodGet, collectorsPath, "Bearer", "", 401, pb.StatusCode_CONN_KEY_INVALID},
		{"unknown key", http.MethodGet, collectorsPath, "Key not-a-real-key", "", 401, pb.StatusCode_CONN_KEY_NOT_FOUND},
		{"missing scope", http.MethodPost, collectorsPath, keyHeader(aliceReadOnly),
			`{"collectors":[` + collectorJSON("c1", alicePostKey) + `]}`, 403, pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{"delete needs Collectors_Delete", http.MethodDelete, collectorsPath, keyHeader(alicePostKey),
			`{"delete_all":true}`, 403, pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{"other user's app", http.MethodGet, "/v2/users/bob/apps/bobapp/collectors", keyHeader(alicePAT), "",
			403, pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{"app key on another app", http.MethodGet, "/v2/users/me/apps/other/collectors", keyHeader(aliceAppKey), "",
			403, pb.StatusCode_CONN_INSUFFICIENT_SCOPES},
		{"unknown app", http.MethodGet, "/v2/users/me/apps/nope/collectors", keyHeader(alicePAT), "",
			404, pb.StatusCode_CONN_DOES_NOT_EXIST},
		{"no app with a personal key", http.MethodGet, "/v2/collectors", keyHeader(alicePAT), "",
			400, pb.StatusCode_CONN_INVALID_REQUEST},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := env.do(tc.method, tc.path, tc.auth, tc.body)
			resp.requireStatus(t, tc.httpCode, tc.code)
			if resp.details() == "" {
				t.Error("status.details is empty")
			}
		})
	}
}

func TestREST_AppKeyWithoutPrefix(t *testing.T) {
	env := newTestEnv(t)

	post := env.do(http.MethodPost, "/v2/collectors", keyHeader(aliceAppKey),
		`{"collectors":[`+collectorJSON("via-app-key", alicePostKey)+`]}`)
	post.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	if _, err := env.store.GetCollector(context.Background(), "alice", "dest", "via-app-key"); err != nil {
		t.Errorf("collector posted with an app key is not in the key's app: %v", err)
	}
	get := env.do(http.MethodGet, "/v2/collectors/via-app-key", keyHeader(aliceAppKey), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
}

func TestREST_GatewayErrors(t *testing.T) {
	env := newTestEnv(t)
	cases := []struct {
		name     string
		method   string
		path     string
		body     string
		httpCode int
		code     pb.StatusCode
		details  string
	}{
		{"malformed JSON", http.MethodPost, collectorsPath, `{"collectors":[{"id":`, 400,
			pb.StatusCode_CONN_BAD_REQUEST_FORMAT, ""},
		{"unknown field", http.MethodPost, collectorsPath, `{"collectors":[],"colectors":[]}`, 400,
			pb.StatusCode_CONN_BAD_REQUEST_FORMAT, "colectors"},
		{"unquoted secret", http.MethodPost, collectorsPath,
			`{"collectors":[{"collector_source":{"api_post_model_outputs_collector_source":{"post_inputs_key_id":` + alicePostKey + `}}}]}`,
			400, pb.StatusCode_CONN_BAD_REQUEST_FORMAT, "invalid character"},
		{"secret of the wrong type", http.MethodPost, collectorsPath,
			`{"collectors":[{"pre_queue_random_sample":"` + alicePostKey + `"}]}`,
			400, pb.StatusCode_CONN_BAD_REQUEST_FORMAT, "preQueueRandomSample"},
		{"trailing data", http.MethodDelete, collectorsPath, `{"ids":["a"]} {}`, 400,
			pb.StatusCode_CONN_BAD_REQUEST_FORMAT, ""},
		{"bad query value", http.MethodGet, collectorsPath + "?page=first", "", 400,
			pb.StatusCode_CONN_BAD_REQUEST_FORMAT, "page"},
		{"unknown path", http.MethodGet, "/v2/nothing/here", "", 404,
			pb.StatusCode_CONN_DOES_NOT_EXIST, "/v2/nothing/here"},
		{"wrong method", http.MethodPut, collectorsPath, `{}`, 405,
			pb.StatusCode_CONN_METHOD_NOT_ALLOWED, "PUT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := env.do(tc.method, tc.path, keyHeader(alicePAT), tc.body)
			resp.requireStatus(t, tc.httpCode, tc.code)
			if !strings.Contains(resp.details(), tc.details) {
				t.Errorf("details %q do not mention %q", resp.details(), tc.details)
			}
		})
	}
	if n := env.counterValue("gateway", "CONN_BAD_REQUEST_FORMAT"); n != 6 {
		t.Errorf("collectord_api_requests_total{rpc=gateway,code=CONN_BAD_REQUEST_FORMAT} = %d, want 6", n)
	}
}

func TestREST_BodyTooLarge(t *testing.T) {
	env := newTestEnvConfig(t, apiConfigMaxBytes(512))
	body := `{"collectors":[` + collectorJSON(strings.Repeat("x", 40), alicePostKey) + `],"pad":"` +
		strings.Repeat("p", 1024) + `"}`
	resp := env.do(http.MethodPost, collectorsPath, keyHeader(alicePAT), body)
	resp.requireStatus(t, http.StatusRequestEntityTooLarge, pb.StatusCode_CONN_BAD_REQUEST_FORMAT)
	if !strings.Contains(resp.details(), "512") {
		t.Errorf("details %q do not state the limit", resp.details())
	}
}

func TestREST_EnumsAndNames(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		item   string
		paused bool
	}{
		{"status by name", `{"id":"by-name","status":{"code":"COLLECTOR_INACTIVE"},` + sourceAndSample + `}`, true},
		{"status by number", `{"id":"by-number","status":{"code":52002},` + sourceAndSample + `}`, true},
		{"active by number", `{"id":"active-number","status":{"code":52001},` + sourceAndSample + `}`, false},
		{"camelCase names", `{"id":"camel","preQueueRandomSample":0.5,"collectorSource":{"apiPostModelOutputsCollectorSource":` +
			`{"modelUserId":"clarifai","modelAppId":"main","modelId":"m","postInputsKeyId":"` + alicePostKey + `"}}}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := env.postCollectors(tc.item)
			resp.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
			id := field(resp.list(t, "collectors")[0], "id").(string)
			c, err := env.store.GetCollector(ctx, "alice", "dest", id)
			if err != nil {
				t.Fatalf("store: %v", err)
			}
			if c.Paused != tc.paused {
				t.Errorf("Paused = %v, want %v", c.Paused, tc.paused)
			}
		})
	}

	bad := env.postCollectors(`{"id":"bad-state","status":{"code":"SUCCESS"},` + sourceAndSample + `}`)
	bad.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	if !strings.Contains(bad.details(), "status.code") {
		t.Errorf("details %q do not name status.code", bad.details())
	}
}

// sourceAndSample completes a collector item with a valid source and sample.
const sourceAndSample = `"pre_queue_random_sample":1,"collector_source":{"api_post_model_outputs_collector_source":` +
	`{"model_user_id":"clarifai","model_app_id":"main","model_id":"m","post_inputs_key_id":"` + alicePostKey + `"}}`

func TestREST_PostCollectorsValidation(t *testing.T) {
	env := newTestEnv(t)
	if resp := env.postCollectors(collectorJSON("existing", alicePostKey)); resp.code != http.StatusOK {
		t.Fatalf("seed collector: %s", resp.raw)
	}

	source := func(userID, appID, modelID, key string) string {
		return `"collector_source":{"api_post_model_outputs_collector_source":{"model_user_id":"` + userID +
			`","model_app_id":"` + appID + `","model_id":"` + modelID + `","post_inputs_key_id":"` + key + `"}}`
	}
	valid := source("clarifai", "main", "m", alicePostKey)
	cases := []struct {
		name     string
		items    []string
		httpCode int
		code     pb.StatusCode
		details  string
	}{
		{"empty batch", nil, 400, pb.StatusCode_CONN_INVALID_REQUEST, "collectors is empty"},
		{"missing id", []string{`{"pre_queue_random_sample":1,` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "id is required"},
		{"id charset", []string{`{"id":"a b","pre_queue_random_sample":1,` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, `contains ' '`},
		{"id too long", []string{`{"id":"` + strings.Repeat("a", 49) + `","pre_queue_random_sample":1,` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "maximum is 48"},
		{"missing source", []string{`{"id":"c","pre_queue_random_sample":1}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "collector_source.api_post_model_outputs_collector_source is required"},
		{"missing model_id", []string{`{"id":"c","pre_queue_random_sample":1,` + source("clarifai", "main", "", alicePostKey) + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "model_id is required"},
		{"missing model_app_id", []string{`{"id":"c","pre_queue_random_sample":1,` + source("clarifai", "", "m", alicePostKey) + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "model_app_id is required"},
		{"missing key", []string{`{"id":"c","pre_queue_random_sample":1,` + source("clarifai", "main", "m", "") + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "post_inputs_key_id is required"},
		{"sample above 1", []string{`{"id":"c","pre_queue_random_sample":1.5,` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "pre_queue_random_sample must be in (0,1]"},
		{"negative sample", []string{`{"id":"c","pre_queue_random_sample":-0.1,` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "pre_queue_random_sample must be in (0,1]"},
		{"no filter", []string{`{"id":"c",` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "set at least one of"},
		{"duplicate in request", []string{collectorJSON("twice", alicePostKey), collectorJSON("twice", alicePostKey)}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, `collectors[1] (id "twice"): id "twice" appears more than once`},
		{"existing id", []string{collectorJSON("existing", alicePostKey)}, 409,
			pb.StatusCode_DATABASE_DUPLICATE_KEY, "already exists"},
		{"unknown post key", []string{collectorJSON("c", "no-such-key-0123456789")}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "not a known API key"},
		{"post key without Inputs_Add", []string{collectorJSON("c", aliceReadOnly)}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "lacks scope Inputs_Add"},
		{"post key of another user", []string{collectorJSON("c", bobPAT)}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, "belongs to another user"},
		{"post key of another app", []string{collectorJSON("c", aliceOtherPost)}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, `is a key of app "other"`},
		{"one bad item rejects all", []string{collectorJSON("good", alicePostKey), `{"id":"bad",` + valid + `}`}, 400,
			pb.StatusCode_CONN_INVALID_REQUEST, `collectors[1] (id "bad")`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := env.postCollectors(tc.items...)
			resp.requireStatus(t, tc.httpCode, tc.code)
			if !strings.Contains(resp.details(), tc.details) {
				t.Errorf("details %q do not contain %q", resp.details(), tc.details)
			}
		})
	}

	list := env.do(http.MethodGet, collectorsPath, keyHeader(alicePAT), "")
	if n := len(list.list(t, "collectors")); n != 1 {
		t.Errorf("after rejected requests the app has %d collectors, want only the seeded one", n)
	}
}

func TestREST_ListCollectorsPagination(t *testing.T) {
	env := newTestEnv(t)

	empty := env.do(http.MethodGet, collectorsPath, keyHeader(alicePAT), "")
	empty.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if !strings.Contains(empty.raw, `"collectors":[]`) {
		t.Errorf("an empty list is not written as []: %s", empty.raw)
	}

	var items []string
	for i := range 5 {
		items = append(items, collectorJSON(fmt.Sprintf("c%d", i), alicePostKey))
	}
	env.postCollectors(items...).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	cases := []struct {
		query string
		want  []string
	}{
		{"?page=1&per_page=2", []string{"c0", "c1"}},
		{"?page=2&per_page=2", []string{"c2", "c3"}},
		{"?page=3&per_page=2", []string{"c4"}},
		{"?page=4&per_page=2", nil},
		{"", []string{"c0", "c1", "c2", "c3", "c4"}},
		{"?perPage=4", []string{"c0", "c1", "c2", "c3"}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			resp := env.do(http.MethodGet, collectorsPath+tc.query, keyHeader(alicePAT), "")
			resp.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
			var got []string
			for _, c := range resp.list(t, "collectors") {
				got = append(got, c["id"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
		})
	}

	tooMany := env.do(http.MethodGet, collectorsPath+"?per_page=1001", keyHeader(alicePAT), "")
	tooMany.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	if !strings.Contains(tooMany.details(), "maximum 1000") {
		t.Errorf("details %q do not state the maximum", tooMany.details())
	}
}

func TestREST_PatchCollectors(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	env.postCollectors(collectorJSON("p1", alicePostKey), collectorJSON("p2", alicePostKey)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	patch := func(action string, items ...string) restResponse {
		return env.do(http.MethodPatch, collectorsPath, keyHeader(alicePAT),
			`{"action":"`+action+`","collectors":[`+strings.Join(items, ",")+`]}`)
	}

	merge := patch("merge", collectorJSON("p1", alicePostKey))
	merge.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	if !strings.Contains(merge.details(), `"merge"`) {
		t.Errorf("details %q do not name the action", merge.details())
	}

	missing := patch("overwrite", collectorJSON("p1", alicePostKey), collectorJSON("nope", alicePostKey))
	missing.requireStatus(t, http.StatusNotFound, pb.StatusCode_COLLECTOR_MISSING)
	if !strings.Contains(missing.details(), `collectors[1] (id "nope")`) {
		t.Errorf("details %q do not name the missing item", missing.details())
	}

	// A new key is checked like one of PostCollectors.
	badKey := patch("overwrite", collectorJSON("p1", aliceOtherPost))
	badKey.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)

	// Omitting the key keeps the stored one; the missing status keeps the state.
	env.postWorkflows(workflowJSON("wf-1", "", sampleNode)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	noKey := `{"id":"p2","post_queue_workflow_id":"wf-1","collector_source":{"api_post_model_outputs_collector_source":` +
		`{"model_user_id":"u2","model_app_id":"a2","model_id":"m2","caller_user_id":"caller-9"}}}`
	ok := patch("overwrite", noKey)
	ok.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	c, err := env.store.GetCollector(ctx, "alice", "dest", "p2")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if c.PostInputsKey != alicePostKey {
		t.Error("overwrite without a key changed the stored key")
	}
	if c.Model.ModelID != "m2" || c.CallerUserID != "caller-9" || c.PostQueueWorkflowID != "wf-1" {
		t.Errorf("overwrite did not apply: model %+v caller %q workflow %q", c.Model, c.CallerUserID, c.PostQueueWorkflowID)
	}
	if c.RandomSample != 0 || c.Description != "" {
		t.Errorf("overwrite kept fields the request left out: sample %v description %q", c.RandomSample, c.Description)
	}
	if c.Paused {
		t.Error("overwrite without status paused the collector")
	}

	// The failed requests above changed nothing.
	p1, err := env.store.GetCollector(ctx, "alice", "dest", "p1")
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if p1.PostInputsKey != alicePostKey || p1.Version != 1 {
		t.Errorf("a rejected patch changed p1: version %d", p1.Version)
	}
}

func TestREST_DeleteCollectors(t *testing.T) {
	env := newTestEnv(t)
	env.postCollectors(collectorJSON("d1", alicePostKey), collectorJSON("d2", alicePostKey), collectorJSON("d3", alicePostKey)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	del := func(body string) restResponse {
		return env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), body)
	}

	mixed := del(`{"ids":["d1","ghost"]}`)
	mixed.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	if !strings.Contains(mixed.details(), `"ghost"`) || strings.Contains(mixed.details(), `"d1"`) {
		t.Errorf("details %q should name only the missing id", mixed.details())
	}

	allMissing := del(`{"ids":["d1"]}`)
	allMissing.requireStatus(t, http.StatusNotFound, pb.StatusCode_COLLECTOR_MISSING)

	del(`{"ids":["d2"],"delete_all":true}`).requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	del(`{}`).requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)

	del(`{"delete_all":true}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	list := env.do(http.MethodGet, collectorsPath, keyHeader(alicePAT), "")
	if n := len(list.list(t, "collectors")); n != 0 {
		t.Errorf("after delete_all the app has %d collectors", n)
	}
}

func TestREST_ShortKeyFullyMasked(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	const short = "short-key-1"
	if err := env.store.InsertKey(ctx, identityKey("k-short", short, "alice", "dest")); err != nil {
		t.Fatalf("insert key: %v", err)
	}

	resp := env.postCollectors(collectorJSON("short", short))
	resp.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	src := field(resp.list(t, "collectors")[0], "collector_source", "api_post_model_outputs_collector_source")
	if got := field(src, "post_inputs_key_id"); got != "****" {
		t.Errorf("post_inputs_key_id = %v, want ****", got)
	}
	if strings.Contains(resp.raw, "y-1") {
		t.Error("the response shows the end of a short key")
	}
}
