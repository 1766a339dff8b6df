// Package e2e runs collectord as a user does: one node with the embedded
// store and JetStream on random loopback ports, the demo model as the
// upstream, keys made with the CLI, apps and collectors made through the
// REST API, predicts sent through the ext_proc server (driven by the
// Envoy-faithful client with the shipped Envoy config) and through the
// reverse-proxy interceptor (driven by Clarifai's official Node client).
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/envoytest"
	"github.com/collectord/collectord/internal/interop"
)

const (
	owner = "alice"
	bob   = "bob"
	eve   = "eve"
)

// predictPath is the REST path of a demo model predict.
func predictPath(modelID, versionID string) string {
	if versionID != "" {
		return fmt.Sprintf("/v2/users/demo/apps/main/models/%s/versions/%s/outputs", modelID, versionID)
	}
	return fmt.Sprintf("/v2/users/demo/apps/main/models/%s/outputs", modelID)
}

// envoy is the ext_proc side of a stack: the client configured like the
// shipped Envoy bootstrap.
func (s *stack) envoy() *envoytest.Client {
	s.t.Helper()
	cfg, err := envoytest.LoadConfig("../../deploy/envoy/envoy.yaml")
	if err != nil {
		s.t.Fatal(err)
	}
	// The shipped 200 ms message timeout is Envoy's budget in production. On a
	// loaded test machine with the race detector it would make Envoy fail
	// open at random, which these tests count as a failure, so latency is
	// measured by the benchmarks instead.
	cfg.MessageTimeout = 10 * time.Second
	client, err := envoytest.Dial(s.addrs.ExtProc, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { client.Close() })
	return client
}

// predictViaEnvoy plays one REST predict through the ext_proc server. The
// response is the demo model's real response to the same body, so the
// exchange is what Envoy would carry in front of it.
func (s *stack) predictViaEnvoy(client *envoytest.Client, callerKey, path string, body []byte, extra ...envoytest.Header) *envoytest.Result {
	s.t.Helper()
	status, respBody := s.predictDirect(callerKey, path, body)
	return s.playPredict(client, callerKey, path, body, status, respBody, extra...)
}

// playPredict plays one REST predict through the ext_proc server with the
// given upstream response.
func (s *stack) playPredict(client *envoytest.Client, callerKey, path string, body []byte, status int, respBody []byte, extra ...envoytest.Header) *envoytest.Result {
	s.t.Helper()

	headers := append([]envoytest.Header{
		{Name: "authorization", Value: "Key " + callerKey},
		{Name: "content-length", Value: fmt.Sprint(len(body))},
	}, extra...)
	ex := &envoytest.Exchange{
		RequestHeaders:  envoytest.Request("POST", path, "model.local", "application/json", headers...),
		RequestBody:     envoytest.Chunks(body, 3),
		ResponseHeaders: envoytest.Response(status, envoytest.Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    envoytest.Chunks(respBody, 2),
	}
	res := client.Play(context.Background(), ex)
	if len(res.Violations) > 0 || !res.Succeeded || res.FailedOpen {
		s.t.Fatalf("exchange through ext_proc: succeeded=%v failed_open=%v violations=%v", res.Succeeded, res.FailedOpen, res.Violations)
	}
	if !bytes.Equal(res.UpstreamBody, body) {
		s.t.Fatal("the upstream would receive a body other than the client's")
	}
	return res
}

// predictDirect sends a REST predict straight to the demo model.
func (s *stack) predictDirect(callerKey, path string, body []byte) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest("POST", "http://"+s.model+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Key "+callerKey)
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
	return resp.StatusCode, data
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func textPredict(t *testing.T, text string) []byte {
	return mustJSON(t, map[string]any{"inputs": []any{
		map[string]any{"data": map[string]any{"text": map[string]any{"raw": text}}},
	}})
}

// inputByMarker finds the stored input whose metadata has marker=value.
func inputByMarker(t *testing.T, inputs []map[string]any, value string) map[string]any {
	t.Helper()
	for _, in := range inputs {
		data, _ := in["data"].(map[string]any)
		meta, _ := data["metadata"].(map[string]any)
		if meta["marker"] == value {
			return in
		}
	}
	t.Fatalf("no stored input has marker %q", value)
	return nil
}

func TestEnvoy_CapturesRESTInputs(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.setup(ownerKey, "training",
		collectorSpec{id: "colors", caller: bob, modelID: "colors", sample: 1},
		collectorSpec{id: "texts", caller: bob, modelID: "text-stats", sample: 1},
	)
	client := s.envoy()

	// Each input carries metadata with nested and empty objects, which must
	// come back JSON-equal.
	metadata := func(marker string) map[string]any {
		return map[string]any{
			"marker": marker,
			"nested": map[string]any{"empty": map[string]any{}, "list": []any{1.5, "x", true, nil}},
			"empty":  map[string]any{},
		}
	}
	images := []string{"video-001.png", "video-001.jpeg", "video-001.gif", "video-001.q50.420.jpeg"}
	want := map[string][]byte{}
	for _, name := range images {
		raw := goImage(t, name)
		want[name] = raw
		body := mustJSON(t, map[string]any{"inputs": []any{map[string]any{"data": map[string]any{
			"image":    map[string]any{"base64": base64.StdEncoding.EncodeToString(raw)},
			"metadata": metadata(name),
		}}}})
		s.predictViaEnvoy(client, bobKey, predictPath("colors", ""), body)
	}

	// An image URL is kept as a URL, and a text predict with its own input
	// ID keeps that ID in the metadata.
	urlBody := mustJSON(t, map[string]any{"inputs": []any{map[string]any{"data": map[string]any{
		"image":    map[string]any{"url": "https://images.example/cat.jpg"},
		"metadata": metadata("url"),
	}}}})
	// The demo model never fetches URLs, so this response is the one Clarifai
	// returns for a fetched image.
	urlAnswer := []byte(`{"status":{"code":10000,"description":"Ok"},"outputs":[{"id":"o1","status":{"code":10000},` +
		`"model":{"id":"colors","user_id":"demo","app_id":"main","model_version":{"id":"1"}},` +
		`"data":{"concepts":[{"id":"gray","name":"gray","value":0.9}]}}]}`)
	s.playPredict(client, bobKey, predictPath("colors", ""), urlBody, 200, urlAnswer)
	textBody := mustJSON(t, map[string]any{"inputs": []any{map[string]any{
		"id":   "bobs-own-id",
		"data": map[string]any{"text": map[string]any{"raw": "Is this a question?"}, "metadata": metadata("text")},
	}}})
	s.predictViaEnvoy(client, bobKey, predictPath("text-stats", ""), textBody)

	inputs := s.waitInputs(ownerKey, "training", len(images)+2)

	for _, name := range images {
		in := inputByMarker(t, inputs, name)
		data := in["data"].(map[string]any)
		got, err := base64.StdEncoding.DecodeString(data["image"].(map[string]any)["base64"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s: stored bytes differ from the original (%d vs %d bytes)", name, len(got), len(want[name]))
		}
		if !reflect.DeepEqual(data["metadata"], metadata(name)) {
			t.Errorf("%s: metadata = %v, want %v", name, data["metadata"], metadata(name))
		}
	}

	urlInput := inputByMarker(t, inputs, "url")["data"].(map[string]any)
	if got := urlInput["image"].(map[string]any)["url"]; got != "https://images.example/cat.jpg" {
		t.Errorf("image URL = %v", got)
	}

	textInput := inputByMarker(t, inputs, "text")
	textData := textInput["data"].(map[string]any)
	if got := textData["text"].(map[string]any)["raw"]; got != "Is this a question?" {
		t.Errorf("text = %v", got)
	}
	meta := textData["metadata"].(map[string]any)
	if got := meta["collectord"].(map[string]any)["caller_input_id"]; got != "bobs-own-id" {
		t.Errorf("caller's input id in metadata = %v, want bobs-own-id", got)
	}

	if got := s.metric("collectord_captures_total", `outcome="dropped"`); got != 0 {
		t.Errorf("dropped captures = %v, want 0", got)
	}
}

// TestEnvoy_NonMatchingCapturesNothing sends predicts that a collector must
// not capture, then a matching marker; with one assembler, the marker's
// arrival proves the earlier predicts were decided.
func TestEnvoy_NonMatchingCapturesNothing(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	eveKey := s.createKey(eve, "Predict")
	s.setup(ownerKey, "training",
		collectorSpec{id: "bob-v1", caller: bob, modelID: "text-stats", versionID: "1", sample: 1},
	)
	client := s.envoy()

	cases := []struct {
		name string
		key  string
		path string
	}{
		{"other caller", eveKey, predictPath("text-stats", "")},
		{"no key", "", predictPath("text-stats", "")},
		{"other model", bobKey, predictPath("echo-size", "")},
		{"other version in path", bobKey, predictPath("text-stats", "2")},
	}
	for _, tc := range cases {
		s.predictViaEnvoy(client, tc.key, tc.path, textPredict(t, tc.name))
	}

	// The demo model returns version 1 when the request names none, so the
	// version comes from the response and this one matches.
	s.predictViaEnvoy(client, bobKey, predictPath("text-stats", ""), textPredict(t, "marker"))

	inputs := s.waitInputs(ownerKey, "training", 1)
	got := inputs[0]["data"].(map[string]any)["text"].(map[string]any)["raw"]
	if got != "marker" {
		t.Errorf("captured %q, want only the marker", got)
	}
}

// TestEnvoy_SamplingHalf checks that a 0.5 sample over 2,000 predicts keeps
// a count within three standard deviations of 1,000.
func TestEnvoy_SamplingHalf(t *testing.T) {
	s := startStack(t, stackOptions{assemblers: 2})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.setup(ownerKey, "training", collectorSpec{id: "half", caller: bob, modelID: "text-stats", sample: 0.5})
	client := s.envoy()

	const total = 2000
	body := textPredict(t, "sampled")
	_, respBody := s.predictDirect(bobKey, predictPath("text-stats", ""), body)
	playConcurrently(t, client, total, 16, func(i int) *envoytest.Exchange {
		return restExchange(bobKey, predictPath("text-stats", ""), body, respBody, fmt.Sprintf("sample-%d", i))
	})

	waitMetric(t, s, total, "collectord_captures_total", `outcome="matched"`)
	kept := total - s.metric("collectord_captures_total", `outcome="sampled_out"`)
	inputs := s.waitInputs(ownerKey, "training", int(kept))

	// Binomial(2000, 0.5): mean 1000, standard deviation sqrt(500) ≈ 22.4.
	if n := len(inputs); n < 933 || n > 1067 {
		t.Errorf("kept %d of %d, want within 3 sigma of 1000 (933..1067)", n, total)
	}
}

// TestEnvoy_NoSilentDrops runs 1,000 sequential predicts and then 1,000 from
// 50 concurrent clients, each with its own x-request-id, at 100% sampling:
// each run stores exactly 1,000 inputs and drops none.
func TestEnvoy_NoSilentDrops(t *testing.T) {
	s := startStack(t, stackOptions{assemblers: 2})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.setup(ownerKey, "sequential", collectorSpec{id: "all", caller: bob, modelID: "text-stats", sample: 1})
	client := s.envoy()

	body := textPredict(t, "every one")
	_, respBody := s.predictDirect(bobKey, predictPath("text-stats", ""), body)

	playConcurrently(t, client, 1000, 1, func(i int) *envoytest.Exchange {
		return restExchange(bobKey, predictPath("text-stats", ""), body, respBody, fmt.Sprintf("seq-%d", i))
	})
	s.waitInputs(ownerKey, "sequential", 1000)

	// The second run goes to a second app, so each run is counted on its own.
	s.api("PATCH", "/v2/users/me/apps/sequential/collectors", ownerKey, map[string]any{
		"action": "overwrite",
		"collectors": []any{map[string]any{
			"id": "all", "pre_queue_random_sample": 1, "status": map[string]any{"code": "COLLECTOR_INACTIVE"},
			"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
				"model_user_id": "demo", "model_app_id": "main", "model_id": "text-stats",
				"caller_user_id": bob, "post_inputs_key_id": ownerKey,
			}},
		}},
	}, 200)
	s.setup(ownerKey, "concurrent", collectorSpec{id: "all", caller: bob, modelID: "text-stats", sample: 1})

	playConcurrently(t, client, 1000, 50, func(i int) *envoytest.Exchange {
		return restExchange(bobKey, predictPath("text-stats", ""), body, respBody, fmt.Sprintf("conc-%d", i))
	})
	s.waitInputs(ownerKey, "concurrent", 1000)

	enqueued := s.metric("collectord_captures_total", `outcome="enqueued"`)
	delivered := waitMetric(t, s, enqueued, "collectord_captures_total", `outcome="delivered"`)
	if enqueued != 2000 || delivered != 2000 {
		t.Errorf("enqueued %v, delivered %v, want 2000 each", enqueued, delivered)
	}
	if dropped := s.metric("collectord_captures_total", `outcome="dropped"`); dropped != 0 {
		t.Errorf("dropped %v, want 0", dropped)
	}
	if inputs := s.listInputs(ownerKey, "sequential"); len(inputs) != 1000 {
		t.Errorf("paused collector captured more: sequential app holds %d", len(inputs))
	}
}

// TestProxy_OfficialClientGRPC sends gRPC PostModelOutputs with Clarifai's
// official Node client through the reverse-proxy interceptor to the demo
// model, and finds the input, bytes and metadata intact, in the app.
func TestProxy_OfficialClientGRPC(t *testing.T) {
	interop.RequireNode(t)
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.setup(ownerKey, "training", collectorSpec{id: "colors", caller: bob, modelID: "colors", sample: 1})

	image := goImage(t, "video-001.png")
	metadata := map[string]any{"marker": "grpc", "nested": map[string]any{"empty": map[string]any{}}}
	request := map[string]any{
		"user_app_id": map[string]any{"user_id": "demo", "app_id": "main"},
		"model_id":    "colors",
		"inputs": []any{map[string]any{"data": map[string]any{
			"image":    map[string]any{"base64": base64.StdEncoding.EncodeToString(image)},
			"metadata": metadata,
		}}},
	}
	result := interop.Call(t, context.Background(), interop.CallRequest{
		Address: s.addrs.Proxy, Key: bobKey, RPC: "PostModelOutputs", Request: request,
	})
	if result.GRPCCode != 0 {
		t.Fatalf("PostModelOutputs through the proxy: gRPC code %d: %s", result.GRPCCode, result.GRPCDetails)
	}
	if !strings.Contains(string(result.Response), `"SUCCESS"`) {
		t.Fatalf("demo model answer lost its status: %s", result.Response)
	}

	inputs := s.waitInputs(ownerKey, "training", 1)
	data := inputs[0]["data"].(map[string]any)
	got, err := base64.StdEncoding.DecodeString(data["image"].(map[string]any)["base64"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, image) {
		t.Errorf("stored image differs from the original (%d vs %d bytes)", len(got), len(image))
	}
	if !reflect.DeepEqual(data["metadata"], metadata) {
		t.Errorf("metadata = %v, want %v", data["metadata"], metadata)
	}
}

// restExchange is one REST predict as Envoy carries it to the model.
func restExchange(callerKey, path string, body, respBody []byte, requestID string) *envoytest.Exchange {
	return &envoytest.Exchange{
		RequestHeaders: envoytest.Request("POST", path, "model.local", "application/json",
			envoytest.Header{Name: "authorization", Value: "Key " + callerKey},
			envoytest.Header{Name: "x-request-id", Value: requestID},
		),
		RequestBody:     [][]byte{body},
		ResponseHeaders: envoytest.Response(200, envoytest.Header{Name: "content-type", Value: "application/json"}),
		ResponseBody:    [][]byte{respBody},
	}
}

// playConcurrently plays total exchanges from workers goroutines and fails
// the test on any exchange that did not reach the upstream untouched.
func playConcurrently(t *testing.T, client *envoytest.Client, total, workers int, build func(i int) *envoytest.Exchange) {
	t.Helper()
	next := make(chan int)
	var failures sync.Map
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res := client.Play(context.Background(), build(i))
				if !res.Succeeded || res.FailedOpen || len(res.Violations) > 0 {
					failures.Store(i, fmt.Sprint(res.Violations))
				}
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()

	failures.Range(func(k, v any) bool {
		t.Errorf("exchange %v: %v", k, v)
		return true
	})
}

// waitMetric polls a metric until it reaches want, and returns its value.
func waitMetric(t *testing.T, s *stack, want float64, name string, labels ...string) float64 {
	t.Helper()
	for range 600 {
		if v := s.metric(name, labels...); v >= want {
			return v
		}
		sleep100ms()
	}
	v := s.metric(name, labels...)
	t.Fatalf("%s%v = %v after 60 s, want %v", name, labels, v, want)
	return v
}
