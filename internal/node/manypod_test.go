package node_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/ingest"
	"github.com/collectord/collectord/internal/node"
	"github.com/collectord/collectord/internal/store/storetest"
)

// externalNATS is the machine's NATS server with JetStream, which the
// many-pod tests share with other tests: each run uses its own prefix.
func externalNATS(t *testing.T) string {
	t.Helper()
	url := os.Getenv("COLLECTORD_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	host := strings.TrimPrefix(url, "nats://")
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		t.Fatalf("NATS not reachable at %s: start it (nats-server -js) or set COLLECTORD_TEST_NATS_URL: %v", url, err)
	}
	conn.Close()
	return url
}

// TestManyPods_CaptureAcrossRoles runs the many-pod mode on the machine's
// PostgreSQL and NATS: one API process, two sidecars and two ingest workers.
// Predicts through both sidecars land in the app exactly once each.
func TestManyPods_CaptureAcrossRoles(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	pgURL := storetest.WithSearchPath(t, dsn, schema)
	natsURL := externalNATS(t)
	keyFile := writeSecretKeyFile(t)
	prefix := "collectordtest_" + randomHex(t, 6)
	t.Cleanup(func() { deleteStreams(t, natsURL, prefix) })

	start := func(roles node.Roles) *node.Node {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Store.PostgresURL = pgURL
		cfg.Secrets.KeyFile = keyFile
		cfg.NATS.URL = natsURL
		cfg.NATS.Prefix = prefix
		cfg.ExtProc.Listen = "127.0.0.1:0"
		cfg.API.Listen = "127.0.0.1:0"
		cfg.API.GRPCListen = ""
		cfg.Admin.Listen = "127.0.0.1:0"
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		logs := &logBuffer{}
		n, err := node.StartRoles(context.Background(), cfg, roles, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatalf("start %+v: %v\n%s", roles, err, logs.String())
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.Close(ctx); err != nil {
				t.Errorf("close %+v: %v", roles, err)
			}
			if t.Failed() {
				t.Logf("logs of %+v:\n%s", roles, logs.String())
			}
		})
		return n
	}

	apiNode := start(node.Roles{API: true})
	sidecars := []*node.Node{start(node.Roles{Capture: true}), start(node.Roles{Capture: true})}
	workers := []*node.Node{start(node.Roles{Ingest: true}), start(node.Roles{Ingest: true})}

	if apiNode.Addrs().ExtProc != "" || workers[0].Addrs().API != "" || sidecars[0].Addrs().API != "" {
		t.Fatalf("a role opened a listener it does not own: api %+v, worker %+v, sidecar %+v",
			apiNode.Addrs(), workers[0].Addrs(), sidecars[0].Addrs())
	}

	owner := createKey(t, pgURL, "alice")
	caller := createKey(t, pgURL, "bob")
	api := &testNode{node: apiNode}
	api.api(t, http.MethodPost, "/v2/users/me/apps", owner, `{"apps":[{"id":"dest"}]}`)
	api.api(t, http.MethodPost, "/v2/users/me/apps/dest/collectors", owner, mustJSON(t, map[string]any{
		"collectors": []any{map[string]any{
			"id": "all", "pre_queue_random_sample": 1,
			"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
				"model_user_id": "demo", "model_app_id": "main", "model_id": "text",
				"caller_user_id": "bob", "post_inputs_key_id": owner,
			}},
		}},
	}))

	const perSidecar = 50
	for i, sidecar := range sidecars {
		client, err := envoytest.Dial(sidecar.Addrs().ExtProc, envoytest.Config{
			AllowModeOverride: true, FailureModeAllow: true, MessageTimeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		for j := range perSidecar {
			body := mustJSON(t, map[string]any{"inputs": []any{map[string]any{
				"data": map[string]any{"text": map[string]any{"raw": fmt.Sprintf("sidecar %d predict %d", i, j)}},
			}}})
			res := client.Play(context.Background(), &envoytest.Exchange{
				RequestHeaders: envoytest.Request("POST", "/v2/users/demo/apps/main/models/text/outputs", "model", "application/json",
					envoytest.Header{Name: "authorization", Value: "Key " + caller},
					envoytest.Header{Name: "x-request-id", Value: fmt.Sprintf("s%d-%d", i, j)}),
				RequestBody:     [][]byte{[]byte(body)},
				ResponseHeaders: envoytest.Response(200),
			})
			if !res.Succeeded || res.FailedOpen || len(res.Violations) > 0 {
				t.Fatalf("predict %d through sidecar %d: %v", j, i, res.Violations)
			}
		}
	}

	want := perSidecar * len(sidecars)
	texts := waitAppInputs(t, apiNode.Addrs().API, owner, want)
	seen := map[string]bool{}
	for _, text := range texts {
		if seen[text] {
			t.Errorf("input %q stored twice", text)
		}
		seen[text] = true
	}
}

// waitAppInputs polls ListInputs on the API until the app holds want inputs
// and returns their texts; it fails on more, or after 60 s.
func waitAppInputs(t *testing.T, apiAddr, key string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, err := http.NewRequest(http.MethodGet, "http://"+apiAddr+"/v2/users/me/apps/dest/inputs?per_page=1000", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Key "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Inputs []struct {
				Data struct {
					Text struct {
						Raw string `json:"raw"`
					} `json:"text"`
				} `json:"data"`
			} `json:"inputs"`
		}
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("ListInputs: %v: %s", err, data)
		}
		if len(out.Inputs) > want {
			t.Fatalf("app holds %d inputs, want %d", len(out.Inputs), want)
		}
		if len(out.Inputs) == want {
			texts := make([]string, 0, want)
			for _, in := range out.Inputs {
				texts = append(texts, in.Data.Text.Raw)
			}
			return texts
		}
		if time.Now().After(deadline) {
			t.Fatalf("app holds %d inputs after 60 s, want %d", len(out.Inputs), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deleteStreams removes the test's streams from the shared NATS server.
func deleteStreams(t *testing.T, natsURL, prefix string) {
	conn, err := ingest.Connect(ingest.ExternalConfig{URL: natsURL})
	if err != nil {
		t.Errorf("connect to delete streams: %v", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := ingest.OpenQueue(ctx, conn, ingest.QueueConfig{Prefix: prefix})
	if err != nil {
		t.Errorf("open queue to delete streams: %v", err)
		return
	}
	if err := q.DeleteStreams(ctx); err != nil {
		t.Errorf("delete streams: %v", err)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
