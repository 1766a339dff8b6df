package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/node"
	"github.com/collectord/collectord/internal/store/storetest"
)

// changeBound is how soon a collector change made through one node must
// take effect on every other node of a PostgreSQL deployment.
const changeBound = time.Second

// pollInterval is how often the test looks at the other node's table.
const pollInterval = 20 * time.Millisecond

var sourceModel = collector.ModelRef{UserID: "m", AppID: "main", ModelID: "general"}

// TestNodes_SharedPostgres runs two nodes on one PostgreSQL schema and
// changes a collector through node A's REST API: each change must reach
// node B's collector table within changeBound, although B cached the old
// result and its cache TTL is far longer.
func TestNodes_SharedPostgres(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	url := storetest.WithSearchPath(t, dsn, schema)
	keyFile := writeSecretKeyFile(t)

	a := startPostgresNode(t, url, keyFile)
	b := startPostgresNode(t, url, keyFile)
	key := createKey(t, url, "alice")

	a.api(t, http.MethodPost, "/v2/users/me/apps", key, `{"apps":[{"id":"dest"}]}`)
	const collectorsPath = "/v2/users/me/apps/dest/collectors"
	collectorBody := func(action string, sample float64, status string) string {
		item := map[string]any{
			"id":                      "c1",
			"pre_queue_random_sample": sample,
			"status":                  map[string]any{"code": status},
			"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
				"model_user_id": sourceModel.UserID, "model_app_id": sourceModel.AppID,
				"model_id": sourceModel.ModelID, "post_inputs_key_id": key,
			}},
		}
		body := map[string]any{"collectors": []any{item}}
		if action != "" {
			body["action"] = action
		}
		return mustJSON(t, body)
	}

	steps := []struct {
		name   string
		method string
		body   string
		// want is the RandomSample of c1 in node B's candidates, or -1 when
		// c1 must not be a candidate.
		want float32
	}{
		{"create", http.MethodPost, collectorBody("", 0.25, "COLLECTOR_ACTIVE"), 0.25},
		{"patch", http.MethodPatch, collectorBody("overwrite", 0.5, "COLLECTOR_ACTIVE"), 0.5},
		{"pause", http.MethodPatch, collectorBody("overwrite", 0.5, "COLLECTOR_INACTIVE"), -1},
		{"resume", http.MethodPatch, collectorBody("overwrite", 0.75, "COLLECTOR_ACTIVE"), 0.75},
		{"delete", http.MethodDelete, `{"ids":["c1"]}`, -1},
	}
	for _, step := range steps {
		// B caches its current result first, so only a change notification
		// can make it read the store again within the bound.
		b.cacheCandidates(t)

		a.api(t, step.method, collectorsPath, key, step.body)
		changed := time.Now()

		elapsed, ok := b.waitSample(t, step.want, changed.Add(changeBound))
		if !ok {
			t.Fatalf("%s: node B still showed the previous state of c1 %v after the change on node A; want the change within %v",
				step.name, elapsed, changeBound)
		}
		t.Logf("%s: visible on node B after %v", step.name, elapsed.Round(time.Millisecond))
	}
}

// testNode is one collectord node of the test.
type testNode struct {
	node *node.Node
	logs *logBuffer
}

func startPostgresNode(t *testing.T, postgresURL, keyFile string) *testNode {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Store.PostgresURL = postgresURL
	// Every node of a deployment decrypts the post-inputs keys the others
	// wrote, so they share one key file.
	cfg.Secrets.KeyFile = keyFile
	cfg.ExtProc.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.GRPCListen = ""
	cfg.Admin.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("start collectord: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close collectord: %v", err)
		}
		if t.Failed() {
			t.Logf("collectord logs:\n%s", logs.String())
		}
	})
	return &testNode{node: n, logs: logs}
}

// cacheCandidates looks up the source model once and waits until the
// result is in the table's cache.
func (n *testNode) cacheCandidates(t *testing.T) {
	t.Helper()
	table := n.node.CollectorTable()
	table.Candidates(context.Background(), "caller", sourceModel)
	table.Wait()
}

// waitSample polls the table until c1's RandomSample equals want (-1: c1
// absent) or the deadline passes, and returns how long it waited and
// whether it saw the wanted state.
func (n *testNode) waitSample(t *testing.T, want float32, deadline time.Time) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for {
		if sampleOf(n.node.CollectorTable().Candidates(context.Background(), "caller", sourceModel)) == want {
			return time.Since(start), true
		}
		if time.Now().After(deadline) {
			return time.Since(start), false
		}
		time.Sleep(pollInterval)
	}
}

func sampleOf(candidates []collector.Collector) float32 {
	for _, c := range candidates {
		if c.ID == "c1" {
			return c.RandomSample
		}
	}
	return -1
}

// api sends a REST request and fails the test unless it returns HTTP 200.
func (n *testNode) api(t *testing.T, method, path, key, body string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.node.Addrs().API+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+key)
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
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d, want 200: %s", method, path, resp.StatusCode, data)
	}
}

// createKey runs `collectord keys create --postgres-url` and returns the
// printed key.
func createKey(t *testing.T, postgresURL, user string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args := []string{"keys", "create", "--postgres-url", postgresURL, "--user", user}
	if err := cli.Main(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("keys create: %v: %s", err, stderr.String())
	}
	key := strings.TrimSpace(stdout.String())
	if key == "" || strings.ContainsAny(key, " \n") {
		t.Fatalf("keys create printed %q, want the key alone", stdout.String())
	}
	return key
}

// writeSecretKeyFile writes one random data-encryption key in hex.
func writeSecretKeyFile(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// logBuffer collects the log output of a node from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
