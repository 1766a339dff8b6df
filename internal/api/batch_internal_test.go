package api

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestApplyBatch_UndoesOnFailure fails the third item of a batch: the first
// two get their previous values back, and a failed undo is reported.
func TestApplyBatch_UndoesOnFailure(t *testing.T) {
	stored := map[string]string{"a": "a0", "b": "b0", "c": "c0"}
	errBroken := errors.New("broken")
	store := func(key, value string) error {
		if value == "c1" || value == "b0-restore-fails" {
			return errBroken
		}
		stored[key] = value
		return nil
	}

	updates := [][2]string{{"a", "a1"}, {"b", "b1"}, {"c", "c1"}}
	previous := [][2]string{{"a", "a0"}, {"b", "b0"}, {"c", "c0"}}
	apply := func(_ context.Context, i int) error { return store(updates[i][0], updates[i][1]) }
	undo := func(_ context.Context, i int) error { return store(previous[i][0], previous[i][1]) }
	var failedUndos []string
	undoFailed := func(i int, _ error) { failedUndos = append(failedUndos, previous[i][0]) }

	i, err := applyBatch(context.Background(), len(updates), apply, undo, undoFailed)
	if i != 2 || !errors.Is(err, errBroken) {
		t.Fatalf("applyBatch = %d, %v, want 2, %v", i, err, errBroken)
	}
	if stored["a"] != "a0" || stored["b"] != "b0" || stored["c"] != "c0" {
		t.Errorf("stored = %v, want every item back at its previous value", stored)
	}
	if len(failedUndos) != 0 {
		t.Errorf("failed undos = %v, want none", failedUndos)
	}

	previous[1][1] = "b0-restore-fails"
	_, _ = applyBatch(context.Background(), len(updates), apply, undo, undoFailed)
	if !slices.Equal(failedUndos, []string{"b"}) {
		t.Errorf("failed undos = %v, want [b]", failedUndos)
	}
}

// TestApplyBatch_AllSucceed applies every item and undoes nothing.
func TestApplyBatch_AllSucceed(t *testing.T) {
	var calls int
	apply := func(context.Context, int) error {
		calls++
		return nil
	}
	undo := func(context.Context, int) error {
		t.Error("undo called without a failure")
		return nil
	}
	i, err := applyBatch(context.Background(), 3, apply, undo, func(int, error) {})
	if i != 0 || err != nil || calls != 3 {
		t.Errorf("applyBatch = %d, %v after %d calls, want 0, nil after 3", i, err, calls)
	}
}
