package cli_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

var appHeader = []string{"ID", "NAME", "DESCRIPTION", "CREATED"}

func TestApps_CreateListGet(t *testing.T) {
	isolateEnv(t)
	n := startNode(t)
	owner := n.createKey("alice")
	appKey := n.createKey("alice", "--app", "second")
	t.Setenv("COLLECTORD_API", n.apiURL)

	// The key comes from --key here; the other tests use COLLECTORD_KEY.
	r := runCLI(t, "apps", "create", "--id", "dest", "--name", "Destination", "--key", owner).requireOK(t)
	rows := tableRows(t, r.stdout, appHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "dest" || rows[0]["NAME"] != "Destination" || rows[0]["DESCRIPTION"] != "-" {
		t.Errorf("apps create printed %v, want dest named Destination without description", rows)
	}
	runCLI(t, "apps", "create", "--id", "second", "--description", "for the app key", "--key", owner).requireOK(t)

	rows = tableRows(t, runCLI(t, "apps", "list", "--key", owner).requireOK(t).stdout, appHeader...)
	if len(rows) != 2 || rows[0]["ID"] != "dest" || rows[1]["ID"] != "second" || rows[1]["DESCRIPTION"] != "for the app key" {
		t.Errorf("apps list = %v, want dest and second", rows)
	}

	r = runCLI(t, "apps", "list", "--per-page", "1", "--page", "2", "--key", owner, "-o", "json").requireOK(t)
	list := &pb.MultiAppResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), list); err != nil {
		t.Fatalf("apps list -o json: decode %q: %v", r.stdout, err)
	}
	if len(list.GetApps()) != 1 || list.GetApps()[0].GetId() != "second" || list.GetApps()[0].GetUserId() != "alice" {
		t.Errorf("apps list page 2 = %v, want second of alice", list.GetApps())
	}

	// get by argument, by --app, and without either for an app key.
	for _, args := range [][]string{
		{"apps", "get", "dest", "--key", owner},
		{"apps", "get", "--app", "dest", "--key", owner},
	} {
		rows = tableRows(t, runCLI(t, args...).requireOK(t).stdout, appHeader...)
		if len(rows) != 1 || rows[0]["ID"] != "dest" {
			t.Errorf("collectord %s = %v, want dest", strings.Join(args, " "), rows)
		}
	}
	rows = tableRows(t, runCLI(t, "apps", "get", "--key", appKey).requireOK(t).stdout, appHeader...)
	if len(rows) != 1 || rows[0]["ID"] != "second" {
		t.Errorf("apps get with an app key = %v, want second", rows)
	}

	// An app key cannot create apps.
	r = runCLI(t, "apps", "create", "--id", "third", "--key", appKey).requireExit(t, 1)
	if !strings.Contains(r.stderr, "CONN_INSUFFICIENT_SCOPES") || !strings.Contains(r.stderr, "cannot create apps") {
		t.Errorf("stderr = %q, want CONN_INSUFFICIENT_SCOPES for an app key", r.stderr)
	}
	r.requireNoSecrets(t, owner, appKey)
	n.requireNoSecretsInLogs(owner, appKey)
}
