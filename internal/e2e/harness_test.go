package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/examples/demomodel/model"
	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/node"
)

// stack is one collectord node in front of the demo model, as a user runs
// it: `collectord run` with the interceptor, everything on random ports.
type stack struct {
	t       *testing.T
	dataDir string
	node    *node.Node
	addrs   node.Addrs
	model   string // the demo model's address
	logs    *syncBuffer
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

// stackOptions changes the defaults of a test stack.
type stackOptions struct {
	// assemblers defaults to 1, so finished exchanges are assembled in the
	// order they ended and a later marker predict proves earlier ones done.
	assemblers int
	logLevel   string
}

func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, dataDir: t.TempDir(), logs: &syncBuffer{}}

	s.model = startDemoModel(t)

	cfg := config.Default()
	cfg.DataDir = s.dataDir
	cfg.ExtProc.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.GRPCListen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.Proxy.Upstream = "http://" + s.model
	cfg.Capture.Assemblers = max(1, opts.assemblers)
	if opts.logLevel != "" {
		cfg.Log.Level = opts.logLevel
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: level}))

	n, err := node.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatalf("start collectord: %v", err)
	}
	s.node = n
	s.addrs = n.Addrs()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close collectord: %v", err)
		}
		if t.Failed() {
			t.Logf("collectord logs:\n%s", s.logs.String())
		}
	})
	return s
}

func startDemoModel(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := model.NewHTTPServer(model.New(model.Config{}).Handler(), slog.New(slog.DiscardHandler))
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// createKey runs `collectord keys create` against the stack's data directory
// and returns the printed key.
func (s *stack) createKey(user string, scopes ...string) string {
	s.t.Helper()
	args := []string{"keys", "create", "--data-dir", s.dataDir, "--user", user}
	if len(scopes) > 0 {
		args = append(args, "--scopes", strings.Join(scopes, ","))
	}
	var stdout, stderr bytes.Buffer
	if err := cli.Main(context.Background(), args, &stdout, &stderr); err != nil {
		s.t.Fatalf("keys create: %v: %s", err, stderr.String())
	}
	key := strings.TrimSpace(stdout.String())
	if key == "" || strings.ContainsAny(key, " \n") {
		s.t.Fatalf("keys create printed %q, want the key alone", stdout.String())
	}
	return key
}

// api sends a REST request to the management API and decodes the JSON
// response. It fails the test unless the HTTP status is wantStatus.
func (s *stack) api(method, path, key string, body any, wantStatus int) map[string]any {
	s.t.Helper()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+s.addrs.API+path, reader)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		s.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		s.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
	}
	return out
}

// collectorSpec is the part of a collector the tests vary.
type collectorSpec struct {
	id, caller, modelID, versionID string
	sample                         float64
}

// setup creates an app owned by owner and one collector per spec into it.
func (s *stack) setup(ownerKey, appID string, specs ...collectorSpec) {
	s.t.Helper()
	s.api("POST", "/v2/users/me/apps", ownerKey, map[string]any{"apps": []any{map[string]any{"id": appID}}}, 200)
	for _, c := range specs {
		source := map[string]any{
			"model_user_id":      model.DefaultUserID,
			"model_app_id":       model.DefaultAppID,
			"model_id":           c.modelID,
			"model_version_id":   c.versionID,
			"caller_user_id":     c.caller,
			"post_inputs_key_id": ownerKey,
		}
		body := map[string]any{"collectors": []any{map[string]any{
			"id":                      c.id,
			"pre_queue_random_sample": c.sample,
			"collector_source":        map[string]any{"api_post_model_outputs_collector_source": source},
		}}}
		s.api("POST", "/v2/users/me/apps/"+appID+"/collectors", ownerKey, body, 200)
	}
}

// listInputs returns every input of an app, page by page.
func (s *stack) listInputs(key, appID string) []map[string]any {
	s.t.Helper()
	var all []map[string]any
	for page := 1; ; page++ {
		out := s.api("GET", fmt.Sprintf("/v2/users/me/apps/%s/inputs?page=%d&per_page=1000", appID, page), key, nil, 200)
		items, _ := out["inputs"].([]any)
		for _, item := range items {
			all = append(all, item.(map[string]any))
		}
		if len(items) < 1000 {
			return all
		}
	}
}

// waitInputs polls the app until it holds want inputs, and fails the test
// if it holds more or the deadline passes.
func (s *stack) waitInputs(key, appID string, want int) []map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		inputs := s.listInputs(key, appID)
		if len(inputs) > want {
			s.t.Fatalf("app %s holds %d inputs, want %d", appID, len(inputs), want)
		}
		if len(inputs) == want {
			return inputs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("app %s holds %d inputs after 60 s, want %d", appID, len(inputs), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric returns the sum of the samples of a Prometheus metric whose label
// set contains every given label, read from the admin listener.
func (s *stack) metric(name string, labels ...string) float64 {
	s.t.Helper()
	resp, err := http.Get("http://" + s.addrs.Admin + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()

	var sum float64
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		matched := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				matched = false
			}
		}
		if !matched {
			continue
		}
		value, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			s.t.Fatalf("metric line %q: %v", line, err)
		}
		sum += value
	}
	return sum
}

// goImage reads an image file that ships with Go itself.
func goImage(t *testing.T, name string) []byte {
	t.Helper()
	root := os.Getenv("GOROOT")
	if root == "" {
		root = runtimeGOROOT()
	}
	data, err := os.ReadFile(filepath.Join(root, "src", "image", "testdata", name))
	if err != nil {
		t.Fatalf("read Go's image test data: %v", err)
	}
	return data
}
