package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/node"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Secrets a predict client sends alongside its inputs. None of them may be
// kept anywhere.
const (
	leakSessionToken = "session-token-5e1f0c7a9b3d2e4f6a8c"
	leakCookieValue  = "cookie-value-8d7c6b5a4f3e2d1c0b9a"
	leakBodyAPIKey   = "body-api-key-1a2b3c4d5e6f7a8b9c0d"
)

// leakNode is one collectord node with debug logs captured, plus every
// response body the test received from it.
type leakNode struct {
	t       *testing.T
	dataDir string
	node    *node.Node
	addrs   node.Addrs
	logs    *syncBuffer
	bodies  []string
}

// startLeakNode starts a node that delivers to its local apps, or to the
// Clarifai-compatible API at remoteURL when it is not empty.
func startLeakNode(t *testing.T, remoteURL string) *leakNode {
	t.Helper()
	ln := &leakNode{t: t, dataDir: t.TempDir(), logs: &syncBuffer{}}

	cfg := config.Default()
	cfg.DataDir = ln.dataDir
	cfg.ExtProc.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.GRPCListen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Capture.Assemblers = 1
	cfg.Log.Level = "debug"
	cfg.Ingest.RemoteBaseURL = remoteURL
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(ln.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	n, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("start collectord: %v", err)
	}
	ln.node, ln.addrs = n, n.Addrs()
	t.Cleanup(func() {
		ln.close()
		if t.Failed() {
			t.Logf("collectord logs:\n%s", ln.logs.String())
		}
	})
	return ln
}

// close drains the node. It runs once, whether the test or the cleanup
// calls it first.
func (ln *leakNode) close() {
	if ln.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ln.node.Close(ctx); err != nil {
		ln.t.Errorf("close collectord: %v", err)
	}
	ln.node = nil
}

// createKey runs `collectord keys create` and returns the printed key.
func (ln *leakNode) createKey(user string, flags ...string) string {
	ln.t.Helper()
	args := append([]string{"keys", "create", "--data-dir", ln.dataDir, "--user", user}, flags...)
	var stdout, stderr bytes.Buffer
	if err := cli.Main(context.Background(), args, &stdout, &stderr); err != nil {
		ln.t.Fatalf("keys create: %v: %s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// rest sends one REST request, keeps the response body for the final search
// and decodes it.
func (ln *leakNode) rest(method, path, key string, body any) map[string]any {
	ln.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			ln.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+ln.addrs.API+path, rd)
	if err != nil {
		ln.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ln.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		ln.t.Fatal(err)
	}
	ln.bodies = append(ln.bodies, fmt.Sprintf("%s %s: %s", method, path, data))

	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		ln.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
	}
	if code := field(out, "status", "code"); code != "SUCCESS" || resp.StatusCode != http.StatusOK {
		ln.t.Fatalf("%s %s: HTTP %d, status %v: %s", method, path, resp.StatusCode, code, data)
	}
	return out
}

// predict plays one REST predict through the ext_proc server with the
// client's credentials in headers and in the body's top level.
func (ln *leakNode) predict(client *envoytest.Client, callerKey, text string) {
	ln.t.Helper()
	body, err := json.Marshal(map[string]any{
		"api_key": leakBodyAPIKey,
		"inputs":  []any{map[string]any{"data": map[string]any{"text": map[string]any{"raw": text}}}},
	})
	if err != nil {
		ln.t.Fatal(err)
	}
	answer := []byte(`{"status":{"code":10000,"description":"Ok"},"outputs":[{"id":"o1","status":{"code":10000},` +
		`"model":{"id":"text-stats","user_id":"demo","app_id":"main","model_version":{"id":"1"}},` +
		`"data":{"concepts":[{"id":"short","name":"short","value":0.9}]}}]}`)

	ex := &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", "/v2/users/demo/apps/main/models/text-stats/outputs", "model.local", "application/json",
			envoytest.Header{Name: "authorization", Value: "Key " + callerKey},
			envoytest.Header{Name: "x-clarifai-session-token", Value: leakSessionToken},
			envoytest.Header{Name: "cookie", Value: "session=" + leakCookieValue + "; theme=dark"},
			envoytest.Header{Name: "content-length", Value: fmt.Sprint(len(body))},
		),
		RequestBody:     envoytest.Chunks(body, 3),
		ResponseHeaders: envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    envoytest.Chunks(answer, 2),
	}
	res := client.Play(context.Background(), ex)
	if len(res.Violations) > 0 || !res.Succeeded || res.FailedOpen {
		ln.t.Fatalf("exchange through ext_proc: succeeded=%v failed_open=%v violations=%v", res.Succeeded, res.FailedOpen, res.Violations)
	}
}

// waitInputs polls the app until it holds want inputs and returns them.
func (ln *leakNode) waitInputs(key, appID string, want int) []any {
	ln.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := ln.rest("GET", "/v2/users/me/apps/"+appID+"/inputs?per_page=1000", key, nil)
		inputs, _ := out["inputs"].([]any)
		if len(inputs) >= want {
			return inputs
		}
		if time.Now().After(deadline) {
			ln.t.Fatalf("app %s holds %d inputs after 60 s, want %d", appID, len(inputs), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ln *leakNode) get(url string) string {
	ln.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		ln.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		ln.t.Fatal(err)
	}
	return string(data)
}

// grpcListCollectors reads the collectors over the gRPC API and returns the
// response as JSON.
func (ln *leakNode) grpcListCollectors(key, appID string) string {
	ln.t.Helper()
	conn, err := grpc.NewClient(ln.addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		ln.t.Fatal(err)
	}
	defer conn.Close()
	resp, err := pb.NewV2Client(conn).ListCollectors(withKey(key), &pb.ListCollectorsRequest{
		UserAppId: &pb.UserAppIDSet{UserId: "me", AppId: appID},
	})
	if err != nil {
		ln.t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != pb.StatusCode_SUCCESS || len(resp.GetCollectors()) != 1 {
		ln.t.Fatalf("gRPC ListCollectors = %v", resp)
	}
	return protojson.Format(resp)
}

// leakKeys are the API keys of a leak test.
type leakKeys struct {
	owner, post, caller string
}

// setupKeys creates the keys, the app "training" and the collector "leaks"
// that copies bob's predicts of demo/main/text-stats into it.
func (ln *leakNode) setup() (leakKeys, map[string]string) {
	keys := leakKeys{
		owner:  ln.createKey("alice"),
		post:   ln.createKey("alice", "--app", "training", "--scopes", "Inputs_Add"),
		caller: ln.createKey("bob", "--scopes", "Predict"),
	}
	secrets := map[string]string{
		"owner key": keys.owner, "post-inputs key": keys.post, "caller key": keys.caller,
		"session token": leakSessionToken, "cookie value": leakCookieValue, "body api_key": leakBodyAPIKey,
	}
	ln.rest("POST", "/v2/users/me/apps", keys.owner, map[string]any{"apps": []any{map[string]any{"id": "training"}}})
	return keys, secrets
}

// createCollector creates the collector "leaks" and returns the masked
// post_inputs_key_id of the response.
func (ln *leakNode) createCollector(keys leakKeys) string {
	ln.t.Helper()
	source := map[string]any{
		"model_user_id": "demo", "model_app_id": "main", "model_id": "text-stats",
		"caller_user_id": "bob", "post_inputs_key_id": keys.post,
	}
	created := ln.rest("POST", "/v2/users/me/apps/training/collectors", keys.owner, map[string]any{"collectors": []any{map[string]any{
		"id": "leaks", "pre_queue_random_sample": 1,
		"collector_source": map[string]any{"api_post_model_outputs_collector_source": source},
	}}})
	masked, _ := field(created["collectors"].([]any)[0], "collector_source", "api_post_model_outputs_collector_source", "post_inputs_key_id").(string)
	if want := "****" + keys.post[len(keys.post)-4:]; masked != want {
		ln.t.Errorf("post_inputs_key_id in the response = %q, want %q", masked, want)
	}
	return masked
}

// TestNode_NoSecretLeaks runs a whole node with debug logs, creates keys, an
// app and a collector, captures predicts that carry credentials, and then
// searches every place the product writes for every secret.
func TestNode_NoSecretLeaks(t *testing.T) {
	ln := startLeakNode(t, "")
	keys, secrets := ln.setup()
	ownerKey, callerKey := keys.owner, keys.caller

	masked := ln.createCollector(keys)

	// Read the collector every way the API offers, and patch it with the
	// masked key, which keeps the stored one.
	ln.rest("GET", "/v2/users/me/apps/training/collectors/leaks", ownerKey, nil)
	ln.rest("GET", "/v2/users/me/apps/training/collectors", ownerKey, nil)
	patched := map[string]any{"action": "overwrite", "collectors": []any{map[string]any{
		"id": "leaks", "description": "patched", "pre_queue_random_sample": 1,
		"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
			"model_user_id": "demo", "model_app_id": "main", "model_id": "text-stats",
			"caller_user_id": "bob", "post_inputs_key_id": masked,
		}},
	}}}
	ln.rest("PATCH", "/v2/users/me/apps/training/collectors", ownerKey, patched)
	grpcList := ln.grpcListCollectors(ownerKey, "training")
	ln.rest("GET", "/v2/users/me/apps", ownerKey, nil)

	client, err := envoytest.Dial(ln.addrs.ExtProc, requireEnvoyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const predicts = 3
	for i := range predicts {
		ln.predict(client, callerKey, fmt.Sprintf("leak test input %d", i))
	}
	inputs := ln.waitInputs(ownerKey, "training", predicts)
	if len(inputs) != predicts {
		t.Errorf("the app holds %d inputs, want %d", len(inputs), predicts)
	}

	audit := ln.rest("GET", "/v2/users/me/apps/training/audit", ownerKey, nil)
	if entries, _ := audit["audit_entries"].([]any); len(entries) < 2 {
		t.Errorf("the audit log has %d entries, want the collector's create and update at least", len(entries))
	}
	metrics := ln.get("http://" + ln.addrs.Admin + "/metrics")
	if !strings.Contains(metrics, "collectord_api_requests_total") {
		t.Errorf("the /metrics page lacks collectord_api_requests_total, so searching it proves nothing")
	}

	// Drain, so every log line is written and every file is flushed.
	ln.close()
	logs := ln.logs.String()
	if !strings.Contains(logs, `level=DEBUG msg="api request"`) {
		t.Errorf("no debug log line of the API was captured, so searching the logs proves little")
	}

	places := map[string]string{
		"logs":                logs,
		"/metrics":            metrics,
		"API responses":       strings.Join(ln.bodies, "\n"),
		"gRPC ListCollectors": grpcList,
	}
	for name, text := range places {
		for what, value := range secrets {
			if strings.Contains(text, value) {
				t.Errorf("%s contain the %s", name, what)
			}
		}
	}
	requireCiphertextOnDisk(t, ln.dataDir)
	requireNoSecretFiles(t, ln.dataDir, secrets)
}

func requireEnvoyConfig(t *testing.T) envoytest.Config {
	t.Helper()
	cfg, err := envoytest.LoadConfig("../../deploy/envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// requireCiphertextOnDisk checks that the SQLite files hold an encrypted
// post-inputs key, so the search for the clear key is meaningful.
func requireCiphertextOnDisk(t *testing.T, dataDir string) {
	t.Helper()
	var found bool
	for _, name := range []string{"collectord.db", "collectord.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dataDir, name))
		if err == nil && bytes.Contains(data, []byte("enc:v1:")) {
			found = true
		}
	}
	if !found {
		t.Errorf("no encrypted post-inputs key in the SQLite files")
	}
}

// requireNoSecretFiles searches every file under the data directory (the
// SQLite database and its WAL, the JetStream store, input blobs) for every
// secret. secret.key holds the data-encryption key and is skipped.
func requireNoSecretFiles(t *testing.T, dataDir string, secrets map[string]string) {
	t.Helper()
	var searched []string
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "secret.key" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, path)
		searched = append(searched, rel)
		for what, value := range secrets {
			if bytes.Contains(data, []byte(value)) {
				t.Errorf("%s contains the %s", rel, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var jetstream bool
	for _, rel := range searched {
		jetstream = jetstream || strings.HasPrefix(rel, "jetstream"+string(filepath.Separator))
	}
	if !jetstream {
		t.Errorf("no JetStream file was searched; searched %v", searched)
	}
}

// fakeClarifai is the remote destination of TestNode_NoSecretLeaksRemote: a
// Clarifai-compatible PostInputs endpoint that rejects every key with HTTP
// 401, as Clarifai does for an unknown key, and keeps what it received.
type fakeClarifai struct {
	mu             sync.Mutex
	authorizations []string
	bodies         []string
}

func (f *fakeClarifai) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.authorizations = append(f.authorizations, r.Header.Get("Authorization"))
	f.bodies = append(f.bodies, string(body))
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintf(w, `{"status":{"code":%d,"description":"API key not found"}}`, int32(pb.StatusCode_CONN_KEY_NOT_FOUND))
}

func (f *fakeClarifai) received() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.authorizations), slices.Clone(f.bodies)
}

// TestNode_NoSecretLeaksRemote delivers to a remote API that rejects the
// key, so every record ends in the dead-letter stream, which keeps it on
// disk. The remote must see the collector's post-inputs key alone, and the
// dead letters must carry no secret.
func TestNode_NoSecretLeaksRemote(t *testing.T) {
	fake := &fakeClarifai{}
	remote := httptest.NewServer(fake)
	defer remote.Close()

	ln := startLeakNode(t, remote.URL)
	keys, secrets := ln.setup()
	ln.createCollector(keys)

	client, err := envoytest.Dial(ln.addrs.ExtProc, requireEnvoyConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const marker = "dead letter marker 7b1e"
	ln.predict(client, keys.caller, marker)

	deadline := time.Now().Add(60 * time.Second)
	for ln.metricSum("collectord_captures_total", `outcome="failed"`, `reason="unauthorized"`) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the record was not dead-lettered within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	authorizations, bodies := fake.received()
	if len(authorizations) == 0 {
		t.Fatal("the remote API received no request")
	}
	for _, auth := range authorizations {
		if auth != "Key "+keys.post {
			t.Errorf("the remote API received Authorization %q, want the collector's post-inputs key", auth)
		}
	}
	delete(secrets, "post-inputs key") // the remote is where this key goes
	for _, body := range bodies {
		for what, value := range secrets {
			if strings.Contains(body, value) {
				t.Errorf("a PostInputs body sent to the remote API contains the %s", what)
			}
		}
	}
	secrets["post-inputs key"] = keys.post

	ln.close()
	if !jetstreamContains(t, ln.dataDir, marker) {
		t.Fatalf("the dead letter is not in the JetStream files, so searching them proves nothing")
	}
	requireNoSecretFiles(t, ln.dataDir, secrets)
	for what, value := range secrets {
		if strings.Contains(ln.logs.String(), value) {
			t.Errorf("logs contain the %s", what)
		}
	}
}

// metricSum returns the sum of the samples of a metric on /metrics whose
// line contains every given label.
func (ln *leakNode) metricSum(name string, labels ...string) float64 {
	ln.t.Helper()
	var sum float64
	for _, line := range strings.Split(ln.get("http://"+ln.addrs.Admin+"/metrics"), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		matched := true
		for _, l := range labels {
			matched = matched && strings.Contains(line, l)
		}
		if !matched {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

func jetstreamContains(t *testing.T, dataDir, text string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(filepath.Join(dataDir, "jetstream"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(data, []byte(text))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
