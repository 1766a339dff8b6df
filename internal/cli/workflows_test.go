package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

var workflowHeader = []string{"ID", "NODES", "DESCRIPTION", "CREATED"}

// chainWorkflow is a workflow file in the Clarifai REST shape: a random
// sample followed by a concept thresholder.
const chainWorkflow = `{
  "id": "cats",
  "description": "half of the cats",
  "nodes": [
    {"id": "sample", "model": {"model_type_id": "random-sample", "output_info": {"params": {"keep_fraction": 0.5}}}},
    {"id": "thr", "model": {"model_type_id": "concept-thresholder",
      "output_info": {"params": {"concept_threshold_type": "GREATER_THAN"}, "data": {"concepts": [{"id": "cat", "value": 0.8}]}}},
     "node_inputs": [{"node_id": "sample"}]}
  ]
}`

// writeFile writes content to a file in a test directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func decodeWorkflows(t *testing.T, r result) *pb.MultiWorkflowResponse {
	t.Helper()
	resp := &pb.MultiWorkflowResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), resp); err != nil {
		t.Fatalf("collectord %s -o json: decode %q: %v", strings.Join(r.args, " "), r.stdout, err)
	}
	return resp
}

func TestWorkflows_Lifecycle(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)

	// Create from a file with one workflow, then from a request body.
	r := runCLI(t, "workflows", "create", "--app", "dest", "--file", writeFile(t, "cats.json", chainWorkflow)).requireOK(t)
	rows := tableRows(t, r.stdout, workflowHeader...)
	if len(rows) != 1 {
		t.Fatalf("workflows create printed %d rows, want 1", len(rows))
	}
	want := map[string]string{"ID": "cats", "NODES": "sample:random-sample,thr:concept-thresholder", "DESCRIPTION": "half of the cats"}
	for col, v := range want {
		if rows[0][col] != v {
			t.Errorf("created row %s = %q, want %q", col, rows[0][col], v)
		}
	}
	body := `{"workflows": [{"id": "uncertain", "nodes": [{"id": "below", "model": {"model_type_id": "max-probability-below", "output_info": {"params": {"threshold": 0.6}}}}]}]}`
	runCLI(t, "workflows", "create", "--app", "dest", "--file", writeFile(t, "body.json", body)).requireOK(t)

	// List as a table and as JSON, get one.
	rows = tableRows(t, runCLI(t, "workflows", "list", "--app", "dest").requireOK(t).stdout, workflowHeader...)
	if len(rows) != 2 || rows[0]["ID"] != "cats" || rows[1]["ID"] != "uncertain" || rows[1]["DESCRIPTION"] != "-" {
		t.Fatalf("workflows list = %v, want cats then uncertain without description", rows)
	}
	rows = tableRows(t, runCLI(t, "workflows", "list", "--app", "dest", "--per-page", "1", "--page", "2").requireOK(t).stdout, workflowHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "uncertain" {
		t.Errorf("second page of one = %v, want uncertain", rows)
	}
	list := decodeWorkflows(t, runCLI(t, "workflows", "list", "--app", "dest", "-o", "json").requireOK(t))
	if len(list.GetWorkflows()) != 2 || list.GetWorkflows()[0].GetNodes()[1].GetNodeInputs()[0].GetNodeId() != "sample" {
		t.Errorf("list -o json = %v, want both workflows with their nodes", list.GetWorkflows())
	}
	get := runCLI(t, "workflows", "get", "cats", "--app", "dest", "-o", "json").requireOK(t)
	single := &pb.SingleWorkflowResponse{}
	if err := protojson.Unmarshal([]byte(get.stdout), single); err != nil {
		t.Fatalf("decode get -o json: %v", err)
	}
	if single.GetWorkflow().GetDescription() != "half of the cats" || len(single.GetWorkflow().GetNodes()) != 2 {
		t.Errorf("get cats = %v", single.GetWorkflow())
	}

	// Update replaces the nodes of a stored workflow, also while a collector
	// names it.
	update := `{"id": "uncertain", "description": "very uncertain", "nodes": [{"id": "below", "model": {"model_type_id": "max-probability-below", "output_info": {"params": {"threshold": 0.4}}}}]}`
	rows = tableRows(t, runCLI(t, "workflows", "update", "--app", "dest", "--file", writeFile(t, "update.json", update)).requireOK(t).stdout, workflowHeader...)
	if len(rows) != 1 || rows[0]["DESCRIPTION"] != "very uncertain" {
		t.Errorf("workflows update = %v, want uncertain with its new description", rows)
	}
	got := &pb.SingleWorkflowResponse{}
	if err := protojson.Unmarshal([]byte(runCLI(t, "workflows", "get", "uncertain", "--app", "dest", "-o", "json").requireOK(t).stdout), got); err != nil {
		t.Fatalf("decode get -o json: %v", err)
	}
	if v := got.GetWorkflow().GetNodes()[0].GetModel().GetOutputInfo().GetParams().GetFields()["threshold"].GetNumberValue(); v != 0.4 {
		t.Errorf("threshold after update = %v, want 0.4", v)
	}
	runCLI(t, "workflows", "update", "--app", "dest", "--file", writeFile(t, "missing.json", `{"id": "nosuch", "nodes": [{"id": "below", "model": {"model_type_id": "max-probability-below", "output_info": {"params": {"threshold": 0.4}}}}]}`)).requireExit(t, 1)

	// Once a collector names the workflow, it cannot be deleted.
	runCLI(t, "collectors", "create", "--app", "dest", "--id", "c1", "--model-user", "u", "--model-app", "a",
		"--model", "m", "--pre-queue-workflow", "cats").requireOK(t)
	r = runCLI(t, "workflows", "delete", "cats", "--app", "dest").requireExit(t, 1)
	for _, want := range []string{"DeleteWorkflows failed", "FAILURE", `collector "c1"`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("delete of a used workflow: stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	r = runCLI(t, "workflows", "delete", "uncertain", "--app", "dest").requireOK(t)
	if want := `deleted from app "dest": uncertain`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("delete printed %q, want %q", r.stdout, want)
	}
	runCLI(t, "collectors", "delete", "c1", "--app", "dest").requireOK(t)
	r = runCLI(t, "workflows", "delete", "--all", "--app", "dest").requireOK(t)
	if want := `deleted all workflows of app "dest"`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("delete --all printed %q, want %q", r.stdout, want)
	}
	if rows := tableRows(t, runCLI(t, "workflows", "list", "--app", "dest").requireOK(t).stdout, workflowHeader...); len(rows) != 0 {
		t.Errorf("list after delete --all = %v, want no rows", rows)
	}
	n.requireNoSecretsInLogs(owner)
}

func TestWorkflows_Errors(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)

	invalid := `{"id": "bad", "nodes": [{"id": "blur", "model": {"model_type_id": "blur-detector"}}]}`
	apiErrors := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{"invalid node", []string{"workflows", "create", "--app", "dest", "--file", writeFile(t, "bad.json", invalid)},
			[]string{"PostWorkflows failed: HTTP 400", "WORKFLOW_INVALID_ARGUMENT", `workflow node "blur"`, "model.model_type_id"}},
		{"unknown workflow", []string{"workflows", "get", "nope", "--app", "dest"},
			[]string{"GetWorkflow failed: HTTP 404", "WORKFLOW_DOES_NOT_EXIST", `workflow "nope" not found in app "dest"`}},
		{"delete unknown", []string{"workflows", "delete", "nope", "--app", "dest"},
			[]string{"WORKFLOW_DOES_NOT_EXIST", `"nope"`}},
		{"collector names a missing workflow", []string{"collectors", "create", "--app", "dest", "--id", "c1",
			"--model-user", "u", "--model-app", "a", "--model", "m", "--post-queue-workflow", "nope", "--post-inputs-key", owner},
			[]string{"CONN_INVALID_REQUEST", `post_queue_workflow_id "nope"`}},
	}
	for _, tt := range apiErrors {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...).requireExit(t, 1)
			for _, want := range tt.wantStderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty on error", r.stdout)
			}
			r.requireNoSecrets(t, owner)
		})
	}

	usageErrors := []struct {
		name string
		args []string
		want string
	}{
		{"no file", []string{"workflows", "create", "--app", "dest"}, "--file is required"},
		{"missing file", []string{"workflows", "create", "--app", "dest", "--file", filepath.Join(t.TempDir(), "none.json")}, "read the workflow file"},
		{"not JSON", []string{"workflows", "create", "--app", "dest", "--file", writeFile(t, "x.json", "nodes: []")}, "is not a JSON object"},
		{"unknown field", []string{"workflows", "create", "--app", "dest", "--file", writeFile(t, "y.json", `{"id": "w", "steps": []}`)}, "steps"},
		{"get without id", []string{"workflows", "get", "--app", "dest"}, "takes one workflow ID"},
		{"delete ids and all", []string{"workflows", "delete", "w", "--all", "--app", "dest"}, "not both"},
		{"unknown command", []string{"workflows", "patch"}, `unknown workflows command "patch"`},
	}
	for _, tt := range usageErrors {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, tt.args...)
			if r.err == nil {
				t.Fatalf("collectord %s succeeded", strings.Join(tt.args, " "))
			}
			text := r.err.Error() + r.stderr
			if !strings.Contains(text, tt.want) {
				t.Errorf("error %q and stderr %q do not mention %q", r.err, r.stderr, tt.want)
			}
		})
	}
	// A missing flag and a file that is no JSON object are usage errors, and
	// a file that cannot be read is not.
	runCLI(t, "workflows", "create", "--app", "dest", "--file", filepath.Join(t.TempDir(), "none.json")).requireExit(t, 1)
	runCLI(t, "workflows", "create", "--app", "dest").requireExit(t, 2)
	runCLI(t, "workflows", "create", "--app", "dest", "--file", writeFile(t, "z.json", "[]")).requireExit(t, 2)
}

func TestCollectors_Policy(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)

	r := runCLI(t, "collectors", "create", "--app", "dest", "--id", "limited", "--model-user", "u", "--model-app", "a",
		"--model", "m", "--sample", "1", "--max-per-hour", "10", "--max-per-day", "100", "--dedup-window", "10m",
		"--max-per-concept", "5", "--balance-window", "24h", "--preview").requireOK(t)
	rows := tableRows(t, r.stdout, collectorHeader...)
	if want := "10/h,100/d,dedup=10m,5/concept/24h,preview"; len(rows) != 1 || rows[0]["POLICY"] != want {
		t.Errorf("create printed %v, want POLICY %s", rows, want)
	}
	col := decodeCollector(t, runCLI(t, "collectors", "get", "limited", "--app", "dest", "-o", "json").requireOK(t))
	want := &pb.CollectorPolicy{
		MaxInputsPerHour: 10, MaxInputsPerDay: 100, DedupWindowSeconds: 600,
		MaxInputsPerConcept: 5, BalanceWindowSeconds: 86400, Preview: true,
	}
	if got := col.GetPolicy(); got.String() != want.String() {
		t.Errorf("policy = %v, want %v", got, want)
	}

	// Update changes only the policy flags given and keeps the rest.
	r = runCLI(t, "collectors", "update", "limited", "--app", "dest", "--max-per-hour", "0", "--preview=false", "-o", "json").requireOK(t)
	got := decodeCollectors(t, r).GetCollectors()[0].GetPolicy()
	if got.GetMaxInputsPerHour() != 0 || got.GetPreview() || got.GetMaxInputsPerDay() != 100 || got.GetDedupWindowSeconds() != 600 {
		t.Errorf("policy after update = %v, want hour cap and preview off, the rest kept", got)
	}
	// An update of another field keeps the policy.
	r = runCLI(t, "collectors", "update", "limited", "--app", "dest", "--description", "d", "-o", "json").requireOK(t)
	if got := decodeCollectors(t, r).GetCollectors()[0].GetPolicy(); got.GetMaxInputsPerConcept() != 5 {
		t.Errorf("policy after a description update = %v, want it kept", got)
	}

	// A collector created without policy flags has none.
	r = runCLI(t, "collectors", "create", "--app", "dest", "--id", "plain", "--model-user", "u", "--model-app", "a",
		"--model", "m", "--sample", "1").requireOK(t)
	if rows := tableRows(t, r.stdout, collectorHeader...); rows[0]["POLICY"] != "-" {
		t.Errorf("POLICY of a collector without one = %q, want -", rows[0]["POLICY"])
	}

	// The API rejects half of the class-balance pair. The command line itself
	// rejects values that the API cannot carry.
	r = runCLI(t, "collectors", "update", "plain", "--app", "dest", "--max-per-concept", "3").requireExit(t, 1)
	if !strings.Contains(r.stderr, "policy.max_inputs_per_concept needs policy.balance_window_seconds") {
		t.Errorf("stderr = %q, want the API's message about the balance window", r.stderr)
	}
	for _, args := range [][]string{
		{"--dedup-window", "1500ms"},
		{"--balance-window", "-1h", "--max-per-concept", "1"},
		{"--max-per-day", "5000000000"},
	} {
		full := append([]string{"collectors", "update", "plain", "--app", "dest"}, args...)
		runCLI(t, full...).requireExit(t, 2)
	}
}

func TestCollectors_Preview(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)
	runCLI(t, "collectors", "create", "--app", "dest", "--id", "p", "--model-user", "u", "--model-app", "a",
		"--model", "m", "--sample", "1", "--preview").requireOK(t)

	// A collector that has seen no predict: two empty tables.
	r := runCLI(t, "collectors", "preview", "p", "--app", "dest").requireOK(t)
	counts, records, found := strings.Cut(r.stdout, "\n\n")
	if !found {
		t.Fatalf("preview output has no blank line between the tables:\n%s", r.stdout)
	}
	if rows := tableRows(t, counts, "OUTCOME", "COUNT"); len(rows) != 0 {
		t.Errorf("counts = %v, want none", rows)
	}
	if rows := tableRows(t, records, "RECORD", "CAPTURED", "CALLER", "VERSION", "CONCEPTS"); len(rows) != 0 {
		t.Errorf("records = %v, want none", rows)
	}

	r = runCLI(t, "collectors", "preview", "p", "--app", "dest", "-o", "json").requireOK(t)
	resp := &pb.SingleCollectorPreviewResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), resp); err != nil {
		t.Fatalf("decode preview -o json: %v", err)
	}
	if resp.GetPreview().GetCollectorId() != "p" {
		t.Errorf("preview -o json = %v, want collector_id p", resp.GetPreview())
	}

	r = runCLI(t, "collectors", "preview", "nope", "--app", "dest").requireExit(t, 1)
	if !strings.Contains(r.stderr, "COLLECTOR_MISSING") {
		t.Errorf("stderr = %q, want COLLECTOR_MISSING", r.stderr)
	}
	runCLI(t, "collectors", "preview", "p").requireExit(t, 2)
}
