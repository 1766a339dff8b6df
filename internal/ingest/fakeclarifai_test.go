package ingest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// fakeClarifai serves POST /v2/users/{user}/apps/{app}/inputs the way the
// Clarifai API documents it: "Authorization: Key <key>", at most 128 inputs,
// caller-chosen input IDs, a duplicate ID reported per input with details
// "Input has a duplicate ID.", and status codes in a JSON status body.
//
// NOTE: when every input of a request is a duplicate, the fake returns HTTP
// 400 with per-input statuses; a partly duplicate request gets HTTP 200
// MIXED_STATUS. Clarifai's documentation does not say which HTTP status it
// uses for the first case, so both shapes are exercised.
type fakeClarifai struct {
	srv *httptest.Server
	key string

	mu       sync.Mutex
	inputs   map[string]*clarifaipb.Input // "user/app/id" -> input
	requests []fakeRequest
	conns    int
	// maxBodyBytes returns 413 for larger request bodies, as a proxy in
	// front of the API does; 0 accepts any size.
	maxBodyBytes int
	// rejectText returns 400 for a request containing an input whose text
	// contains it, without per-input statuses, as a validation error does.
	rejectText string
	// script overrides the response to request n (0-based) when ok is true.
	script func(n int) (status int, header http.Header, ok bool)
	// respond overrides the response to a request, after script, when ok is
	// true. It runs with mu held, so it must not call the fake's methods.
	respond func(req fakeRequest) (status int, header http.Header, ok bool)
}

type fakeRequest struct {
	at     time.Time
	path   string
	auth   string
	ids    []string
	status int
	body   []byte
}

var inputsPath = regexp.MustCompile(`^/v2/users/([^/]+)/apps/([^/]+)/inputs$`)

func newFakeClarifai(t *testing.T, key string) *fakeClarifai {
	t.Helper()
	f := &fakeClarifai{key: key, inputs: map[string]*clarifaipb.Input{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeClarifai) url() string { return f.srv.URL }

func (f *fakeClarifai) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()

	n := len(f.requests)
	f.requests = append(f.requests, fakeRequest{at: time.Now(), path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body})
	reply := func(status int, header http.Header, resp *clarifaipb.MultiInputResponse) {
		f.requests[n].status = status
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		out, _ := protojson.MarshalOptions{UseProtoNames: true, UseEnumNumbers: true}.Marshal(resp)
		_, _ = w.Write(out)
	}
	status := func(code clarifaipb.StatusCode, desc string) *clarifaipb.MultiInputResponse {
		return &clarifaipb.MultiInputResponse{Status: &clarifaipb.Status{Code: code, Description: desc}}
	}

	m := inputsPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodPost || m == nil {
		reply(http.StatusNotFound, nil, status(clarifaipb.StatusCode_CONN_DOES_NOT_EXIST, "Resource does not exist"))
		return
	}
	var req clarifaipb.PostInputsRequest
	parseErr := protojson.Unmarshal(body, &req)
	for _, in := range req.GetInputs() {
		f.requests[n].ids = append(f.requests[n].ids, in.GetId())
	}

	if f.maxBodyBytes > 0 && len(body) > f.maxBodyBytes {
		f.requests[n].status = http.StatusRequestEntityTooLarge
		http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
		return
	}
	if r.Header.Get("Authorization") != "Key "+f.key {
		reply(http.StatusUnauthorized, nil, status(clarifaipb.StatusCode_CONN_KEY_NOT_FOUND, "API key not found"))
		return
	}
	if parseErr != nil {
		reply(http.StatusBadRequest, nil, status(clarifaipb.StatusCode_CONN_INVALID_REQUEST, "Invalid request"))
		return
	}
	if f.script != nil {
		if code, header, ok := f.script(n); ok {
			reply(code, header, status(clarifaipb.StatusCode_FAILURE, http.StatusText(code)))
			return
		}
	}
	if f.respond != nil {
		if code, header, ok := f.respond(f.requests[n]); ok {
			reply(code, header, status(clarifaipb.StatusCode_FAILURE, http.StatusText(code)))
			return
		}
	}
	if len(req.GetInputs()) > MaxInputsPerPost {
		reply(http.StatusBadRequest, nil, status(clarifaipb.StatusCode_INPUT_INVALID_REQUEST, "Too many inputs"))
		return
	}
	for _, in := range req.GetInputs() {
		if f.rejectText != "" && strings.Contains(in.GetData().GetText().GetRaw(), f.rejectText) {
			reply(http.StatusBadRequest, nil, status(clarifaipb.StatusCode_INPUT_INVALID_ARGUMENT, "Invalid input"))
			return
		}
	}
	f.store(m[1], m[2], req.GetInputs(), reply)
}

func (f *fakeClarifai) store(user, app string, inputs []*clarifaipb.Input, reply func(int, http.Header, *clarifaipb.MultiInputResponse)) {
	resp := &clarifaipb.MultiInputResponse{}
	dups := 0
	for _, in := range inputs {
		key := user + "/" + app + "/" + in.GetId()
		st := &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_PENDING, Description: "Input is pending"}
		if _, exists := f.inputs[key]; exists {
			dups++
			st = &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_DUPLICATE, Description: "Input already exists",
				Details: "Input has a duplicate ID."}
		} else {
			f.inputs[key] = proto.Clone(in).(*clarifaipb.Input)
		}
		resp.Inputs = append(resp.Inputs, &clarifaipb.Input{Id: in.GetId(), Status: st})
	}

	switch {
	case dups == 0:
		resp.Status = &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"}
		reply(http.StatusOK, nil, resp)
	case dups < len(inputs):
		resp.Status = &clarifaipb.Status{Code: clarifaipb.StatusCode_MIXED_STATUS, Description: "Mixed Success"}
		reply(http.StatusOK, nil, resp)
	default:
		resp.Status = &clarifaipb.Status{Code: clarifaipb.StatusCode_FAILURE, Description: "Failure"}
		reply(http.StatusBadRequest, nil, resp)
	}
}

// preload stores inputs as if posted earlier.
func (f *fakeClarifai) preload(user, app string, ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.inputs[user+"/"+app+"/"+id] = &clarifaipb.Input{Id: id}
	}
}

func (f *fakeClarifai) stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inputs)
}

func (f *fakeClarifai) has(user, app, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.inputs[user+"/"+app+"/"+id]
	return ok
}

func (f *fakeClarifai) log() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

// requestsFor returns the requests that carried an input ID.
func (f *fakeClarifai) requestsFor(id string) []fakeRequest {
	var out []fakeRequest
	for _, r := range f.log() {
		for _, got := range r.ids {
			if got == id {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func (f *fakeClarifai) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// staticKeys is a KeyLookup over a map from "user/app/collector" to key.
type staticKeys map[string]string

func (k staticKeys) PostInputsKey(_ context.Context, userID, appID, collectorID string) (string, error) {
	key, ok := k[userID+"/"+appID+"/"+collectorID]
	if !ok {
		return "", fmt.Errorf("collector %s/%s/%s: %w", userID, appID, collectorID, collector.ErrNotFound)
	}
	return key, nil
}

func (e *env) remote(t *testing.T, f *fakeClarifai, keys KeyLookup) *RemoteDestination {
	t.Helper()
	d, err := NewRemoteDestination(RemoteConfig{BaseURL: f.url(), Timeout: 5 * time.Second}, RemoteDeps{Keys: keys, Logger: e.logger})
	if err != nil {
		t.Fatalf("NewRemoteDestination: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}
