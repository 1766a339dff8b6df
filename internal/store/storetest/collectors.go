package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/collectord/collectord/internal/collector"
)

// NewCollector returns a valid collector owned by userID/appID that captures
// predicts of model m/apps/main/general by any caller.
func NewCollector(userID, appID, id string) collector.Collector {
	return collector.Collector{
		UserID:      userID,
		AppID:       appID,
		ID:          id,
		Description: "collector " + id,
		Model: collector.ModelRef{
			UserID:  "m",
			AppID:   "main",
			ModelID: "general",
		},
		PostInputsKey:       "secret-post-key-" + id,
		PreQueueWorkflowID:  "pre",
		PostQueueWorkflowID: "post",
		RandomSample:        0.25,
		CollectOutputs:      true,
	}
}

// RunCollectors covers insert, get, update, list, delete and OnChange.
func RunCollectors(t *testing.T, open Factory) {
	t.Run("InsertGet", func(t *testing.T) { testCollectorInsertGet(t, open(t)) })
	t.Run("InsertDuplicate", func(t *testing.T) { testCollectorInsertDuplicate(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testCollectorUpdate(t, open(t)) })
	t.Run("UpdateMissing", func(t *testing.T) { testCollectorUpdateMissing(t, open(t)) })
	t.Run("GetMissing", func(t *testing.T) { testCollectorGetMissing(t, open(t)) })
	t.Run("List", func(t *testing.T) { testCollectorList(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testCollectorDelete(t, open(t)) })
	t.Run("DeleteAll", func(t *testing.T) { testCollectorDeleteAll(t, open(t)) })
	t.Run("OnChange", func(t *testing.T) { testCollectorOnChange(t, open(t)) })
}

func testCollectorInsertGet(t *testing.T, s Store) {
	ctx := context.Background()
	want := NewCollector("u1", "a1", "c1")
	want.CallerUserID = "caller"
	want.Model.VersionID = "v7"
	want.Paused = true

	if err := s.InsertCollector(ctx, want); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	got, err := s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}

	if got.Version != 1 {
		t.Errorf("Version = %d, want 1 after insert", got.Version)
	}
	if got.CreatedAt.IsZero() || got.ModifiedAt.IsZero() {
		t.Errorf("CreatedAt = %v, ModifiedAt = %v; both should be set", got.CreatedAt, got.ModifiedAt)
	}
	requireSameCollector(t, got, want)
}

func testCollectorInsertDuplicate(t *testing.T, s Store) {
	ctx := context.Background()
	c := NewCollector("u1", "a1", "c1")
	if err := s.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}

	err := s.InsertCollector(ctx, c)
	if !errors.Is(err, collector.ErrAlreadyExists) {
		t.Errorf("second InsertCollector error = %v, want ErrAlreadyExists", err)
	}

	// The same ID in another app is a different collector.
	other := NewCollector("u1", "a2", "c1")
	if err := s.InsertCollector(ctx, other); err != nil {
		t.Errorf("InsertCollector in another app: %v", err)
	}
}

func testCollectorUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	c := NewCollector("u1", "a1", "c1")
	if err := s.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	before, err := s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}

	c.Description = "changed"
	c.Paused = true
	c.CallerUserID = "someone"
	c.Model = collector.ModelRef{UserID: "m2", AppID: "a2", ModelID: "other", VersionID: "v2"}
	c.RandomSample = 1
	c.CollectOutputs = false
	c.PostInputsKey = "new-key"
	for i := 0; i < 2; i++ {
		if err := s.UpdateCollector(ctx, c); err != nil {
			t.Fatalf("UpdateCollector #%d: %v", i+1, err)
		}
	}

	got, err := s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	if got.Version != before.Version+2 {
		t.Errorf("Version = %d after two updates, want %d", got.Version, before.Version+2)
	}
	if !got.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("CreatedAt changed from %v to %v", before.CreatedAt, got.CreatedAt)
	}
	if got.ModifiedAt.Before(before.ModifiedAt) {
		t.Errorf("ModifiedAt went back from %v to %v", before.ModifiedAt, got.ModifiedAt)
	}
	requireSameCollector(t, got, c)
}

func testCollectorUpdateMissing(t *testing.T, s Store) {
	err := s.UpdateCollector(context.Background(), NewCollector("u1", "a1", "nope"))
	if !errors.Is(err, collector.ErrNotFound) {
		t.Errorf("UpdateCollector error = %v, want ErrNotFound", err)
	}
}

func testCollectorGetMissing(t *testing.T, s Store) {
	_, err := s.GetCollector(context.Background(), "u1", "a1", "nope")
	if !errors.Is(err, collector.ErrNotFound) {
		t.Errorf("GetCollector error = %v, want ErrNotFound", err)
	}
}

func testCollectorList(t *testing.T, s Store) {
	ctx := context.Background()
	// Inserted in an order different from the IDs' order, so that ordering
	// by creation is distinguishable from ordering by ID.
	ids := []string{"c3", "c1", "c4", "c2", "c5"}
	for _, id := range ids {
		if err := s.InsertCollector(ctx, NewCollector("u1", "a1", id)); err != nil {
			t.Fatalf("InsertCollector %s: %v", id, err)
		}
	}
	if err := s.InsertCollector(ctx, NewCollector("u1", "other", "x")); err != nil {
		t.Fatalf("InsertCollector in other app: %v", err)
	}

	all, err := s.ListCollectors(ctx, "u1", "a1", 0, 100)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	requireIDs(t, "all", collectorIDs(all), ids)

	page, err := s.ListCollectors(ctx, "u1", "a1", 1, 2)
	if err != nil {
		t.Fatalf("ListCollectors offset 1 limit 2: %v", err)
	}
	requireIDs(t, "offset 1 limit 2", collectorIDs(page), ids[1:3])

	tail, err := s.ListCollectors(ctx, "u1", "a1", 4, 10)
	if err != nil {
		t.Fatalf("ListCollectors offset 4: %v", err)
	}
	requireIDs(t, "offset 4", collectorIDs(tail), ids[4:])

	past, err := s.ListCollectors(ctx, "u1", "a1", 10, 10)
	if err != nil {
		t.Fatalf("ListCollectors past the end: %v", err)
	}
	requireIDs(t, "past the end", collectorIDs(past), nil)

	unlimited, err := s.ListCollectors(ctx, "u1", "a1", 2, 0)
	if err != nil {
		t.Fatalf("ListCollectors limit 0: %v", err)
	}
	requireIDs(t, "offset 2 limit 0", collectorIDs(unlimited), ids[2:])
}

func testCollectorDelete(t *testing.T, s Store) {
	ctx := context.Background()
	for _, id := range []string{"c1", "c2"} {
		if err := s.InsertCollector(ctx, NewCollector("u1", "a1", id)); err != nil {
			t.Fatalf("InsertCollector %s: %v", id, err)
		}
	}

	if err := s.DeleteCollector(ctx, "u1", "a1", "c1"); err != nil {
		t.Fatalf("DeleteCollector: %v", err)
	}
	if _, err := s.GetCollector(ctx, "u1", "a1", "c1"); !errors.Is(err, collector.ErrNotFound) {
		t.Errorf("GetCollector after delete error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetCollector(ctx, "u1", "a1", "c2"); err != nil {
		t.Errorf("GetCollector of the other collector: %v", err)
	}

	err := s.DeleteCollector(ctx, "u1", "a1", "c1")
	if !errors.Is(err, collector.ErrNotFound) {
		t.Errorf("second DeleteCollector error = %v, want ErrNotFound", err)
	}
}

func testCollectorDeleteAll(t *testing.T, s Store) {
	ctx := context.Background()
	for _, id := range []string{"c1", "c2", "c3"} {
		if err := s.InsertCollector(ctx, NewCollector("u1", "a1", id)); err != nil {
			t.Fatalf("InsertCollector %s: %v", id, err)
		}
	}
	if err := s.InsertCollector(ctx, NewCollector("u1", "keep", "c1")); err != nil {
		t.Fatalf("InsertCollector in other app: %v", err)
	}

	n, err := s.DeleteAllCollectors(ctx, "u1", "a1")
	if err != nil {
		t.Fatalf("DeleteAllCollectors: %v", err)
	}
	if n != 3 {
		t.Errorf("DeleteAllCollectors = %d, want 3", n)
	}

	left, err := s.ListCollectors(ctx, "u1", "a1", 0, 10)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	requireIDs(t, "deleted app", collectorIDs(left), nil)

	kept, err := s.ListCollectors(ctx, "u1", "keep", 0, 10)
	if err != nil {
		t.Fatalf("ListCollectors other app: %v", err)
	}
	requireIDs(t, "other app", collectorIDs(kept), []string{"c1"})

	n, err = s.DeleteAllCollectors(ctx, "u1", "a1")
	if err != nil {
		t.Fatalf("DeleteAllCollectors on an empty app: %v", err)
	}
	if n != 0 {
		t.Errorf("DeleteAllCollectors on an empty app = %d, want 0", n)
	}
}

func testCollectorOnChange(t *testing.T, s Store) {
	ctx := context.Background()
	var first, second atomic.Int64
	s.OnChange(func() { first.Add(1) })
	s.OnChange(func() {
		second.Add(1)
		// A listener may read the store: it runs outside the store's locks.
		if _, err := s.ListCollectors(ctx, "u1", "a1", 0, 10); err != nil {
			t.Errorf("ListCollectors inside a listener: %v", err)
		}
	})

	c := NewCollector("u1", "a1", "c1")
	steps := []struct {
		name string
		run  func() error
	}{
		{"insert", func() error { return s.InsertCollector(ctx, c) }},
		{"update", func() error { return s.UpdateCollector(ctx, c) }},
		{"delete", func() error { return s.DeleteCollector(ctx, "u1", "a1", "c1") }},
		{"insert again", func() error { return s.InsertCollector(ctx, c) }},
		{"delete all", func() error { _, err := s.DeleteAllCollectors(ctx, "u1", "a1"); return err }},
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

	// Failed writes change nothing, so listeners do not run.
	before := first.Load()
	_ = s.UpdateCollector(ctx, NewCollector("u1", "a1", "missing"))
	_ = s.DeleteCollector(ctx, "u1", "a1", "missing")
	if err := s.InsertCollector(ctx, c); err != nil {
		t.Fatalf("insert again: %v", err)
	}
	_ = s.InsertCollector(ctx, c)
	if got := first.Load(); got != before+1 {
		t.Errorf("listener ran %d times for one successful write among failed ones, want 1", got-before)
	}
}

// requireSameCollector compares every stored field but the ones the store
// sets (timestamps and Version).
func requireSameCollector(t *testing.T, got, want collector.Collector) {
	t.Helper()
	got.CreatedAt, got.ModifiedAt, got.Version = want.CreatedAt, want.ModifiedAt, want.Version
	if got != want {
		t.Errorf("collector mismatch:\n got  %s\n want %s", describeCollector(got), describeCollector(want))
	}
}

// describeCollector formats a collector for a failure message with its
// post-inputs key masked.
func describeCollector(c collector.Collector) string {
	if c.PostInputsKey != "" {
		c.PostInputsKey = fmt.Sprintf("<%d bytes>", len(c.PostInputsKey))
	}
	return fmt.Sprintf("%+v", c)
}

func collectorIDs(cs []collector.Collector) []string {
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

func requireIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: IDs = %v, want %v", what, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: IDs = %v, want %v", what, got, want)
			return
		}
	}
}
