package api_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/collectord/collectord/internal/api"
	"github.com/collectord/collectord/internal/audit"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
)

// memAudit is an in-memory audit.Store. failWith, when set, makes every
// append fail.
type memAudit struct {
	mu       sync.Mutex
	entries  []audit.Entry
	failWith error
}

var _ audit.Store = (*memAudit)(nil)

func (m *memAudit) AppendAudit(_ context.Context, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWith != nil {
		return m.failWith
	}
	e.ID = int64(len(m.entries) + 1)
	m.entries = append(m.entries, e)
	return nil
}

func (m *memAudit) ListAudit(_ context.Context, userID, appID string, offset, limit int) ([]audit.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []audit.Entry
	for _, e := range slices.Backward(m.entries) {
		if e.UserID == userID && e.AppID == appID {
			out = append(out, e)
		}
	}
	out = out[min(offset, len(out)):]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memAudit) all() []audit.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.entries)
}

// auditClock is the fixed time of every audit entry in these tests.
var auditClock = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// newAuditEnv is newTestEnv with an audit store. A nil log keeps none.
func newAuditEnv(t *testing.T, log audit.Store) *testEnv {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	st, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  logger,
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	srv, err := api.New(api.Config{}, api.Deps{
		Collectors: st,
		Workflows:  st,
		Previews:   st,
		Apps:       st,
		Inputs:     st,
		Keys:       keyResolver{keys: st},
		Filters:    testFilters,
		Logger:     logger,
		Meter:      provider.Meter("test"),
		Now:        func() time.Time { return auditClock },
		Audit:      log,
	})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}

	env := &testEnv{t: t, store: st, server: srv, logs: logs, reader: reader}
	env.http = httptest.NewServer(srv.HTTPHandler())
	t.Cleanup(env.http.Close)
	env.grpc = startGRPC(t, srv)
	env.seed()
	t.Cleanup(func() { env.requireNoSecrets("log", logs.String()) })
	return env
}

// requireEntry checks the fields of one entry that every test sets, and that
// its details carry no secret.
func requireEntry(t *testing.T, env *testEnv, got audit.Entry, action, resource, appID, resourceID string) {
	t.Helper()
	if got.Action != action || got.Resource != resource || got.AppID != appID || got.ResourceID != resourceID {
		t.Errorf("entry = %s %s %s/%s, want %s %s %s/%s",
			got.Action, got.Resource, got.AppID, got.ResourceID, action, resource, appID, resourceID)
	}
	if got.UserID != "alice" || got.ActorUserID != "alice" || got.ActorKeyID != "k-alice-pat" {
		t.Errorf("entry owner %q, actor %q key %q; want alice, alice, k-alice-pat", got.UserID, got.ActorUserID, got.ActorKeyID)
	}
	if !got.Time.Equal(auditClock) {
		t.Errorf("entry time = %v, want %v", got.Time, auditClock)
	}
	env.requireNoSecrets("audit details", got.Details)
}

func TestAudit_CollectorChanges(t *testing.T) {
	log := &memAudit{}
	env := newAuditEnv(t, log)

	env.postCollectors(collectorJSON("c1", alicePostKey), collectorJSON("c2", alicePostKey)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	patch := `{"action":"overwrite","collectors":[` + strings.Replace(collectorJSON("c1", aliceAppKey), "collect from general", "changed", 1) + `]}`
	env.do(http.MethodPatch, collectorsPath, keyHeader(alicePAT), patch).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"ids":["c2","missing"]}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"delete_all":true}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	got := log.all()
	if len(got) != 5 {
		t.Fatalf("got %d entries, want 5: %+v", len(got), got)
	}
	requireEntry(t, env, got[0], audit.ActionCreate, "collector", "dest", "c1")
	requireEntry(t, env, got[1], audit.ActionCreate, "collector", "dest", "c2")
	requireEntry(t, env, got[2], audit.ActionUpdate, "collector", "dest", "c1")
	requireEntry(t, env, got[3], audit.ActionDelete, "collector", "dest", "c2")
	requireEntry(t, env, got[4], audit.ActionDelete, "collector", "dest", "")

	if !strings.Contains(got[0].Details, `"post_inputs_key_id":"****`+alicePostKey[len(alicePostKey)-4:]+`"`) {
		t.Errorf("create details do not show the masked key: %s", got[0].Details)
	}
	for _, want := range []string{`"previous":`, `"description":"changed"`, `"post_inputs_key_id_changed":true`} {
		if !strings.Contains(got[2].Details, want) {
			t.Errorf("update details lack %s: %s", want, got[2].Details)
		}
	}
	if !strings.Contains(got[4].Details, `"delete_all":true`) || !strings.Contains(got[4].Details, `"count":1`) {
		t.Errorf("delete_all details = %s, want delete_all and count 1", got[4].Details)
	}
}

func TestAudit_WorkflowChanges(t *testing.T) {
	log := &memAudit{}
	env := newAuditEnv(t, log)

	env.postWorkflows(workflowJSON("w1", "first", sampleNode), workflowJSON("w2", "", sampleNode)).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.patchWorkflows("merge", workflowJSON("w1", "changed")).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	// Rejected changes write no entry.
	env.patchWorkflows("merge", workflowJSON("w1", "", `{"id":"x","model":{"model_type_id":"nope"}}`)).
		requireStatus(t, http.StatusBadRequest, pb.StatusCode_WORKFLOW_INVALID_ARGUMENT)
	env.deleteWorkflows(`{"ids":["w2","missing"]}`).requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	env.deleteWorkflows(`{"delete_all":true}`).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	got := log.all()
	if len(got) != 5 {
		t.Fatalf("got %d entries, want 5: %+v", len(got), got)
	}
	requireEntry(t, env, got[0], audit.ActionCreate, "workflow", "dest", "w1")
	requireEntry(t, env, got[1], audit.ActionCreate, "workflow", "dest", "w2")
	requireEntry(t, env, got[2], audit.ActionUpdate, "workflow", "dest", "w1")
	requireEntry(t, env, got[3], audit.ActionDelete, "workflow", "dest", "w2")
	requireEntry(t, env, got[4], audit.ActionDelete, "workflow", "dest", "w1")

	if !strings.Contains(got[0].Details, `"model_type_id":"random-sample"`) {
		t.Errorf("create details do not show the nodes: %s", got[0].Details)
	}
	for _, want := range []string{`"previous":`, `"description":"first"`, `"description":"changed"`} {
		if !strings.Contains(got[2].Details, want) {
			t.Errorf("update details lack %s: %s", want, got[2].Details)
		}
	}
}

func TestAudit_AppsAndInputs(t *testing.T) {
	log := &memAudit{}
	env := newAuditEnv(t, log)

	env.do(http.MethodPost, "/v2/users/me/apps", keyHeader(alicePAT), `{"apps":[{"id":"new-app","name":"New"}]}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	// One valid input, one without data: one entry that lists the valid one
	// by ID and leaves its data and metadata out.
	const userData = "user-data-in-metadata"
	metadata := `"metadata":{"api_key":"` + userData + `"}`
	env.postInputs(`{"id":"in-1","data":{"text":{"raw":"hello"},`+metadata+`}}`, `{"id":"bad","data":{}}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)
	env.do(http.MethodDelete, inputsPath, keyHeader(alicePAT), `{"ids":["in-1","nope"]}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_MIXED_STATUS)

	got := log.all()
	if len(got) != 3 {
		t.Fatalf("got %d entries, want 3: %+v", len(got), got)
	}
	requireEntry(t, env, got[0], audit.ActionCreate, "app", "new-app", "new-app")
	requireEntry(t, env, got[1], audit.ActionCreate, "input", "dest", "")
	requireEntry(t, env, got[2], audit.ActionDelete, "input", "dest", "")
	if !strings.Contains(got[0].Details, `"name":"New"`) {
		t.Errorf("app details = %s, want the name", got[0].Details)
	}
	for i, want := range []string{`{"count":1,"input_ids":["in-1"]}`, `{"count":1,"input_ids":["in-1"]}`} {
		if got[i+1].Details != want {
			t.Errorf("entry %d details = %s, want %s", i+1, got[i+1].Details, want)
		}
		if strings.Contains(got[i+1].Details, userData) {
			t.Errorf("entry %d details contain input metadata", i+1)
		}
	}
}

func TestAudit_NothingForFailures(t *testing.T) {
	log := &memAudit{}
	env := newAuditEnv(t, log)

	// Invalid, unauthorized, and a change that changed nothing.
	env.postCollectors(collectorJSON("bad id!", alicePostKey)).requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	env.do(http.MethodPost, collectorsPath, keyHeader(aliceReadOnly), `{"collectors":[`+collectorJSON("c1", alicePostKey)+`]}`).
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"ids":["missing"]}`).
		requireStatus(t, http.StatusNotFound, pb.StatusCode_COLLECTOR_MISSING)
	env.do(http.MethodDelete, collectorsPath, keyHeader(alicePAT), `{"delete_all":true}`).
		requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	env.postInputs(`{"id":"bad","data":{}}`).requireStatus(t, http.StatusBadRequest, pb.StatusCode_FAILURE)

	if got := log.all(); len(got) != 0 {
		t.Errorf("failed or empty changes wrote %d entries: %+v", len(got), got)
	}
}

func TestAudit_WriteFailureKeepsChange(t *testing.T) {
	log := &memAudit{failWith: errors.New("disk full")}
	env := newAuditEnv(t, log)

	env.postCollectors(collectorJSON("c1", alicePostKey)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if _, err := env.store.GetCollector(context.Background(), "alice", "dest", "c1"); err != nil {
		t.Errorf("the collector was not stored: %v", err)
	}
	if logs := env.logs.String(); !strings.Contains(logs, "write audit entry failed") || !strings.Contains(logs, "disk full") {
		t.Errorf("the failure is not logged:\n%s", logs)
	}

	var rm metricdata.ResourceMetrics
	if err := env.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var failures int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "collectord_api_audit_write_failures_total" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					failures += dp.Value
				}
			}
		}
	}
	if failures != 1 {
		t.Errorf("collectord_api_audit_write_failures_total = %d, want 1", failures)
	}
}

func TestREST_ListAuditEntries(t *testing.T) {
	env := newAuditEnv(t, &memAudit{})
	for _, id := range []string{"c1", "c2", "c3"} {
		env.postCollectors(collectorJSON(id, alicePostKey)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	}
	const auditPath = "/v2/users/me/apps/dest/audit"

	page1 := env.do(http.MethodGet, auditPath+"?page=1&per_page=2", keyHeader(aliceReadOnly), "")
	page1.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	entries := page1.list(t, "audit_entries")
	if len(entries) != 2 {
		t.Fatalf("page 1 has %d entries, want 2: %s", len(entries), page1.raw)
	}
	first := entries[0]
	want := map[string]any{
		"resource_id": "c3", "action": "create", "resource": "collector",
		"actor_user_id": "alice", "actor_key_id": "k-alice-pat", "user_id": "alice", "app_id": "dest",
		"created_at": "2025-06-01T12:00:00Z",
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("newest entry %s = %v, want %v", k, first[k], v)
		}
	}
	if got := field(first, "details", "collector", "id"); got != "c3" {
		t.Errorf("details.collector.id = %v, want c3 as a JSON object: %s", got, page1.raw)
	}

	page2 := env.do(http.MethodGet, auditPath+"?page=2&per_page=2", keyHeader(aliceReadOnly), "")
	if rest := page2.list(t, "audit_entries"); len(rest) != 1 || rest[0]["resource_id"] != "c1" {
		t.Errorf("page 2 = %s, want the oldest entry alone", page2.raw)
	}

	env.do(http.MethodGet, auditPath, keyHeader(alicePostKey), "").requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodGet, "/v2/users/alice/apps/dest/audit", keyHeader(bobPAT), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodGet, "/v2/users/me/apps/nope/audit", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_CONN_DOES_NOT_EXIST)
}

func TestGRPC_ListAuditEntries(t *testing.T) {
	env := newAuditEnv(t, &memAudit{})
	env.postCollectors(collectorJSON("c1", alicePostKey)).requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	resp, err := env.grpc.ListAuditEntries(withKey(alicePAT), &pb.ListAuditEntriesRequest{
		UserAppId: &pb.UserAppIDSet{UserId: "me", AppId: "dest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != pb.StatusCode_SUCCESS {
		t.Fatalf("status = %v", resp.GetStatus())
	}
	if n := len(resp.GetAuditEntries()); n != 1 {
		t.Fatalf("got %d entries, want 1", n)
	}
	e := resp.GetAuditEntries()[0]
	if e.GetId() != 1 || e.GetResourceId() != "c1" || e.GetActorKeyId() != "k-alice-pat" {
		t.Errorf("entry = %v", e)
	}
	key := e.GetDetails().GetFields()["collector"].GetStructValue().GetFields()["collector_source"].
		GetStructValue().GetFields()["api_post_model_outputs_collector_source"].GetStructValue().GetFields()["post_inputs_key_id"].GetStringValue()
	if !strings.HasPrefix(key, "****") || strings.Contains(key, alicePostKey) {
		t.Errorf("details post_inputs_key_id = %q, want it masked", key)
	}
}

func TestListAuditEntries_NoAuditStore(t *testing.T) {
	env := newAuditEnv(t, nil)
	env.do(http.MethodGet, "/v2/users/me/apps/dest/audit", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotImplemented, pb.StatusCode_NOT_IMPLEMENTED)
}
