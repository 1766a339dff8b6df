package cli_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

func decodeCollectors(t *testing.T, r result) *pb.MultiCollectorResponse {
	t.Helper()
	resp := &pb.MultiCollectorResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), resp); err != nil {
		t.Fatalf("collectord %s -o json: decode %q: %v", strings.Join(r.args, " "), r.stdout, err)
	}
	return resp
}

func decodeCollector(t *testing.T, r result) *pb.Collector {
	t.Helper()
	resp := &pb.SingleCollectorResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), resp); err != nil {
		t.Fatalf("collectord %s -o json: decode %q: %v", strings.Join(r.args, " "), r.stdout, err)
	}
	if resp.GetStatus().GetCode() != pb.StatusCode_SUCCESS {
		t.Errorf("status = %v, want SUCCESS", resp.GetStatus().GetCode())
	}
	return resp.GetCollector()
}

// maskOf returns how the API shows a post-inputs key of 16 characters or
// more: "****" and its last 4 characters.
func maskOf(key string) string {
	return "****" + key[len(key)-4:]
}

func TestCollectors_Lifecycle(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	postKey := n.createKey("alice", "--scopes", "Inputs_Add")
	secrets := []string{owner, postKey}
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", postKey)

	var outputs []result
	run := func(args ...string) result {
		t.Helper()
		r := runCLI(t, args...).requireOK(t)
		outputs = append(outputs, r)
		return r
	}

	run("apps", "create", "--id", "dest", "--name", "Destination")

	// Create two collectors: the first takes every source flag.
	r := run("collectors", "create", "--app", "dest", "--id", "general", "--description", "general traffic",
		"--model-user", "clarifai", "--model-app", "main", "--model", "general-image-recognition",
		"--caller", "bob", "--sample", "0.25")
	rows := tableRows(t, r.stdout, collectorHeader...)
	if len(rows) != 1 {
		t.Fatalf("collectors create printed %d rows, want 1", len(rows))
	}
	want := map[string]string{
		"ID": "general", "MODEL": "clarifai/main/general-image-recognition",
		"CALLER": "bob", "SAMPLE": "0.25", "STATUS": "active",
	}
	for col, v := range want {
		if rows[0][col] != v {
			t.Errorf("created row %s = %q, want %q", col, rows[0][col], v)
		}
	}
	created, err := time.Parse(time.RFC3339, rows[0]["CREATED"])
	if err != nil || time.Since(created) > time.Hour || time.Until(created) > time.Minute {
		t.Errorf("CREATED = %q, want the time of creation in RFC 3339", rows[0]["CREATED"])
	}

	// The workflows that the second collector names must exist first.
	for _, wf := range []string{"filter-blurry", "auto-label"} {
		file := writeFile(t, wf+".json", `{"id": "`+wf+`", "nodes": [{"id": "n", "model": {"model_type_id": "min-probability-above", "output_info": {"params": {"threshold": 0.1}}}}]}`)
		run("workflows", "create", "--app", "dest", "--file", file)
	}
	run("collectors", "create", "--app", "dest", "--id", "colors", "--model-user", "clarifai",
		"--model-app", "main", "--model", "color-recognition", "--model-version", "v2",
		"--pre-queue-workflow", "filter-blurry", "--post-queue-workflow", "auto-label", "--collect-outputs")

	// List as a table, oldest first.
	rows = tableRows(t, run("collectors", "list", "--app", "dest").stdout, collectorHeader...)
	if len(rows) != 2 || rows[0]["ID"] != "general" || rows[1]["ID"] != "colors" {
		t.Fatalf("collectors list rows = %v, want general then colors", rows)
	}
	if rows[1]["MODEL"] != "clarifai/main/color-recognition@v2" || rows[1]["CALLER"] != "any" || rows[1]["SAMPLE"] != "-" {
		t.Errorf("colors row = %v, want model with @v2, caller any, sample -", rows[1])
	}

	// List as JSON: the whole response, with the key masked.
	list := decodeCollectors(t, run("collectors", "list", "--app", "dest", "-o", "json"))
	if list.GetStatus().GetCode() != pb.StatusCode_SUCCESS || len(list.GetCollectors()) != 2 {
		t.Fatalf("list -o json = status %v with %d collectors, want SUCCESS with 2", list.GetStatus().GetCode(), len(list.GetCollectors()))
	}
	colors := list.GetCollectors()[1]
	colorsSrc := colors.GetCollectorSource().GetApiPostModelOutputsCollectorSource()
	if colors.GetPreQueueWorkflowId() != "filter-blurry" || colors.GetPostQueueWorkflowId() != "auto-label" || !colors.GetCollectOutputs() {
		t.Errorf("colors = workflows %q, %q, collect_outputs %v", colors.GetPreQueueWorkflowId(), colors.GetPostQueueWorkflowId(), colors.GetCollectOutputs())
	}
	if got := colorsSrc.GetPostInputsKeyId(); got != maskOf(postKey) {
		t.Errorf("post_inputs_key_id = %q, want the mask %q", got, maskOf(postKey))
	}

	// Get one, flags after the ID.
	general := decodeCollector(t, run("collectors", "get", "general", "--app", "dest", "-o", "json"))
	if general.GetDescription() != "general traffic" || general.GetPreQueueRandomSample() != 0.25 {
		t.Errorf("get general = description %q, sample %v", general.GetDescription(), general.GetPreQueueRandomSample())
	}

	// Update changes only the flags given.
	r = run("collectors", "update", "general", "--app", "dest", "--description", "half of the traffic", "--sample", "0.5")
	if rows := tableRows(t, r.stdout, collectorHeader...); len(rows) != 1 || rows[0]["SAMPLE"] != "0.5" {
		t.Errorf("update printed %v, want one row with SAMPLE 0.5", rows)
	}
	general = decodeCollector(t, run("collectors", "get", "general", "--app", "dest", "-o", "json"))
	src := general.GetCollectorSource().GetApiPostModelOutputsCollectorSource()
	if general.GetDescription() != "half of the traffic" || general.GetPreQueueRandomSample() != 0.5 {
		t.Errorf("updated general = description %q, sample %v", general.GetDescription(), general.GetPreQueueRandomSample())
	}
	if src.GetCallerUserId() != "bob" || src.GetModelId() != "general-image-recognition" {
		t.Errorf("update changed fields it was not given: caller %q, model %q", src.GetCallerUserId(), src.GetModelId())
	}
	if src.GetPostInputsKeyId() != maskOf(postKey) {
		t.Errorf("post_inputs_key_id after update = %q, want the stored key's mask %q", src.GetPostInputsKeyId(), maskOf(postKey))
	}

	// A false boolean flag is applied too.
	patched := decodeCollectors(t, run("collectors", "update", "colors", "--app", "dest", "--collect-outputs=false", "-o", "json"))
	if len(patched.GetCollectors()) != 1 || patched.GetCollectors()[0].GetCollectOutputs() {
		t.Errorf("update -o json = %v, want colors with collect_outputs false", patched.GetCollectors())
	}
	colors = decodeCollector(t, run("collectors", "get", "colors", "--app", "dest", "-o", "json"))
	if colors.GetCollectOutputs() {
		t.Error("collect_outputs is still true after --collect-outputs=false")
	}
	if !strings.Contains(outputs[len(outputs)-1].stdout, `"collect_outputs": false`) {
		t.Errorf("get -o json leaves out collect_outputs false:\n%s", outputs[len(outputs)-1].stdout)
	}

	// Pause and resume.
	r = run("collectors", "pause", "general", "--app", "dest")
	if rows := tableRows(t, r.stdout, collectorHeader...); len(rows) != 1 || rows[0]["STATUS"] != "paused" {
		t.Errorf("pause printed %v, want general paused", rows)
	}
	if got := decodeCollector(t, run("collectors", "get", "general", "--app", "dest", "-o", "json")).GetStatus().GetCode(); got != pb.StatusCode_COLLECTOR_INACTIVE {
		t.Errorf("status after pause = %v, want COLLECTOR_INACTIVE", got)
	}
	r = run("collectors", "resume", "general", "--app", "dest")
	if rows := tableRows(t, r.stdout, collectorHeader...); len(rows) != 1 || rows[0]["STATUS"] != "active" {
		t.Errorf("resume printed %v, want general active", rows)
	}
	rows = tableRows(t, run("collectors", "pause", "general", "colors", "--app", "dest").stdout, collectorHeader...)
	if len(rows) != 2 || rows[0]["STATUS"] != "paused" || rows[1]["STATUS"] != "paused" {
		t.Errorf("pause of two collectors printed %v, want both paused", rows)
	}

	// Delete one, then all.
	r = run("collectors", "delete", "general", "--app", "dest")
	if want := `deleted from app "dest": general`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("delete printed %q, want %q", r.stdout, want)
	}
	rows = tableRows(t, run("collectors", "list", "--app", "dest").stdout, collectorHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "colors" {
		t.Errorf("list after delete = %v, want colors alone", rows)
	}
	run("collectors", "create", "--app", "dest", "--id", "third", "--model-user", "clarifai",
		"--model-app", "main", "--model", "m", "--sample", "1")
	r = run("collectors", "delete", "--all", "--app", "dest")
	if want := `deleted all collectors of app "dest"`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("delete --all printed %q, want %q", r.stdout, want)
	}
	if rows := tableRows(t, run("collectors", "list", "--app", "dest").stdout, collectorHeader...); len(rows) != 0 {
		t.Errorf("list after delete --all = %v, want no rows", rows)
	}
	empty := decodeCollectors(t, run("collectors", "list", "--app", "dest", "-o", "json"))
	if len(empty.GetCollectors()) != 0 || !strings.Contains(outputs[len(outputs)-1].stdout, `"collectors": []`) {
		t.Errorf("list -o json of no collectors = %q, want \"collectors\": []", outputs[len(outputs)-1].stdout)
	}

	for _, out := range outputs {
		out.requireNoSecrets(t, secrets...)
	}
	n.requireNoSecretsInLogs(secrets...)
}

func TestCollectors_UpdatePostInputsKey(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	firstKey := n.createKey("alice", "--scopes", "Inputs_Add")
	secondKey := n.createKey("alice", "--scopes", "Inputs_Add")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)

	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)
	runCLI(t, "collectors", "create", "--app", "dest", "--id", "c1", "--model-user", "u",
		"--model-app", "a", "--model", "m", "--sample", "1", "--post-inputs-key", firstKey).requireOK(t)

	// COLLECTORD_POST_INPUTS_KEY alone does not change the key on update.
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", secondKey)
	r := runCLI(t, "collectors", "update", "c1", "--app", "dest", "--description", "d", "-o", "json").requireOK(t)
	got := decodeCollectors(t, r).GetCollectors()[0].GetCollectorSource().GetApiPostModelOutputsCollectorSource().GetPostInputsKeyId()
	if got != maskOf(firstKey) {
		t.Errorf("key after update without key flags = %q, want the first key's mask %q", got, maskOf(firstKey))
	}
	r.requireNoSecrets(t, owner, firstKey, secondKey)

	// --post-inputs-key-from-env replaces it.
	r = runCLI(t, "collectors", "update", "c1", "--app", "dest", "--post-inputs-key-from-env", "-o", "json").requireOK(t)
	got = decodeCollectors(t, r).GetCollectors()[0].GetCollectorSource().GetApiPostModelOutputsCollectorSource().GetPostInputsKeyId()
	if got != maskOf(secondKey) {
		t.Errorf("key after --post-inputs-key-from-env = %q, want the second key's mask %q", got, maskOf(secondKey))
	}
	r.requireNoSecrets(t, owner, firstKey, secondKey)

	// A key the server does not know is rejected without being quoted.
	unknown := "unknown-postkey-0123456789abcdef"
	r = runCLI(t, "collectors", "update", "c1", "--app", "dest", "--post-inputs-key", unknown).requireExit(t, 1)
	if !strings.Contains(r.stderr, "CONN_INVALID_REQUEST") || !strings.Contains(r.stderr, "is not a known API key") {
		t.Errorf("stderr = %q, want CONN_INVALID_REQUEST about an unknown key", r.stderr)
	}
	r.requireNoSecrets(t, owner, firstKey, secondKey, unknown)
	n.requireNoSecretsInLogs(owner, firstKey, secondKey, unknown)
}

func TestCollectors_APIErrors(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	readOnly := n.createKey("alice", "--scopes", "Collectors_Get,Apps_Get")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest", "--key", owner).requireOK(t)
	runCLI(t, "collectors", "create", "--app", "dest", "--id", "c1", "--model-user", "u",
		"--model-app", "a", "--model", "m", "--sample", "1", "--key", owner).requireOK(t)

	badKey := "not-a-key-0123456789abcdef"
	tests := []struct {
		name string
		args []string
		// wantStderr are the code name, description and details of the
		// status.
		wantStderr []string
	}{
		{"bad key", []string{"collectors", "list", "--app", "dest", "--key", badKey},
			[]string{"CONN_KEY_NOT_FOUND", "(API key not found)", "details: the API key is not known to this server", "req_id:"}},
		{"unknown collector", []string{"collectors", "get", "nope", "--app", "dest", "--key", owner},
			[]string{"GetCollector failed: HTTP 404", "COLLECTOR_MISSING", "(Collector does not exist)", `collector "nope" not found in app "dest"`}},
		{"pause unknown collector", []string{"collectors", "pause", "nope", "--app", "dest", "--key", owner},
			[]string{"COLLECTOR_MISSING"}},
		{"unknown app", []string{"collectors", "list", "--app", "nowhere", "--key", owner},
			[]string{"CONN_DOES_NOT_EXIST", `app "nowhere" of user "alice" not found`}},
		{"no sampling step", []string{"collectors", "create", "--app", "dest", "--id", "c2", "--model-user", "u",
			"--model-app", "a", "--model", "m", "--key", owner},
			[]string{"CONN_INVALID_REQUEST", "pre_queue_random_sample"}},
		{"duplicate id", []string{"collectors", "create", "--app", "dest", "--id", "c1", "--model-user", "u",
			"--model-app", "a", "--model", "m", "--sample", "1", "--key", owner},
			[]string{"DATABASE_DUPLICATE_KEY", `a collector with id "c1" already exists`}},
		{"missing scope", []string{"collectors", "delete", "c1", "--app", "dest", "--key", readOnly},
			[]string{"CONN_INSUFFICIENT_SCOPES", "Collectors_Add"}},
		{"app exists", []string{"apps", "create", "--id", "dest", "--key", owner},
			[]string{"PostApps failed: HTTP 409", "DATABASE_DUPLICATE_KEY"}},
		{"unknown app get", []string{"apps", "get", "nowhere", "--key", owner},
			[]string{"CONN_DOES_NOT_EXIST"}},
		{"delete unknown", []string{"collectors", "delete", "nope", "--app", "dest", "--key", owner},
			[]string{"COLLECTOR_MISSING", `"nope"`}},
	}
	for _, tt := range tests {
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
			r.requireNoSecrets(t, owner, readOnly, badKey)
		})
	}

	// The collector c1 is still there after all the failed requests.
	runCLI(t, "collectors", "get", "c1", "--app", "dest", "--key", owner).requireOK(t)
	n.requireNoSecretsInLogs(owner, readOnly, badKey)
}

func TestCollectors_PartialDelete(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)
	runCLI(t, "collectors", "create", "--app", "dest", "--id", "c1", "--model-user", "u",
		"--model-app", "a", "--model", "m", "--sample", "1").requireOK(t)

	// HTTP 200 with MIXED_STATUS is a failure of the command.
	r := runCLI(t, "collectors", "delete", "c1", "nope", "--app", "dest").requireExit(t, 1)
	if !strings.Contains(r.stderr, "MIXED_STATUS") || !strings.Contains(r.stderr, "deleted 1 of 2 collectors") {
		t.Errorf("stderr = %q, want MIXED_STATUS with deleted 1 of 2", r.stderr)
	}
	r = runCLI(t, "collectors", "get", "c1", "--app", "dest").requireExit(t, 1)
	if !strings.Contains(r.stderr, "COLLECTOR_MISSING") {
		t.Errorf("c1 still exists after the partial delete: %s", r.stderr)
	}
}

func TestCollectors_ListPages(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_KEY", owner)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", owner)
	runCLI(t, "apps", "create", "--id", "dest").requireOK(t)
	for _, id := range []string{"c1", "c2", "c3"} {
		runCLI(t, "collectors", "create", "--app", "dest", "--id", id, "--model-user", "u",
			"--model-app", "a", "--model", "m", "--sample", "1").requireOK(t)
	}

	pages := map[string][]string{"1": {"c1", "c2"}, "2": {"c3"}, "3": nil}
	for page, want := range pages {
		r := runCLI(t, "collectors", "list", "--app", "dest", "--per-page", "2", "--page", page).requireOK(t)
		var got []string
		for _, row := range tableRows(t, r.stdout, collectorHeader...) {
			got = append(got, row["ID"])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("page %s = %v, want %v", page, got, want)
		}
	}

	r := runCLI(t, "collectors", "list", "--app", "dest", "--per-page", "5000").requireExit(t, 1)
	if !strings.Contains(r.stderr, "per_page 5000 is above the maximum") {
		t.Errorf("stderr = %q, want the server's per_page limit", r.stderr)
	}
}

func TestCollectors_AppKey(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	appKey := n.createKey("alice", "--app", "dest")
	t.Setenv("COLLECTORD_API", n.apiURL)
	t.Setenv("COLLECTORD_POST_INPUTS_KEY", appKey)
	runCLI(t, "apps", "create", "--id", "dest", "--key", owner).requireOK(t)

	// Without --app, the short paths act on the key's own app.
	t.Setenv("COLLECTORD_KEY", appKey)
	runCLI(t, "collectors", "create", "--id", "c1", "--model-user", "u", "--model-app", "a",
		"--model", "m", "--sample", "1").requireOK(t)
	rows := tableRows(t, runCLI(t, "collectors", "list").requireOK(t).stdout, collectorHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "c1" {
		t.Errorf("list with an app key = %v, want c1", rows)
	}
	rows = tableRows(t, runCLI(t, "collectors", "list", "--app", "dest", "--key", owner).requireOK(t).stdout, collectorHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "c1" {
		t.Errorf("list of app dest with the personal key = %v, want c1 created with the app key", rows)
	}
	r := runCLI(t, "collectors", "delete", "--all").requireOK(t)
	if want := "deleted all collectors of the key's app"; strings.TrimSpace(r.stdout) != want {
		t.Errorf("delete --all printed %q, want %q", r.stdout, want)
	}

	// Without --app and with a personal key, the API names the problem.
	r = runCLI(t, "collectors", "list", "--key", owner).requireExit(t, 1)
	if !strings.Contains(r.stderr, "names no app") {
		t.Errorf("stderr = %q, want the API's message about the missing app", r.stderr)
	}
}
