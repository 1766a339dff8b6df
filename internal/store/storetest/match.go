package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/collectord/collectord/internal/collector"
)

// RunMatch covers MatchCollectors: caller and model filters, blank caller,
// ignored version, paused collectors and the any-model query.
func RunMatch(t *testing.T, open Factory) {
	s := open(t)
	ctx := context.Background()
	general := collector.ModelRef{UserID: "m", AppID: "main", ModelID: "general"}

	seed := []struct {
		id      string
		caller  string
		model   collector.ModelRef
		paused  bool
		ownerID string
	}{
		{id: "any-caller", model: general},
		{id: "alice-only", caller: "alice", model: general},
		{id: "bob-only", caller: "bob", model: general},
		{id: "paused", model: general, paused: true},
		{id: "other-model", model: collector.ModelRef{UserID: "m", AppID: "main", ModelID: "other"}},
		{id: "other-model-owner", model: collector.ModelRef{UserID: "m2", AppID: "main", ModelID: "general"}},
		{id: "other-model-app", model: collector.ModelRef{UserID: "m", AppID: "lab", ModelID: "general"}},
		{id: "pinned-version", model: collector.ModelRef{UserID: "m", AppID: "main", ModelID: "general", VersionID: "v1"}},
		{id: "second-owner", model: general, ownerID: "u2"},
	}
	for _, c := range seed {
		owner := c.ownerID
		if owner == "" {
			owner = "u1"
		}
		col := NewCollector(owner, "a1", c.id)
		col.CallerUserID = c.caller
		col.Model = c.model
		col.Paused = c.paused
		if err := s.InsertCollector(ctx, col); err != nil {
			t.Fatalf("InsertCollector %s: %v", c.id, err)
		}
	}

	withVersion := general
	withVersion.VersionID = "v9"
	cases := []struct {
		name   string
		caller string
		model  collector.ModelRef
		want   []string
	}{
		{"caller and model", "alice", general,
			[]string{"any-caller", "alice-only", "pinned-version", "second-owner"}},
		{"version ignored", "alice", withVersion,
			[]string{"any-caller", "alice-only", "pinned-version", "second-owner"}},
		{"another caller", "bob", general,
			[]string{"any-caller", "bob-only", "pinned-version", "second-owner"}},
		{"blank caller", "", general,
			[]string{"any-caller", "pinned-version", "second-owner"}},
		{"any model", "alice", collector.ModelRef{},
			[]string{"alice-only", "any-caller", "other-model", "other-model-app", "other-model-owner", "pinned-version", "second-owner"}},
		{"unknown model", "alice", collector.ModelRef{UserID: "m", AppID: "main", ModelID: "unknown"},
			nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.MatchCollectors(ctx, tc.caller, tc.model)
			if err != nil {
				t.Fatalf("MatchCollectors: %v", err)
			}
			ids := collectorIDs(got)
			slices.Sort(ids)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			requireIDs(t, "matched", ids, want)

			for _, c := range got {
				if c.Paused {
					t.Errorf("matched paused collector %s", c.ID)
				}
				// The request path needs the whole definition, key included.
				if c.PostInputsKey != "secret-post-key-"+c.ID {
					t.Errorf("collector %s matched without its post-inputs key", c.ID)
				}
				if c.Version < 1 {
					t.Errorf("collector %s matched with Version %d", c.ID, c.Version)
				}
			}
		})
	}

	t.Run("resumed", func(t *testing.T) {
		c, err := s.GetCollector(ctx, "u1", "a1", "paused")
		if err != nil {
			t.Fatalf("GetCollector: %v", err)
		}
		c.Paused = false
		if err := s.UpdateCollector(ctx, c); err != nil {
			t.Fatalf("UpdateCollector: %v", err)
		}

		got, err := s.MatchCollectors(ctx, "carol", general)
		if err != nil {
			t.Fatalf("MatchCollectors: %v", err)
		}
		ids := collectorIDs(got)
		slices.Sort(ids)
		requireIDs(t, "matched after resume", ids, []string{"any-caller", "paused", "pinned-version", "second-owner"})
	})
}
