package storetest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/workflow"
)

// NewWorkflow returns a workflow owned by userID/appID with two chained
// nodes and some metadata.
func NewWorkflow(userID, appID, id string) workflow.Workflow {
	return workflow.Workflow{
		UserID:      userID,
		AppID:       appID,
		ID:          id,
		Description: "workflow " + id,
		Nodes: []*clarifaipb.WorkflowNode{
			{Id: "sample", Model: &clarifaipb.Model{Id: "random-sample"}},
			{
				Id:         "threshold",
				Model:      &clarifaipb.Model{Id: "concept-thresholder"},
				NodeInputs: []*clarifaipb.NodeInput{{NodeId: "sample"}},
			},
		},
		Metadata: map[string]any{
			"team":      "vision",
			"threshold": 0.5,
			"tags":      []any{"a", "b"},
			"nested":    map[string]any{"on": true},
		},
	}
}

// RunWorkflows covers insert, get, update, list, delete, the in-use check
// and OnWorkflowChange.
func RunWorkflows(t *testing.T, open Factory) {
	t.Run("InsertGet", func(t *testing.T) { testWorkflowInsertGet(t, open(t)) })
	t.Run("InsertDuplicate", func(t *testing.T) { testWorkflowInsertDuplicate(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testWorkflowUpdate(t, open(t)) })
	t.Run("UpdateMissing", func(t *testing.T) { testWorkflowUpdateMissing(t, open(t)) })
	t.Run("GetMissing", func(t *testing.T) { testWorkflowGetMissing(t, open(t)) })
	t.Run("List", func(t *testing.T) { testWorkflowList(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testWorkflowDelete(t, open(t)) })
	t.Run("DeleteInUse", func(t *testing.T) { testWorkflowDeleteInUse(t, open(t)) })
	t.Run("OnWorkflowChange", func(t *testing.T) { testWorkflowOnChange(t, open(t)) })
}

func testWorkflowInsertGet(t *testing.T, s Store) {
	ctx := context.Background()
	want := NewWorkflow("u1", "a1", "wf1")
	if err := s.InsertWorkflow(ctx, want); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}

	got, err := s.GetWorkflow(ctx, "u1", "a1", "wf1")
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}
	if got.Version != 1 {
		t.Errorf("Version = %d, want 1 after insert", got.Version)
	}
	if got.CreatedAt.IsZero() || got.ModifiedAt.IsZero() {
		t.Errorf("CreatedAt = %v, ModifiedAt = %v; both should be set", got.CreatedAt, got.ModifiedAt)
	}
	requireSameWorkflow(t, got, want)

	// A workflow without metadata reads back without metadata.
	bare := NewWorkflow("u1", "a1", "bare")
	bare.Metadata = nil
	bare.Nodes = nil
	if err := s.InsertWorkflow(ctx, bare); err != nil {
		t.Fatalf("InsertWorkflow without metadata: %v", err)
	}
	got, err = s.GetWorkflow(ctx, "u1", "a1", "bare")
	if err != nil {
		t.Fatalf("GetWorkflow without metadata: %v", err)
	}
	requireSameWorkflow(t, got, bare)
}

func testWorkflowInsertDuplicate(t *testing.T, s Store) {
	ctx := context.Background()
	w := NewWorkflow("u1", "a1", "wf1")
	if err := s.InsertWorkflow(ctx, w); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}

	err := s.InsertWorkflow(ctx, w)
	if !errors.Is(err, workflow.ErrAlreadyExists) {
		t.Errorf("second InsertWorkflow error = %v, want ErrAlreadyExists", err)
	}

	// The same ID in another app is a different workflow.
	if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a2", "wf1")); err != nil {
		t.Errorf("InsertWorkflow in another app: %v", err)
	}
	if err := s.InsertWorkflow(ctx, NewWorkflow("u2", "a1", "wf1")); err != nil {
		t.Errorf("InsertWorkflow of another user: %v", err)
	}
}

func testWorkflowUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	w := NewWorkflow("u1", "a1", "wf1")
	if err := s.InsertWorkflow(ctx, w); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}
	before, err := s.GetWorkflow(ctx, "u1", "a1", "wf1")
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}

	w.Description = "changed"
	w.Nodes = []*clarifaipb.WorkflowNode{{Id: "only", Model: &clarifaipb.Model{Id: "max-probability-below"}}}
	w.Metadata = map[string]any{"owner": "someone else"}
	// The store sets Version itself, whatever the caller passes.
	w.Version = 42
	for i := 0; i < 2; i++ {
		if err := s.UpdateWorkflow(ctx, w); err != nil {
			t.Fatalf("UpdateWorkflow #%d: %v", i+1, err)
		}
		got, err := s.GetWorkflow(ctx, "u1", "a1", "wf1")
		if err != nil {
			t.Fatalf("GetWorkflow after update #%d: %v", i+1, err)
		}
		if want := before.Version + int64(i) + 1; got.Version != want {
			t.Errorf("Version = %d after %d updates, want %d", got.Version, i+1, want)
		}
	}

	got, err := s.GetWorkflow(ctx, "u1", "a1", "wf1")
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}
	if !got.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("CreatedAt changed from %v to %v", before.CreatedAt, got.CreatedAt)
	}
	if got.ModifiedAt.Before(before.ModifiedAt) {
		t.Errorf("ModifiedAt went back from %v to %v", before.ModifiedAt, got.ModifiedAt)
	}
	requireSameWorkflow(t, got, w)

	// Removing the metadata is an update too.
	w.Metadata = nil
	if err := s.UpdateWorkflow(ctx, w); err != nil {
		t.Fatalf("UpdateWorkflow without metadata: %v", err)
	}
	got, err = s.GetWorkflow(ctx, "u1", "a1", "wf1")
	if err != nil {
		t.Fatalf("GetWorkflow: %v", err)
	}
	if got.Metadata != nil {
		t.Errorf("Metadata = %v after it was removed, want nil", got.Metadata)
	}
}

func testWorkflowUpdateMissing(t *testing.T, s Store) {
	err := s.UpdateWorkflow(context.Background(), NewWorkflow("u1", "a1", "nope"))
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("UpdateWorkflow error = %v, want ErrNotFound", err)
	}
}

func testWorkflowGetMissing(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a1", "wf1")); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}

	_, err := s.GetWorkflow(ctx, "u1", "a1", "nope")
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("GetWorkflow of a missing ID error = %v, want ErrNotFound", err)
	}
	_, err = s.GetWorkflow(ctx, "u1", "a2", "wf1")
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("GetWorkflow in another app error = %v, want ErrNotFound", err)
	}
}

func testWorkflowList(t *testing.T, s Store) {
	ctx := context.Background()
	// Inserted in an order different from the IDs' order, so that ordering
	// by creation is distinguishable from ordering by ID.
	ids := []string{"w3", "w1", "w4", "w2", "w5"}
	for _, id := range ids {
		if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a1", id)); err != nil {
			t.Fatalf("InsertWorkflow %s: %v", id, err)
		}
	}
	if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "other", "x")); err != nil {
		t.Fatalf("InsertWorkflow in other app: %v", err)
	}

	all, err := s.ListWorkflows(ctx, "u1", "a1", 0, 100)
	if err != nil {
		t.Fatalf("ListWorkflows: %v", err)
	}
	requireIDs(t, "all", workflowIDs(all), ids)
	if len(all) > 0 {
		requireSameWorkflow(t, all[0], NewWorkflow("u1", "a1", ids[0]))
	}

	page, err := s.ListWorkflows(ctx, "u1", "a1", 1, 2)
	if err != nil {
		t.Fatalf("ListWorkflows offset 1 limit 2: %v", err)
	}
	requireIDs(t, "offset 1 limit 2", workflowIDs(page), ids[1:3])

	tail, err := s.ListWorkflows(ctx, "u1", "a1", 4, 10)
	if err != nil {
		t.Fatalf("ListWorkflows offset 4: %v", err)
	}
	requireIDs(t, "offset 4", workflowIDs(tail), ids[4:])

	past, err := s.ListWorkflows(ctx, "u1", "a1", 10, 10)
	if err != nil {
		t.Fatalf("ListWorkflows past the end: %v", err)
	}
	requireIDs(t, "past the end", workflowIDs(past), nil)

	unlimited, err := s.ListWorkflows(ctx, "u1", "a1", 2, 0)
	if err != nil {
		t.Fatalf("ListWorkflows limit 0: %v", err)
	}
	requireIDs(t, "offset 2 limit 0", workflowIDs(unlimited), ids[2:])

	// An update changes ModifiedAt but not the creation order.
	if err := s.UpdateWorkflow(ctx, NewWorkflow("u1", "a1", ids[0])); err != nil {
		t.Fatalf("UpdateWorkflow: %v", err)
	}
	all, err = s.ListWorkflows(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListWorkflows after update: %v", err)
	}
	requireIDs(t, "after update", workflowIDs(all), ids)
}

func testWorkflowDelete(t *testing.T, s Store) {
	ctx := context.Background()
	for _, id := range []string{"wf1", "wf2"} {
		if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a1", id)); err != nil {
			t.Fatalf("InsertWorkflow %s: %v", id, err)
		}
	}

	if err := s.DeleteWorkflow(ctx, "u1", "a1", "wf1"); err != nil {
		t.Fatalf("DeleteWorkflow: %v", err)
	}
	if _, err := s.GetWorkflow(ctx, "u1", "a1", "wf1"); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("GetWorkflow after delete error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetWorkflow(ctx, "u1", "a1", "wf2"); err != nil {
		t.Errorf("GetWorkflow of the other workflow: %v", err)
	}

	err := s.DeleteWorkflow(ctx, "u1", "a1", "wf1")
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("second DeleteWorkflow error = %v, want ErrNotFound", err)
	}

	// The ID is free again.
	if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a1", "wf1")); err != nil {
		t.Errorf("InsertWorkflow after delete: %v", err)
	}
}

func testWorkflowDeleteInUse(t *testing.T, s Store) {
	ctx := context.Background()
	for _, id := range []string{"pre-wf", "post-wf", "free"} {
		if err := s.InsertWorkflow(ctx, NewWorkflow("u1", "a1", id)); err != nil {
			t.Fatalf("InsertWorkflow %s: %v", id, err)
		}
	}
	pre := NewCollector("u1", "a1", "uses-pre")
	pre.PreQueueWorkflowID, pre.PostQueueWorkflowID = "pre-wf", ""
	post := NewCollector("u1", "a1", "uses-post")
	post.PreQueueWorkflowID, post.PostQueueWorkflowID = "", "post-wf"
	// A collector of another app that names "free" does not use this app's
	// workflow of that ID.
	elsewhere := NewCollector("u1", "a2", "elsewhere")
	elsewhere.PreQueueWorkflowID = "free"
	for _, c := range []struct {
		name string
		id   string
		err  error
	}{
		{"pre", pre.ID, s.InsertCollector(ctx, pre)},
		{"post", post.ID, s.InsertCollector(ctx, post)},
		{"elsewhere", elsewhere.ID, s.InsertCollector(ctx, elsewhere)},
	} {
		if c.err != nil {
			t.Fatalf("InsertCollector %s: %v", c.id, c.err)
		}
	}

	cases := []struct {
		workflowID, collectorID, role string
	}{
		{"pre-wf", "uses-pre", "pre-queue"},
		{"post-wf", "uses-post", "post-queue"},
	}
	for _, tc := range cases {
		err := s.DeleteWorkflow(ctx, "u1", "a1", tc.workflowID)
		if !errors.Is(err, workflow.ErrInUse) {
			t.Errorf("DeleteWorkflow %s error = %v, want ErrInUse", tc.workflowID, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+tc.collectorID+`"`) {
			t.Errorf("DeleteWorkflow %s error %q does not name collector %q", tc.workflowID, err, tc.collectorID)
		}
		if !strings.Contains(err.Error(), tc.role) {
			t.Errorf("DeleteWorkflow %s error %q does not say %s", tc.workflowID, err, tc.role)
		}
		if _, err := s.GetWorkflow(ctx, "u1", "a1", tc.workflowID); err != nil {
			t.Errorf("GetWorkflow %s after the rejected delete: %v", tc.workflowID, err)
		}
	}

	if err := s.DeleteWorkflow(ctx, "u1", "a1", "free"); err != nil {
		t.Errorf("DeleteWorkflow of a workflow no collector of the app names: %v", err)
	}

	// Once no collector names it, the workflow can go.
	pre.PreQueueWorkflowID = "other"
	if err := s.UpdateCollector(ctx, pre); err != nil {
		t.Fatalf("UpdateCollector: %v", err)
	}
	if err := s.DeleteWorkflow(ctx, "u1", "a1", "pre-wf"); err != nil {
		t.Errorf("DeleteWorkflow after the collector changed: %v", err)
	}
	if err := s.DeleteCollector(ctx, "u1", "a1", "uses-post"); err != nil {
		t.Fatalf("DeleteCollector: %v", err)
	}
	if err := s.DeleteWorkflow(ctx, "u1", "a1", "post-wf"); err != nil {
		t.Errorf("DeleteWorkflow after the collector was deleted: %v", err)
	}
}

func testWorkflowOnChange(t *testing.T, s Store) {
	ctx := context.Background()
	var first, second, collectorChanges atomic.Int64
	s.OnWorkflowChange(func() { first.Add(1) })
	s.OnWorkflowChange(func() {
		second.Add(1)
		// A listener may read the store: it runs outside the store's locks.
		if _, err := s.ListWorkflows(ctx, "u1", "a1", 0, 10); err != nil {
			t.Errorf("ListWorkflows inside a listener: %v", err)
		}
	})
	s.OnChange(func() { collectorChanges.Add(1) })

	w := NewWorkflow("u1", "a1", "wf1")
	steps := []struct {
		name string
		run  func() error
	}{
		{"insert", func() error { return s.InsertWorkflow(ctx, w) }},
		{"update", func() error { return s.UpdateWorkflow(ctx, w) }},
		{"delete", func() error { return s.DeleteWorkflow(ctx, "u1", "a1", "wf1") }},
		{"insert again", func() error { return s.InsertWorkflow(ctx, w) }},
	}
	for i, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := first.Load(); got != int64(i+1) {
			t.Errorf("after %s: first listener ran %d times, want %d", step.name, got, i+1)
		}
		if got := second.Load(); got != int64(i+1) {
			t.Errorf("after %s: second listener ran %d times, want %d", step.name, got, i+1)
		}
	}
	if got := collectorChanges.Load(); got != 0 {
		t.Errorf("collector listener ran %d times for workflow writes, want 0", got)
	}

	// Failed writes change nothing, so listeners do not run.
	c := NewCollector("u1", "a1", "c1")
	c.PreQueueWorkflowID = "wf1"
	if err := s.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	before := first.Load()
	_ = s.InsertWorkflow(ctx, w)
	_ = s.UpdateWorkflow(ctx, NewWorkflow("u1", "a1", "missing"))
	_ = s.DeleteWorkflow(ctx, "u1", "a1", "missing")
	_ = s.DeleteWorkflow(ctx, "u1", "a1", "wf1")
	if got := first.Load(); got != before {
		t.Errorf("listener ran %d times for failed writes, want 0", got-before)
	}
	if got := collectorChanges.Load(); got != 1 {
		t.Errorf("collector listener ran %d times for one collector write, want 1", got)
	}
}

// requireSameWorkflow compares every stored field but the ones the store
// sets (timestamps and Version).
func requireSameWorkflow(t *testing.T, got, want workflow.Workflow) {
	t.Helper()
	if got.UserID != want.UserID || got.AppID != want.AppID || got.ID != want.ID {
		t.Errorf("workflow name = %s/%s/%s, want %s/%s/%s", got.UserID, got.AppID, got.ID, want.UserID, want.AppID, want.ID)
	}
	if got.Description != want.Description {
		t.Errorf("Description = %q, want %q", got.Description, want.Description)
	}
	if !reflect.DeepEqual(got.Metadata, want.Metadata) {
		t.Errorf("Metadata = %#v, want %#v", got.Metadata, want.Metadata)
	}
	if len(got.Nodes) != len(want.Nodes) {
		t.Errorf("workflow has %d nodes, want %d", len(got.Nodes), len(want.Nodes))
		return
	}
	for i := range got.Nodes {
		if !proto.Equal(got.Nodes[i], want.Nodes[i]) {
			t.Errorf("node %d = %v, want %v", i, got.Nodes[i], want.Nodes[i])
		}
	}
}

func workflowIDs(ws []workflow.Workflow) []string {
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	return ids
}
