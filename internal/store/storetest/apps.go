package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/collectord/collectord/internal/localapp"
)

// RunApps covers the AppStore methods.
func RunApps(t *testing.T, open Factory) {
	s := open(t)
	ctx := context.Background()

	ids := []string{"app-c", "app-a", "app-b"}
	for _, id := range ids {
		a := localapp.App{UserID: "u1", ID: id, Name: "Name " + id, Description: "about " + id}
		if err := s.InsertApp(ctx, a); err != nil {
			t.Fatalf("InsertApp %s: %v", id, err)
		}
	}
	if err := s.InsertApp(ctx, localapp.App{UserID: "u2", ID: "app-a"}); err != nil {
		t.Fatalf("InsertApp with the same ID for another user: %v", err)
	}

	err := s.InsertApp(ctx, localapp.App{UserID: "u1", ID: "app-a"})
	if !errors.Is(err, localapp.ErrAppExists) {
		t.Errorf("InsertApp duplicate error = %v, want ErrAppExists", err)
	}

	got, err := s.GetApp(ctx, "u1", "app-a")
	if err != nil {
		t.Fatalf("GetApp: %v", err)
	}
	if got.Name != "Name app-a" || got.Description != "about app-a" || got.UserID != "u1" || got.ID != "app-a" {
		t.Errorf("GetApp = %+v", got)
	}
	if got.CreatedAt.IsZero() {
		t.Errorf("GetApp CreatedAt is not set")
	}

	if _, err := s.GetApp(ctx, "u1", "missing"); !errors.Is(err, localapp.ErrAppNotFound) {
		t.Errorf("GetApp missing error = %v, want ErrAppNotFound", err)
	}

	all, err := s.ListApps(ctx, "u1", 0, 10)
	if err != nil {
		t.Fatalf("ListApps: %v", err)
	}
	requireIDs(t, "apps of u1", appIDs(all), ids)

	page, err := s.ListApps(ctx, "u1", 1, 1)
	if err != nil {
		t.Fatalf("ListApps offset 1 limit 1: %v", err)
	}
	requireIDs(t, "apps offset 1 limit 1", appIDs(page), ids[1:2])
}

func appIDs(apps []localapp.App) []string {
	var ids []string
	for _, a := range apps {
		ids = append(ids, a.ID)
	}
	return ids
}
