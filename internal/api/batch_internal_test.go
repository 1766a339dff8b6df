package api

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestUpdateBatch_RestoresOnFailure fails the third update of a batch: the
// first two get their previous values back, and a failed restore is
// reported.
func TestUpdateBatch_RestoresOnFailure(t *testing.T) {
	stored := map[string]string{"a": "a0", "b": "b0", "c": "c0"}
	errBroken := errors.New("broken")
	update := func(_ context.Context, kv [2]string) error {
		if kv[1] == "c1" || kv[1] == "b0-restore-fails" {
			return errBroken
		}
		stored[kv[0]] = kv[1]
		return nil
	}

	updates := [][2]string{{"a", "a1"}, {"b", "b1"}, {"c", "c1"}}
	previous := [][2]string{{"a", "a0"}, {"b", "b0"}, {"c", "c0"}}
	var failedRestores []string
	i, err := updateBatch(context.Background(), updates, previous, update, func(kv [2]string, _ error) {
		failedRestores = append(failedRestores, kv[0])
	})

	if i != 2 || !errors.Is(err, errBroken) {
		t.Fatalf("updateBatch = %d, %v, want 2, %v", i, err, errBroken)
	}
	if stored["a"] != "a0" || stored["b"] != "b0" || stored["c"] != "c0" {
		t.Errorf("stored = %v, want every item back at its previous value", stored)
	}
	if len(failedRestores) != 0 {
		t.Errorf("failed restores = %v, want none", failedRestores)
	}

	previous[1][1] = "b0-restore-fails"
	_, _ = updateBatch(context.Background(), updates, previous, update, func(kv [2]string, _ error) {
		failedRestores = append(failedRestores, kv[0])
	})
	if !slices.Equal(failedRestores, []string{"b"}) {
		t.Errorf("failed restores = %v, want [b]", failedRestores)
	}
}

// TestUpdateBatch_AllSucceed stores every item and reports no failure.
func TestUpdateBatch_AllSucceed(t *testing.T) {
	var calls int
	i, err := updateBatch(context.Background(), []int{1, 2, 3}, []int{0, 0, 0}, func(context.Context, int) error {
		calls++
		return nil
	}, func(int, error) { t.Error("restore called without a failure") })
	if i != 0 || err != nil || calls != 3 {
		t.Errorf("updateBatch = %d, %v after %d calls, want 0, nil after 3", i, err, calls)
	}
}
