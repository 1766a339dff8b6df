package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/envoytest"
)

// The tests in this file play predicts whose model responses are made up, so
// that the mix of probabilities and classes is known exactly. Each predict
// has one text input "<prefix>-<i>" and its own x-request-id.

// prediction is what the made-up model predicts for one input.
type prediction struct {
	text     string
	concepts []concept
}

type concept struct {
	id    string
	value float64
}

// modelResponse returns a Clarifai REST predict response with one SUCCESS output.
func modelResponse(t *testing.T, a prediction) []byte {
	t.Helper()
	concepts := make([]any, 0, len(a.concepts))
	for _, c := range a.concepts {
		concepts = append(concepts, map[string]any{"id": c.id, "name": c.id, "value": c.value})
	}
	return mustJSON(t, map[string]any{
		"status": map[string]any{"code": 10000, "description": "Ok"},
		"outputs": []any{map[string]any{
			"status": map[string]any{"code": 10000, "description": "Ok"},
			"model":  map[string]any{"id": "text-stats", "user_id": "demo", "app_id": "main", "model_version": map[string]any{"id": "v1"}},
			"input":  map[string]any{"data": map[string]any{"text": map[string]any{"raw": a.text}}},
			"data":   map[string]any{"concepts": concepts},
		}},
	})
}

// playPredictions plays one predict per prediction through ext_proc, from bob.
func playPredictions(t *testing.T, s *stack, bobKey, prefix string, predictions []prediction) {
	t.Helper()
	client := s.envoy()
	path := predictPath("text-stats", "")
	playConcurrently(t, client, len(predictions), 4, func(i int) *envoytest.Exchange {
		a := predictions[i]
		return restExchange(bobKey, path, textPredict(t, a.text), modelResponse(t, a), fmt.Sprintf("%s-req-%d", prefix, i))
	})
}

// storedTexts returns the text of every input of an app, sorted.
func storedTexts(t *testing.T, inputs []map[string]any) []string {
	t.Helper()
	texts := make([]string, 0, len(inputs))
	for _, in := range inputs {
		data, _ := in["data"].(map[string]any)
		text, _ := data["text"].(map[string]any)
		raw, _ := text["raw"].(string)
		texts = append(texts, raw)
	}
	slices.Sort(texts)
	return texts
}

// createWorkflow posts a one-node workflow into an app.
func createWorkflow(s *stack, ownerKey, appID, id, operator string, params map[string]any) {
	s.t.Helper()
	s.api("POST", "/v2/users/me/apps/"+appID+"/workflows", ownerKey, map[string]any{"workflows": []any{map[string]any{
		"id": id,
		"nodes": []any{map[string]any{
			"id":    "only",
			"model": map[string]any{"model_type_id": operator, "output_info": map[string]any{"params": params}},
		}},
	}}}, 200)
}

// createCollector posts a collector of bob's text-stats predicts with an
// optional pre-queue workflow and policy.
func createCollector(s *stack, ownerKey, appID, id, preQueue string, policy map[string]any) {
	s.t.Helper()
	c := map[string]any{
		"id":                      id,
		"pre_queue_random_sample": 1,
		"pre_queue_workflow_id":   preQueue,
		"collector_source": map[string]any{"api_post_model_outputs_collector_source": map[string]any{
			"model_user_id": "demo", "model_app_id": "main", "model_id": "text-stats",
			"caller_user_id": bob, "post_inputs_key_id": ownerKey,
		}},
	}
	if policy != nil {
		c["policy"] = policy
	}
	s.api("POST", "/v2/users/me/apps/"+appID+"/collectors", ownerKey, map[string]any{"collectors": []any{c}}, 200)
}

// TestWorkflows_UncertainPredictions keeps the predicts whose highest
// probability is below 0.6, over a known mix that includes values exactly at
// the threshold, as float32 like the client sends them.
func TestWorkflows_UncertainPredictions(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.api("POST", "/v2/users/me/apps", ownerKey, map[string]any{"apps": []any{map[string]any{"id": "hard"}}}, 200)
	createWorkflow(s, ownerKey, "hard", "uncertain", "max-probability-below", map[string]any{"threshold": 0.6})
	createCollector(s, ownerKey, "hard", "uncertain", "uncertain", nil)

	maxima := []float64{0.31, 0.59, 0.6, float64(float32(0.6)), 0.61, 0.95, 0.5999, 0.2, 0.99, 0.45}
	var predictions []prediction
	var want []string
	for i := range 40 {
		top := maxima[i%len(maxima)]
		a := prediction{text: fmt.Sprintf("uncertain-%02d", i), concepts: []concept{{"cat", top}, {"dog", top / 3}}}
		predictions = append(predictions, a)
		if float32(top) < float32(0.6) {
			want = append(want, a.text)
		}
	}
	playPredictions(t, s, bobKey, "uncertain", predictions)

	got := storedTexts(t, s.waitInputs(ownerKey, "hard", len(want)))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kept %v\nwant %v", got, want)
	}
	filtered := waitMetric(t, s, float64(len(predictions)-len(want)), "collectord_collector_inputs_total",
		`outcome="filtered"`, `operator="max-probability-below"`)
	if filtered != float64(len(predictions)-len(want)) {
		t.Errorf("filtered by max-probability-below = %v, want %d", filtered, len(predictions)-len(want))
	}
}

// TestWorkflows_ClassBalanced caps the inputs kept per predicted top concept.
func TestWorkflows_ClassBalanced(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.api("POST", "/v2/users/me/apps", ownerKey, map[string]any{"apps": []any{map[string]any{"id": "balanced"}}}, 200)
	createCollector(s, ownerKey, "balanced", "balanced", "", map[string]any{
		"max_inputs_per_concept": 3, "balance_window_seconds": 3600,
	})

	// 15 cats, 10 dogs, 5 birds and 2 fish: at most 3 of each are kept.
	classes := map[string]int{"cat": 15, "dog": 10, "bird": 5, "fish": 2}
	var predictions []prediction
	for _, class := range []string{"cat", "dog", "bird", "fish"} {
		for i := range classes[class] {
			predictions = append(predictions, prediction{
				text:     fmt.Sprintf("%s-%02d", class, i),
				concepts: []concept{{"other", 0.1}, {class, 0.9}},
			})
		}
	}
	playPredictions(t, s, bobKey, "balanced", predictions)

	want := 3 + 3 + 3 + 2
	waitMetric(t, s, float64(len(predictions)-want), "collectord_collector_inputs_total", `outcome="class_capped"`)
	got := storedTexts(t, s.waitInputs(ownerKey, "balanced", want))
	perClass := map[string]int{}
	for _, text := range got {
		perClass[text[:len(text)-3]]++
	}
	for class, n := range classes {
		if perClass[class] != min(n, 3) {
			t.Errorf("kept %d inputs of class %s, want %d (kept %v)", perClass[class], class, min(n, 3), got)
		}
	}
}

// TestWorkflows_DuplicatesCapturedOnce sends every text four times: each
// distinct text is stored once within the dedup window.
func TestWorkflows_DuplicatesCapturedOnce(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.api("POST", "/v2/users/me/apps", ownerKey, map[string]any{"apps": []any{map[string]any{"id": "unique"}}}, 200)
	createCollector(s, ownerKey, "unique", "unique", "", map[string]any{"dedup_window_seconds": 3600})

	var predictions []prediction
	var want []string
	for i := range 5 {
		text := fmt.Sprintf("repeated-%d", i)
		want = append(want, text)
		for range 4 {
			predictions = append(predictions, prediction{text: text, concepts: []concept{{"cat", 0.7}}})
		}
	}
	playPredictions(t, s, bobKey, "dedup", predictions)

	waitMetric(t, s, 15, "collectord_collector_inputs_total", `outcome="deduplicated"`)
	got := storedTexts(t, s.waitInputs(ownerKey, "unique", len(want)))
	if !slices.Equal(got, want) {
		t.Errorf("stored %v, want each text once: %v", got, want)
	}

	label := fmt.Sprintf(`collector="%s/unique/unique"`, owner)
	for outcome, n := range map[string]int{"matched": 20, "enqueued": 20, "deduplicated": 15, "delivered": 5} {
		if got := waitMetric(t, s, float64(n), "collectord_collector_inputs_total", label, `outcome="`+outcome+`"`); got != float64(n) {
			t.Errorf("collector inputs with outcome %s = %v, want %d", outcome, got, n)
		}
	}
}

// TestWorkflows_PreviewIngestsNothing runs a preview collector with a
// workflow, a class cap and deduplication over a mixed workload: the app
// stays empty, and the preview's counts add up to the inputs seen.
func TestWorkflows_PreviewIngestsNothing(t *testing.T) {
	s := startStack(t, stackOptions{})
	ownerKey := s.createKey(owner)
	bobKey := s.createKey(bob, "Predict")
	s.api("POST", "/v2/users/me/apps", ownerKey, map[string]any{"apps": []any{map[string]any{"id": "trial"}}}, 200)
	createWorkflow(s, ownerKey, "trial", "uncertain", "max-probability-below", map[string]any{"threshold": 0.8})
	createCollector(s, ownerKey, "trial", "trial", "uncertain", map[string]any{
		"preview": true, "dedup_window_seconds": 3600, "max_inputs_per_concept": 20, "balance_window_seconds": 3600,
	})

	// 200 predicts: every fourth is confident (0.9, filtered), every fifth
	// repeats an earlier text, and the classes are skewed towards cat.
	var predictions []prediction
	for i := range 200 {
		text := fmt.Sprintf("trial-%03d", i)
		if i%5 == 4 {
			text = fmt.Sprintf("trial-%03d", i-1)
		}
		top := 0.55
		if i%4 == 0 {
			top = 0.9
		}
		class := "cat"
		if i%3 == 0 {
			class = "dog"
		}
		predictions = append(predictions, prediction{text: text, concepts: []concept{{class, top}}})
	}
	playPredictions(t, s, bobKey, "trial", predictions)

	counts := waitPreviewTotal(t, s, ownerKey, "trial", "trial", len(predictions))
	t.Logf("preview workload: %d inputs seen; outcomes %v", len(predictions), counts)
	if counts["kept"] == 0 || counts["filtered"] == 0 || counts["deduplicated"] == 0 || counts["class_capped"] == 0 {
		t.Errorf("outcomes %v: want kept, filtered, deduplicated and class_capped all seen", counts)
	}
	if counts["filtered"] != 50 {
		t.Errorf("filtered = %d, want the 50 confident predicts", counts["filtered"])
	}

	preview := s.api("GET", "/v2/users/me/apps/trial/collectors/trial/preview", ownerKey, nil, 200)["preview"].(map[string]any)
	records, _ := preview["records"].([]any)
	if len(records) == 0 || len(records) > 20 {
		t.Errorf("preview holds %d records, want 1..20", len(records))
	}
	if inputs := s.listInputs(ownerKey, "trial"); len(inputs) != 0 {
		t.Errorf("a preview collector ingested %d inputs, want none", len(inputs))
	}
}

// waitPreviewTotal polls a collector's preview until its counts add up to
// want, and returns them by outcome.
func waitPreviewTotal(t *testing.T, s *stack, key, appID, collectorID string, want int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		preview := s.api("GET", "/v2/users/me/apps/"+appID+"/collectors/"+collectorID+"/preview", key, nil, 200)["preview"].(map[string]any)
		counts := map[string]int{}
		total := 0
		items, _ := preview["counts"].([]any)
		for _, item := range items {
			c := item.(map[string]any)
			n, err := strconv.Atoi(fmt.Sprint(c["count"]))
			if err != nil {
				t.Fatalf("preview count %v: %v", c, err)
			}
			counts[fmt.Sprint(c["outcome"])] = n
			total += n
		}
		if total > want {
			t.Fatalf("preview counts %v add up to %d, want %d", counts, total, want)
		}
		if total == want {
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("preview counts %v add up to %d after 60 s, want %d", counts, total, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
