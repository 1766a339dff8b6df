package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/pb/capturepb"
)

func newTestRemote(t *testing.T, baseURL string, timeout time.Duration) *RemoteDestination {
	t.Helper()
	d, err := NewRemoteDestination(RemoteConfig{BaseURL: baseURL, Timeout: timeout},
		RemoteDeps{Keys: staticKeys{"u1/a1/c1": testKey}})
	if err != nil {
		t.Fatalf("NewRemoteDestination: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

var ref = DestinationRef{UserID: "u1", AppID: "a1", CollectorID: "c1"}

func TestRemote_RequestShape(t *testing.T) {
	fake := newFakeClarifai(t, testKey)
	d := newTestRemote(t, fake.url(), 5*time.Second)

	rec := newRecord("u1", "a1", "c1", 1)
	rec.Input.Id = "caller-7"
	results := d.Post(context.Background(), ref, []*capturepb.Record{rec})
	if len(results) != 1 || results[0].Outcome != Delivered {
		t.Fatalf("results = %+v, want one Delivered", results)
	}

	req := fake.log()[0]
	if req.path != "/v2/users/u1/apps/a1/inputs" {
		t.Errorf("path = %q, want /v2/users/u1/apps/a1/inputs", req.path)
	}
	if req.auth != "Key "+testKey {
		t.Errorf("Authorization = %q, want Key <post_inputs_key>", req.auth)
	}
	var body struct {
		UserAppID map[string]string `json:"user_app_id"`
		Inputs    []struct {
			ID   string `json:"id"`
			Data struct {
				Metadata map[string]map[string]string `json:"metadata"`
			} `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatalf("request body is not JSON: %v", err)
	}
	if body.UserAppID["user_id"] != "u1" || body.UserAppID["app_id"] != "a1" {
		t.Errorf("user_app_id = %v, want snake_case user_id u1 and app_id a1", body.UserAppID)
	}
	if len(body.Inputs) != 1 || body.Inputs[0].ID != rec.GetId() {
		t.Fatalf("inputs = %+v, want one with the record ID %s", body.Inputs, rec.GetId())
	}
	if got := body.Inputs[0].Data.Metadata[MetadataKey]["caller_input_id"]; got != "caller-7" {
		t.Errorf("metadata.collectord.caller_input_id = %q, want caller-7", got)
	}
}

func TestRemote_StatusMapping(t *testing.T) {
	cases := []struct {
		status     int
		retryAfter string
		outcome    Outcome
		reason     string
		wantDelay  time.Duration
	}{
		{status: 500, outcome: Retryable},
		{status: 502, outcome: Retryable},
		{status: 503, retryAfter: "7", outcome: Retryable, wantDelay: 7 * time.Second},
		{status: 504, outcome: Retryable},
		{status: 408, outcome: Retryable},
		{status: 429, retryAfter: "3", outcome: Retryable, wantDelay: 3 * time.Second},
		{status: 400, outcome: Permanent, reason: ReasonBadRequest},
		{status: 401, outcome: Permanent, reason: ReasonUnauthorized},
		{status: 403, outcome: Permanent, reason: ReasonForbidden},
		{status: 404, outcome: Permanent, reason: ReasonNotFound},
		{status: 413, outcome: Permanent, reason: ReasonTooLarge},
		{status: 422, outcome: Permanent, reason: ReasonRejected},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			fake := newFakeClarifai(t, testKey)
			fake.script = func(int) (int, http.Header, bool) {
				h := http.Header{}
				if tc.retryAfter != "" {
					h.Set("Retry-After", tc.retryAfter)
				}
				return tc.status, h, true
			}
			d := newTestRemote(t, fake.url(), 5*time.Second)

			got := d.Post(context.Background(), ref, []*capturepb.Record{newRecord("u1", "a1", "c1", 1)})
			if len(got) != 1 {
				t.Fatalf("results = %d, want 1", len(got))
			}
			if got[0].Outcome != tc.outcome || got[0].Reason != tc.reason || got[0].RetryAfter != tc.wantDelay {
				t.Errorf("HTTP %d: outcome %d reason %q retry after %s, want outcome %d reason %q retry after %s",
					tc.status, got[0].Outcome, got[0].Reason, got[0].RetryAfter, tc.outcome, tc.reason, tc.wantDelay)
			}
		})
	}
}

func TestRemote_ReusesConnections(t *testing.T) {
	fake := newFakeClarifai(t, testKey)
	d := newTestRemote(t, fake.url(), 5*time.Second)

	const posts = 50
	for i := range posts {
		res := d.Post(context.Background(), ref, []*capturepb.Record{newRecord("u1", "a1", "c1", i)})
		if res[0].Outcome != Delivered {
			t.Fatalf("post %d: %+v", i, res[0])
		}
	}
	if got := fake.connections(); got != 1 {
		t.Errorf("%d sequential posts opened %d connections, want 1 kept alive", posts, got)
	}
}

func TestRemote_TimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer hung.Close()
	defer close(release)

	d := newTestRemote(t, hung.URL, 200*time.Millisecond)
	got := d.Post(context.Background(), ref, []*capturepb.Record{newRecord("u1", "a1", "c1", 1)})
	if got[0].Outcome != Retryable || got[0].Err == nil {
		t.Errorf("result = %+v, want Retryable with the timeout error", got[0])
	}
}

func TestRemote_ConnectionRefusedIsRetryable(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()

	d := newTestRemote(t, url, time.Second)
	got := d.Post(context.Background(), ref, []*capturepb.Record{newRecord("u1", "a1", "c1", 1)})
	if got[0].Outcome != Retryable {
		t.Errorf("result = %+v, want Retryable", got[0])
	}
	if strings.Contains(got[0].Err.Error(), testKey) {
		t.Error("error text contains the post-inputs key")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{" 12 ", 12 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999", 24 * time.Hour},
	}
	for _, tc := range cases {
		if got := parseRetryAfter(tc.value, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.value, got, tc.want)
		}
	}
}

func TestNewRemoteDestination_RejectsBadURL(t *testing.T) {
	for _, raw := range []string{"", "api.example.com", "ftp://host", "http://"} {
		_, err := NewRemoteDestination(RemoteConfig{BaseURL: raw}, RemoteDeps{Keys: staticKeys{}})
		if err == nil {
			t.Errorf("NewRemoteDestination(%q) succeeded, want an invalid URL error", raw)
		}
	}
}

func TestRemote_PerInputFailureIsPermanent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One input stored, one rejected: HTTP 200 with MIXED_STATUS.
		_, _ = w.Write([]byte(`{"status":{"code":10010},"inputs":[` +
			`{"id":"u1-a1-c1-0000","status":{"code":30001}},` +
			`{"id":"u1-a1-c1-0001","status":{"code":30104,"description":"Invalid argument"}}]}`))
	}))
	defer srv.Close()

	d := newTestRemote(t, srv.URL, 5*time.Second)
	got := d.Post(context.Background(), ref, newRecords("u1", "a1", "c1", 2))
	if got[0].Outcome != Delivered {
		t.Errorf("first input: %+v, want Delivered", got[0])
	}
	if got[1].Outcome != Permanent || got[1].Reason != ReasonRejected {
		t.Errorf("second input: %+v, want Permanent %s", got[1], ReasonRejected)
	}
}
