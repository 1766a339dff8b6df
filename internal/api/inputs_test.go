package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

const inputsPath = "/v2/users/me/apps/dest/inputs"

func imageInput(id string) string {
	return `{"id":"` + id + `","data":{"image":{"url":"https://samples.clarifai.com/metro-north.jpg","allow_duplicate_url":true}}}`
}

func (e *testEnv) postInputs(items ...string) restResponse {
	e.t.Helper()
	return e.do(http.MethodPost, inputsPath, keyHeader(alicePAT), `{"inputs":[`+strings.Join(items, ",")+`]}`)
}

func TestREST_PostInputs(t *testing.T) {
	env := newTestEnv(t)

	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n fake image bytes"))
	first := env.postInputs(imageInput("in-1"), `{"data":{"image":{"base64":"`+png+`"}}}`)
	first.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	inputs := first.list(t, "inputs")
	if len(inputs) != 2 {
		t.Fatalf("PostInputs returned %d inputs, want 2", len(inputs))
	}
	if got := field(inputs[0], "status", "code"); got != "INPUT_SUCCESS" {
		t.Errorf("inputs[0].status.code = %v, want INPUT_SUCCESS", got)
	}
	generated, _ := inputs[1]["id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(generated) {
		t.Errorf("generated input id = %q, want 32 hex characters", generated)
	}
	if strings.Contains(first.raw, png) {
		t.Error("the response echoes the posted base64 bytes")
	}

	stored, err := env.store.GetInput(context.Background(), "alice", "dest", generated)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	if !strings.HasPrefix(string(stored.GetData().GetImage().GetBase64()), "\x89PNG") {
		t.Error("the stored input lost its image bytes")
	}

	mixed := env.postInputs(imageInput("in-1"), imageInput("in-2"))
	mixed.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	dup := mixed.list(t, "inputs")[0]
	if got := field(dup, "status", "code"); got != "INPUT_DUPLICATE" {
		t.Errorf("duplicate input status.code = %v, want INPUT_DUPLICATE", got)
	}
	if got := field(dup, "status", "details"); got != "Input has a duplicate ID." {
		t.Errorf("duplicate input status.details = %v", got)
	}
	if got := field(mixed.list(t, "inputs")[1], "status", "code"); got != "INPUT_SUCCESS" {
		t.Errorf("new input status.code = %v, want INPUT_SUCCESS", got)
	}

	allDup := env.postInputs(imageInput("in-1"), imageInput("in-2"))
	allDup.requireStatus(t, http.StatusBadRequest, pb.StatusCode_FAILURE)

	sameTwice := env.postInputs(imageInput("in-3"), imageInput("in-3"))
	sameTwice.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	if got := field(sameTwice.list(t, "inputs")[1], "status", "code"); got != "INPUT_DUPLICATE" {
		t.Errorf("repeated id in one request: status.code = %v, want INPUT_DUPLICATE", got)
	}
}

func TestREST_PostInputsInvalid(t *testing.T) {
	env := newTestEnv(t)

	noData := env.postInputs(`{"id":"empty"}`, imageInput("fine"), `{"id":"bad id","data":{"text":{"raw":"x"}}}`)
	noData.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	got := noData.list(t, "inputs")
	if code := field(got[0], "status", "code"); code != "INPUT_INVALID_ARGUMENT" {
		t.Errorf("input without data: status.code = %v", code)
	}
	if d, _ := field(got[0], "status", "details").(string); !strings.Contains(d, "no data") {
		t.Errorf("input without data: details = %q", d)
	}
	if code := field(got[2], "status", "code"); code != "INPUT_INVALID_ARGUMENT" {
		t.Errorf("input with a bad id: status.code = %v", code)
	}

	items := make([]string, 129)
	for i := range items {
		items[i] = imageInput(fmt.Sprintf("bulk-%d", i))
	}
	tooMany := env.postInputs(items...)
	tooMany.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	if !strings.Contains(tooMany.details(), "maximum per request is 128") {
		t.Errorf("details %q do not state the limit", tooMany.details())
	}

	bad := env.do(http.MethodPost, inputsPath, keyHeader(alicePAT), `{"inputs":[`+imageInput("x")+`],"input_id_conflict_resolution":7}`)
	bad.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
}

func TestREST_PostInputsSuffix(t *testing.T) {
	env := newTestEnv(t)
	env.postInputs(imageInput("taken")).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	for _, mode := range []string{`"SUFFIX"`, `2`} {
		resp := env.do(http.MethodPost, inputsPath, keyHeader(alicePAT),
			`{"inputs":[`+imageInput("taken")+`],"input_id_conflict_resolution":`+mode+`}`)
		resp.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
		id, _ := resp.list(t, "inputs")[0]["id"].(string)
		if !strings.HasPrefix(id, "taken-") {
			t.Errorf("mode %s: id = %q, want taken-<suffix>", mode, id)
		}
		if _, err := env.store.GetInput(context.Background(), "alice", "dest", id); err != nil {
			t.Errorf("mode %s: suffixed input not stored: %v", mode, err)
		}
	}
}

func TestREST_GetListDeleteInputs(t *testing.T) {
	env := newTestEnv(t)
	env.postInputs(imageInput("a"), imageInput("b"), imageInput("c")).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	get := env.do(http.MethodGet, inputsPath+"/b", keyHeader(aliceReadOnly), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(get.json, "input", "data", "image", "url"); got != "https://samples.clarifai.com/metro-north.jpg" {
		t.Errorf("GetInput image url = %v", got)
	}
	env.do(http.MethodGet, inputsPath+"/zzz", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_INPUT_DOES_NOT_EXIST)

	page := env.do(http.MethodGet, inputsPath+"?page=2&per_page=2", keyHeader(alicePAT), "")
	page.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if ids := ids(t, page, "inputs"); ids != "c" {
		t.Errorf("page 2 of 2 = %s, want c", ids)
	}
	byID := env.do(http.MethodGet, inputsPath+"?ids=c&ids=a&ids=missing", keyHeader(alicePAT), "")
	if ids := ids(t, byID, "inputs"); ids != "c,a" {
		t.Errorf("ListInputs by ids = %s, want c,a", ids)
	}

	noScope := env.do(http.MethodDelete, inputsPath, keyHeader(aliceReadOnly), `{"ids":["a"]}`)
	noScope.requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)

	del := env.do(http.MethodDelete, inputsPath, keyHeader(alicePAT), `{"ids":["a","nope"]}`)
	del.requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	env.do(http.MethodDelete, inputsPath, keyHeader(alicePAT), `{"ids":["a"]}`).
		requireStatus(t, http.StatusNotFound, pb.StatusCode_INPUT_DOES_NOT_EXIST)
	env.do(http.MethodDelete, inputsPath, keyHeader(alicePAT), `{"ids":[]}`).
		requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)

	rest := env.do(http.MethodGet, "/v2/inputs", keyHeader(aliceAppKey), "")
	rest.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if ids := ids(t, rest, "inputs"); ids != "b,c" {
		t.Errorf("inputs after delete = %s, want b,c", ids)
	}
}

// ids returns the ids of a list in a response, joined by commas.
func ids(t *testing.T, r restResponse, list string) string {
	t.Helper()
	var out []string
	for _, item := range r.list(t, list) {
		out = append(out, item["id"].(string))
	}
	return strings.Join(out, ",")
}
