package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/identity"
)

// RunKeys covers the KeyStore methods.
func RunKeys(t *testing.T, open Factory) {
	t.Run("InsertLookup", func(t *testing.T) { testKeyInsertLookup(t, open(t)) })
	t.Run("Duplicate", func(t *testing.T) { testKeyDuplicate(t, open(t)) })
	t.Run("List", func(t *testing.T) { testKeyList(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testKeyDelete(t, open(t)) })
}

func testKeyInsertLookup(t *testing.T, s Store) {
	ctx := context.Background()
	want := identity.Key{
		ID:     "k1",
		Hash:   identity.HashKey("secret-1"),
		UserID: "u1",
		AppID:  "a1",
		Scopes: []string{identity.ScopePredict, identity.ScopeInputsAdd},
	}
	if err := s.InsertKey(ctx, want); err != nil {
		t.Fatalf("InsertKey: %v", err)
	}

	got, err := s.KeyByHash(ctx, want.Hash)
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	if got.ID != want.ID || got.Hash != want.Hash || got.UserID != want.UserID || got.AppID != want.AppID {
		t.Errorf("KeyByHash = %+v, want %+v", got, want)
	}
	if !slices.Equal(got.Scopes, want.Scopes) {
		t.Errorf("Scopes = %v, want %v", got.Scopes, want.Scopes)
	}
	if got.CreatedAt.IsZero() {
		t.Errorf("CreatedAt is not set")
	}

	_, err = s.KeyByHash(ctx, identity.HashKey("unknown"))
	if !errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("KeyByHash of an unknown key error = %v, want ErrKeyNotFound", err)
	}
}

func testKeyDuplicate(t *testing.T, s Store) {
	ctx := context.Background()
	k := identity.Key{ID: "k1", Hash: identity.HashKey("secret-1"), UserID: "u1"}
	if err := s.InsertKey(ctx, k); err != nil {
		t.Fatalf("InsertKey: %v", err)
	}

	sameHash := identity.Key{ID: "k2", Hash: k.Hash, UserID: "u2"}
	if err := s.InsertKey(ctx, sameHash); err == nil {
		t.Errorf("InsertKey with a stored hash succeeded")
	}
	sameID := identity.Key{ID: "k1", Hash: identity.HashKey("secret-2"), UserID: "u1"}
	if err := s.InsertKey(ctx, sameID); err == nil {
		t.Errorf("InsertKey with a stored ID succeeded")
	}

	got, err := s.KeyByHash(ctx, k.Hash)
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	if got.UserID != "u1" {
		t.Errorf("KeyByHash UserID = %q after a rejected duplicate, want u1", got.UserID)
	}
}

func testKeyList(t *testing.T, s Store) {
	ctx := context.Background()
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	keys := []identity.Key{
		{ID: "k-b", UserID: "u1", CreatedAt: base},
		{ID: "k-a", UserID: "u1", CreatedAt: base.Add(time.Second)},
		{ID: "k-c", UserID: "u2", CreatedAt: base.Add(2 * time.Second)},
	}
	for _, k := range keys {
		k.Hash = identity.HashKey("secret-" + k.ID)
		if err := s.InsertKey(ctx, k); err != nil {
			t.Fatalf("InsertKey %s: %v", k.ID, err)
		}
	}

	mine, err := s.ListKeys(ctx, "u1")
	if err != nil {
		t.Fatalf("ListKeys u1: %v", err)
	}
	requireIDs(t, "keys of u1", keyIDs(mine), []string{"k-b", "k-a"})
	if len(mine) > 0 && !mine[0].CreatedAt.Equal(base) {
		t.Errorf("CreatedAt = %v, want the given %v", mine[0].CreatedAt, base)
	}

	all, err := s.ListKeys(ctx, "")
	if err != nil {
		t.Fatalf("ListKeys all: %v", err)
	}
	requireIDs(t, "all keys", keyIDs(all), []string{"k-b", "k-a", "k-c"})

	none, err := s.ListKeys(ctx, "nobody")
	if err != nil {
		t.Fatalf("ListKeys nobody: %v", err)
	}
	requireIDs(t, "keys of nobody", keyIDs(none), nil)
}

func testKeyDelete(t *testing.T, s Store) {
	ctx := context.Background()
	k := identity.Key{ID: "k1", Hash: identity.HashKey("secret-1"), UserID: "u1"}
	if err := s.InsertKey(ctx, k); err != nil {
		t.Fatalf("InsertKey: %v", err)
	}

	if err := s.DeleteKey(ctx, "k1"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := s.KeyByHash(ctx, k.Hash); !errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("KeyByHash after delete error = %v, want ErrKeyNotFound", err)
	}
	if err := s.DeleteKey(ctx, "k1"); !errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("second DeleteKey error = %v, want ErrKeyNotFound", err)
	}
}

func keyIDs(keys []identity.Key) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}
