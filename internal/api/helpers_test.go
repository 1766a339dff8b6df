package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/api"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
)

// Secrets of the seeded keys. Every response body and log line is checked
// for them.
const (
	alicePAT       = "alice-pat-7f3c9a1e5b2d4c6f8a0b"
	aliceAppKey    = "alice-appkey-d41d8cd98f00b204e980"
	aliceReadOnly  = "alice-readonly-0cc175b9c0f1b6a831c3"
	alicePostKey   = "alice-postkey-92eb5ffee6ae2fec3ad7"
	aliceOtherPost = "alice-otherapp-postkey-4a8a08f09d37b73795649"
	bobPAT         = "bob-pat-8277e0910d750195b448"
)

var allSecrets = []string{alicePAT, aliceAppKey, aliceReadOnly, alicePostKey, aliceOtherPost, bobPAT}

// testFilters names one remote model endpoint, so that remote-model nodes
// compile. The API only compiles workflows and never calls the endpoint; its
// port 9 (discard) is on loopback all the same.
var testFilters = filter.Config{RemoteEndpoints: map[string]*filter.RemoteEndpoint{
	"labeler": {BaseURL: "http://127.0.0.1:9"},
}}

// keyResolver resolves "Key SECRET" against the key store by the secret's
// SHA-256.
// TODO: use identity.Resolver once it exists; it adds caching on top of the
// same lookup.
type keyResolver struct {
	keys identity.KeyStore
}

func (r keyResolver) ResolveKey(ctx context.Context, auth string) (identity.Key, error) {
	scheme, secret, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Key") || strings.TrimSpace(secret) == "" {
		return identity.Key{}, identity.ErrNoCredentials
	}
	return r.keys.KeyByHash(ctx, identity.HashKey(strings.TrimSpace(secret)))
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnv is an API server over a real SQLite store, served over REST
// (httptest on loopback) and gRPC (127.0.0.1:0).
type testEnv struct {
	t      testing.TB
	store  *store.SQLite
	server *api.Server
	http   *httptest.Server
	grpc   pb.V2Client
	logs   *syncBuffer
	reader *sdkmetric.ManualReader
}

func newTestEnv(t testing.TB) *testEnv {
	return newTestEnvConfig(t, api.Config{})
}

func newTestEnvConfig(t testing.TB, cfg api.Config) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()

	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	st, err := store.OpenSQLite(ctx, store.SQLiteConfig{
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

	srv, err := api.New(cfg, api.Deps{
		Collectors: st,
		Workflows:  st,
		Previews:   st,
		Apps:       st,
		Inputs:     st,
		Keys:       keyResolver{keys: st},
		Filters:    testFilters,
		Logger:     logger,
		Meter:      provider.Meter("test"),
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

func startGRPC(t testing.TB, srv *api.Server) pb.V2Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := srv.GRPCServer()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial gRPC: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewV2Client(conn)
}

// seed creates users alice (apps "dest" and "other") and bob (app "bobapp")
// and their keys.
func (e *testEnv) seed() {
	ctx := context.Background()
	for _, a := range []localapp.App{
		{UserID: "alice", ID: "dest", Name: "Destination"},
		{UserID: "alice", ID: "other"},
		{UserID: "bob", ID: "bobapp"},
	} {
		if err := e.store.InsertApp(ctx, a); err != nil {
			e.t.Fatalf("insert app: %v", err)
		}
	}

	keys := []struct {
		secret, id, user, app string
		scopes                []string
	}{
		{alicePAT, "k-alice-pat", "alice", "", identity.AllScopes},
		{aliceAppKey, "k-alice-app", "alice", "dest", identity.AllScopes},
		{aliceReadOnly, "k-alice-ro", "alice", "", []string{identity.ScopeCollectorsGet, identity.ScopeInputsGet}},
		{alicePostKey, "k-alice-post", "alice", "dest", []string{identity.ScopeInputsAdd}},
		{aliceOtherPost, "k-alice-other-post", "alice", "other", []string{identity.ScopeInputsAdd}},
		{bobPAT, "k-bob-pat", "bob", "", identity.AllScopes},
	}
	for _, k := range keys {
		err := e.store.InsertKey(ctx, identity.Key{
			ID: k.id, Hash: identity.HashKey(k.secret), UserID: k.user, AppID: k.app, Scopes: k.scopes,
		})
		if err != nil {
			e.t.Fatalf("insert key %s: %v", k.id, err)
		}
	}
}

// restResponse is a REST reply: its HTTP status, raw body and decoded JSON.
type restResponse struct {
	code int
	raw  string
	json map[string]any
}

// do sends a REST request with a raw JSON body (empty for none) and the
// authorization value auth (empty for none).
func (e *testEnv) do(method, path, auth, body string) restResponse {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}

	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}

	out := restResponse{code: resp.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &out.json); err != nil {
		e.t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type = %q, want application/json", method, path, ct)
	}
	e.requireNoSecrets(method+" "+path+" response", out.raw)
	return out
}

func (e *testEnv) requireNoSecrets(where, text string) {
	e.t.Helper()
	for _, s := range allSecrets {
		if strings.Contains(text, s) {
			e.t.Errorf("%s contains the secret %q", where, s)
		}
	}
}

// keyHeader returns the Authorization value for a secret.
func keyHeader(secret string) string { return "Key " + secret }

// withKey returns a context whose outgoing gRPC metadata carries the key.
func withKey(secret string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Key "+secret)
}

// statusCode returns status.code of a REST body as a number; protojson
// writes enums by name, so the name is mapped back.
func (r restResponse) statusCode(t testing.TB) pb.StatusCode {
	t.Helper()
	st, ok := r.json["status"].(map[string]any)
	if !ok {
		t.Fatalf("response has no status object: %s", r.raw)
	}
	name, _ := st["code"].(string)
	code, ok := pb.StatusCode_value[name]
	if !ok {
		t.Fatalf("status.code %v is not a known name: %s", st["code"], r.raw)
	}
	return pb.StatusCode(code)
}

func (r restResponse) details() string {
	st, _ := r.json["status"].(map[string]any)
	d, _ := st["details"].(string)
	return d
}

// requireStatus checks the HTTP status, the Clarifai code, the HTTP status
// echoed in the body and the presence of a req_id.
func (r restResponse) requireStatus(t testing.TB, httpCode int, code pb.StatusCode) {
	t.Helper()
	if r.code != httpCode {
		t.Errorf("HTTP status = %d, want %d; body: %s", r.code, httpCode, r.raw)
	}
	if got := r.statusCode(t); got != code {
		t.Errorf("status.code = %s, want %s; body: %s", got, code, r.raw)
	}
	st := r.json["status"].(map[string]any)
	if got, _ := st["http_status_code"].(float64); int(got) != httpCode {
		t.Errorf("status.http_status_code = %v, want %d", st["http_status_code"], httpCode)
	}
	if id, _ := st["req_id"].(string); len(id) != 32 {
		t.Errorf("status.req_id = %q, want 32 hex characters", id)
	}
}

func (r restResponse) list(t testing.TB, field string) []map[string]any {
	t.Helper()
	raw, ok := r.json[field].([]any)
	if !ok {
		t.Fatalf("response has no list %q: %s", field, r.raw)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i] = v.(map[string]any)
	}
	return out
}

// field walks nested objects of a decoded JSON value by keys.
func field(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// collectorJSON returns a PostCollectors item like Clarifai's public curl
// example, with the given id and post inputs key.
func collectorJSON(id, postKey string) string {
	return `{"id":"` + id + `","description":"collect from general",` +
		`"pre_queue_random_sample":0.1,` +
		`"collector_source":{"api_post_model_outputs_collector_source":{` +
		`"model_user_id":"clarifai","model_app_id":"main","model_id":"general-image-recognition",` +
		`"post_inputs_key_id":"` + postKey + `"}}}`
}

const collectorsPath = "/v2/users/me/apps/dest/collectors"

func (e *testEnv) postCollectors(items ...string) restResponse {
	e.t.Helper()
	return e.do(http.MethodPost, collectorsPath, keyHeader(alicePAT), `{"collectors":[`+strings.Join(items, ",")+`]}`)
}

// counterValue returns collectord_api_requests_total for one rpc and code.
func (e *testEnv) counterValue(rpc, code string) int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatalf("collect metrics: %v", err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "collectord_api_requests_total" {
				continue
			}
			sum := m.Data.(metricdata.Sum[int64])
			for _, dp := range sum.DataPoints {
				r, _ := dp.Attributes.Value("rpc")
				c, _ := dp.Attributes.Value("code")
				if r.AsString() == rpc && c.AsString() == code {
					total += dp.Value
				}
			}
		}
	}
	return total
}

func apiConfigMaxBytes(n int64) api.Config { return api.Config{MaxRequestBytes: n} }

// identityKey returns a key that may add inputs to one app.
func identityKey(id, secret, userID, appID string) identity.Key {
	return identity.Key{
		ID: id, Hash: identity.HashKey(secret), UserID: userID, AppID: appID,
		Scopes: []string{identity.ScopeInputsAdd},
	}
}
