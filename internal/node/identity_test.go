package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/node"

	// The JWT bootstrap's extensions must be registered for LoadConfig to
	// resolve their type URLs.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
)

const (
	// carolClarifaiKey is a key that only the introspection endpoint accepts.
	carolClarifaiKey = "5f4dcc3b5aa765d61d8327deb882cf99"
	predictPath      = "/v2/users/demo/apps/main/models/text-stats/outputs"
)

// identityNode is a node whose callers come from verified JWTs, API keys and
// an introspection endpoint, with the trusted header off.
type identityNode struct {
	t       *testing.T
	dataDir string
	addrs   node.Addrs
	logs    *syncBuffer
	client  *envoytest.Client
	keys    map[string]string // user to local key
}

func startIdentityNode(t *testing.T) *identityNode {
	t.Helper()
	n := &identityNode{t: t, dataDir: t.TempDir(), logs: &syncBuffer{}, keys: map[string]string{}}

	cfg := config.Default()
	cfg.DataDir = n.dataDir
	cfg.ExtProc.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.GRPCListen = ""
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Capture.Assemblers = 1
	cfg.Identity.JWT.PayloadKey = "jwt_payload"
	cfg.Identity.Introspection.BaseURL = startClarifaiUsers(t, map[string]string{carolClarifaiKey: "carol"})
	// The first predict with carol's key waits for the endpoint; a loaded
	// test machine must not turn that into a missed capture.
	cfg.Identity.Introspection.Wait = config.Duration(10 * time.Second)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("start collectord: %v", err)
	}
	n.addrs = started.Addrs()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := started.Close(ctx); err != nil {
			t.Errorf("close collectord: %v", err)
		}
		if t.Failed() {
			t.Logf("collectord logs:\n%s", n.logs.String())
		}
	})

	envoyCfg, err := envoytest.LoadConfig("../../deploy/envoy/envoy-jwt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	envoyCfg.MessageTimeout = 20 * time.Second
	n.client, err = envoytest.Dial(n.addrs.ExtProc, envoyCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.client.Close() })
	return n
}

// startClarifaiUsers serves GET /v2/users/me as Clarifai documents it: 200
// with status SUCCESS and the key's user, or 401 with CONN_KEY_NOT_FOUND.
func startClarifaiUsers(t *testing.T, users map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Key ")
		user, ok := users[key]
		if r.URL.Path != "/v2/users/me" || !ok {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"status":{"code":11009,"description":"API key not found"}}`)
			return
		}
		fmt.Fprintf(w, `{"status":{"code":10000,"description":"Ok"},"user":{"id":%q}}`, user)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// createKey makes a local key for user with the CLI.
func (n *identityNode) createKey(user string) string {
	n.t.Helper()
	var stdout, stderr bytes.Buffer
	args := []string{"keys", "create", "--data-dir", n.dataDir, "--user", user}
	if err := cli.Main(context.Background(), args, &stdout, &stderr); err != nil {
		n.t.Fatalf("keys create: %v: %s", err, stderr.String())
	}
	key := strings.TrimSpace(stdout.String())
	n.keys[user] = key
	return key
}

// api sends a REST request with user's key and fails unless it returns 200.
func (n *identityNode) api(method, path, user string, body any) map[string]any {
	n.t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			n.t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}

	req, err := http.NewRequest(method, "http://"+n.addrs.API+path, reader)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+n.keys[user])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}

	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		n.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
	}
	return out
}

// collectOwnPredicts gives user an app "inbox" and a collector that copies
// every text-stats predict user makes into it.
func (n *identityNode) collectOwnPredicts(user string) {
	n.t.Helper()
	n.createKey(user)
	n.api("POST", "/v2/users/me/apps", user, map[string]any{"apps": []any{map[string]any{"id": "inbox"}}})
	source := map[string]any{
		"model_user_id":      "demo",
		"model_app_id":       "main",
		"model_id":           "text-stats",
		"caller_user_id":     user,
		"post_inputs_key_id": n.keys[user],
	}
	n.api("POST", "/v2/users/me/apps/inbox/collectors", user, map[string]any{"collectors": []any{map[string]any{
		"id":                      "own-predicts",
		"pre_queue_random_sample": 1,
		"collector_source":        map[string]any{"api_post_model_outputs_collector_source": source},
	}}})
}

// inputs returns the markers of the inputs in user's inbox.
func (n *identityNode) inputs(user string) []string {
	n.t.Helper()
	out := n.api("GET", "/v2/users/me/apps/inbox/inputs?per_page=1000", user, nil)
	var markers []string
	items, _ := out["inputs"].([]any)
	for _, item := range items {
		data, _ := item.(map[string]any)["data"].(map[string]any)
		meta, _ := data["metadata"].(map[string]any)
		marker, _ := meta["marker"].(string)
		markers = append(markers, marker)
	}
	slices.Sort(markers)
	return markers
}

// waitInputs polls user's inbox until it holds want (sorted markers).
func (n *identityNode) waitInputs(user string, want []string) {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := n.inputs(user)
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			n.t.Fatalf("%s's inbox holds %q, want %q", user, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// predict plays one REST text predict through ext_proc. Its input carries
// marker in its metadata.
func (n *identityNode) predict(marker string, metadata map[string]*structpb.Struct, headers ...envoytest.Header) *envoytest.Result {
	n.t.Helper()
	body, err := json.Marshal(map[string]any{"inputs": []any{map[string]any{"data": map[string]any{
		"text":     map[string]any{"raw": "a predict named " + marker},
		"metadata": map[string]any{"marker": marker},
	}}}})
	if err != nil {
		n.t.Fatal(err)
	}
	answer := []byte(`{"status":{"code":10000,"description":"Ok"},"outputs":[{"id":"o1","status":{"code":10000},` +
		`"model":{"id":"text-stats","user_id":"demo","app_id":"main","model_version":{"id":"1"}},` +
		`"data":{"concepts":[{"id":"question","name":"question","value":0.9}]}}]}`)

	headers = append(headers, envoytest.Header{Name: "content-length", Value: fmt.Sprint(len(body))})
	ex := &envoytest.Exchange{
		RequestHeaders:  envoytest.Request("POST", predictPath, "model.local", "application/json", headers...),
		RequestBody:     envoytest.Chunks(body, 2),
		ResponseHeaders: envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    [][]byte{answer},
		Metadata:        metadata,
	}
	res := n.client.Play(context.Background(), ex)
	if len(res.Violations) > 0 || !res.Succeeded || res.FailedOpen {
		n.t.Fatalf("predict %s: succeeded=%v failed_open=%v violations=%v", marker, res.Succeeded, res.FailedOpen, res.Violations)
	}
	return res
}

// jwtPayload is the dynamic metadata Envoy's jwt_authn filter writes for a
// verified token whose sub claim is user.
func jwtPayload(t *testing.T, user string) map[string]*structpb.Struct {
	t.Helper()
	payload, err := structpb.NewStruct(map[string]any{
		"jwt_payload": map[string]any{"iss": "https://issuer.example.com", "sub": user, "exp": 1901281058},
	})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": payload}
}

// sentOnlyHeaders reports whether the processor took the fast path: it saw
// the request headers and asked for nothing else, so it cannot capture.
func sentOnlyHeaders(r *envoytest.Result) bool {
	return slices.Equal(r.SentPhases(), []envoytest.Phase{envoytest.PhaseRequestHeaders})
}

func TestNode_ForgedCallerHeaderCollectsNothing(t *testing.T) {
	n := startIdentityNode(t)
	n.collectOwnPredicts("alice")
	n.collectOwnPredicts("bob")

	forged := []envoytest.Header{{Name: "x-collectord-caller", Value: "alice"}, {Name: "x-collectord-user", Value: "alice"}}
	res := n.predict("forged", nil, forged...)
	if !sentOnlyHeaders(res) {
		t.Errorf("forged caller headers: the processor asked for %v, want the request headers only", res.SentPhases())
	}
	res = n.predict("forged-bad-key", nil, append(forged, envoytest.Header{Name: "authorization", Value: "Key ffffffffffffffffffffffffffffffff"})...)
	if !sentOnlyHeaders(res) {
		t.Errorf("forged caller headers with a rejected key: the processor asked for %v, want the request headers only", res.SentPhases())
	}

	// bob's verified JWT decides, whatever the headers claim.
	n.predict("bob-jwt", jwtPayload(t, "bob"), forged...)
	n.waitInputs("bob", []string{"bob-jwt"})
	if got := n.inputs("alice"); len(got) != 0 {
		t.Errorf("alice's inbox holds %q, want nothing: no predict was verified as hers", got)
	}
}

func TestNode_JWTCallerCaptures(t *testing.T) {
	n := startIdentityNode(t)
	n.collectOwnPredicts("alice")
	n.collectOwnPredicts("bob")

	// The JWT names bob although the API key is alice's.
	res := n.predict("bob-over-key", jwtPayload(t, "bob"), envoytest.Header{Name: "authorization", Value: "Key " + n.keys["alice"]})
	if sentOnlyHeaders(res) {
		t.Fatal("the processor took the fast path for bob's verified predict")
	}
	// Without a JWT, alice's key names her.
	n.predict("alice-key", nil, envoytest.Header{Name: "authorization", Value: "Key " + n.keys["alice"]})

	n.waitInputs("bob", []string{"bob-over-key"})
	n.waitInputs("alice", []string{"alice-key"})
}

func TestNode_IntrospectedKeyCaptures(t *testing.T) {
	n := startIdentityNode(t)
	n.collectOwnPredicts("carol")

	for _, marker := range []string{"carol-1", "carol-2"} {
		n.predict(marker, nil, envoytest.Header{Name: "authorization", Value: "Key " + carolClarifaiKey})
	}
	n.waitInputs("carol", []string{"carol-1", "carol-2"})

	if strings.Contains(n.logs.String(), carolClarifaiKey) {
		t.Error("collectord logged the introspected key")
	}
}

// syncBuffer collects log output from several goroutines.
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
