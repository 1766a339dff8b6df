package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/collector"
)

// RunPolicy covers the collector policy through insert, update, get, list
// and match.
func RunPolicy(t *testing.T, open Factory) {
	t.Run("RoundTrip", func(t *testing.T) { testPolicyRoundTrip(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testPolicyUpdate(t, open(t)) })
}

// fullPolicy sets every field to a value no other field shares, so a
// swapped column shows.
func fullPolicy() collector.Policy {
	return collector.Policy{
		MaxPerHour:    120,
		MaxPerDay:     2000,
		DedupWindow:   90 * time.Minute,
		MaxPerConcept: 7,
		BalanceWindow: 36*time.Hour + 250*time.Millisecond,
		Preview:       true,
	}
}

func testPolicyRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	want := NewCollector("u1", "a1", "c1")
	want.Policy = fullPolicy()
	if err := s.InsertCollector(ctx, want); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	// A collector without a policy reads back with the zero policy.
	if err := s.InsertCollector(ctx, NewCollector("u1", "a1", "plain")); err != nil {
		t.Fatalf("InsertCollector without a policy: %v", err)
	}

	got, err := s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	requirePolicy(t, "GetCollector", got.Policy, want.Policy)

	plain, err := s.GetCollector(ctx, "u1", "a1", "plain")
	if err != nil {
		t.Fatalf("GetCollector without a policy: %v", err)
	}
	requirePolicy(t, "GetCollector without a policy", plain.Policy, collector.Policy{})

	list, err := s.ListCollectors(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	if len(list) != 2 {
		t.Fatalf("ListCollectors returned %d collectors, want 2", len(list))
	}
	requirePolicy(t, "ListCollectors", list[0].Policy, want.Policy)

	matched, err := s.MatchCollectors(ctx, "anyone", want.Model)
	if err != nil {
		t.Fatalf("MatchCollectors: %v", err)
	}
	found := false
	for _, c := range matched {
		if c.ID == "c1" {
			found = true
			requirePolicy(t, "MatchCollectors", c.Policy, want.Policy)
		}
	}
	if !found {
		t.Errorf("MatchCollectors did not return c1: %v", collectorIDs(matched))
	}
}

func testPolicyUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	c := NewCollector("u1", "a1", "c1")
	c.Policy = fullPolicy()
	if err := s.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}

	c.Policy = collector.Policy{MaxPerHour: 1, DedupWindow: time.Second}
	if err := s.UpdateCollector(ctx, c); err != nil {
		t.Fatalf("UpdateCollector: %v", err)
	}
	got, err := s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	requirePolicy(t, "after update", got.Policy, c.Policy)

	c.Policy = collector.Policy{}
	if err := s.UpdateCollector(ctx, c); err != nil {
		t.Fatalf("UpdateCollector to no policy: %v", err)
	}
	got, err = s.GetCollector(ctx, "u1", "a1", "c1")
	if err != nil {
		t.Fatalf("GetCollector: %v", err)
	}
	requirePolicy(t, "after clearing", got.Policy, collector.Policy{})
}

func requirePolicy(t *testing.T, what string, got, want collector.Policy) {
	t.Helper()
	if got != want {
		t.Errorf("%s: policy = %+v, want %+v", what, got, want)
	}
}
