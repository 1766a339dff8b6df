package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/audit"
)

// AuditFactory opens a new, empty audit store for one test and registers
// its cleanup with t.
type AuditFactory func(t *testing.T) audit.Store

// RunAudit runs the contract suite of audit.Store, each part as a subtest
// with a store of its own.
func RunAudit(t *testing.T, open AuditFactory) {
	t.Run("AppendList", func(t *testing.T) { testAuditAppendList(t, open(t)) })
	t.Run("Defaults", func(t *testing.T) { testAuditDefaults(t, open(t)) })
	t.Run("Invalid", func(t *testing.T) { testAuditInvalid(t, open(t)) })
	t.Run("Pages", func(t *testing.T) { testAuditPages(t, open(t)) })
	t.Run("PerApp", func(t *testing.T) { testAuditPerApp(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testAuditConcurrent(t, open(t)) })
}

// NewAuditEntry returns a valid entry for a change of collector id in app
// userID/appID, made by the key "key-1" of userID.
func NewAuditEntry(userID, appID, action, id string) audit.Entry {
	return audit.Entry{
		Time:        time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC),
		ActorUserID: userID,
		ActorKeyID:  "key-1",
		Action:      action,
		Resource:    "collector",
		UserID:      userID,
		AppID:       appID,
		ResourceID:  id,
		Details:     `{"description":"collector ` + id + `","post_inputs_key_id":"****"}`,
	}
}

func testAuditAppendList(t *testing.T, s audit.Store) {
	ctx := context.Background()
	want := []audit.Entry{
		NewAuditEntry("u1", "a1", audit.ActionCreate, "c1"),
		NewAuditEntry("u1", "a1", audit.ActionUpdate, "c1"),
		NewAuditEntry("u1", "a1", audit.ActionDelete, "c1"),
	}
	want[1].Time = want[0].Time.Add(time.Second)
	want[2].Time = want[0].Time.Add(2 * time.Second)
	want[2].ActorUserID, want[2].ActorKeyID = "admin", "key-2"
	want[2].Details = `{"nested":{"list":[1,"two",null]},"unicode":"žluť"}`
	for _, e := range want {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit %s: %v", e.Action, err)
		}
	}

	got, err := s.ListAudit(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListAudit returned %d entries, want %d", len(got), len(want))
	}

	// Newest first: the reverse of the append order.
	for i, g := range got {
		w := want[len(want)-1-i]
		if g.ID <= 0 {
			t.Errorf("entry %d: ID = %d, want a positive ID set by the store", i, g.ID)
		}
		if i > 0 && g.ID >= got[i-1].ID {
			t.Errorf("entry %d: ID %d is not below the newer entry's %d", i, g.ID, got[i-1].ID)
		}
		if !g.Time.Equal(w.Time) {
			t.Errorf("entry %d: Time = %v, want %v", i, g.Time, w.Time)
		}
		g.ID, g.Time = w.ID, w.Time
		if g != w {
			t.Errorf("entry %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func testAuditDefaults(t *testing.T, s audit.Store) {
	ctx := context.Background()
	e := NewAuditEntry("u1", "a1", audit.ActionCreate, "c1")
	e.Time = time.Time{}
	e.Details = ""
	before := time.Now()

	if err := s.AppendAudit(ctx, e); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}

	got, err := s.ListAudit(ctx, "u1", "a1", 0, 10)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("ListAudit returned %d entries, want 1", len(got))
	}
	// The store's clock is the process clock, so it cannot run before the
	// moment taken above.
	if got[0].Time.Before(before) {
		t.Errorf("Time = %v, want the time of the append (not before %v)", got[0].Time, before)
	}
	if got[0].Details != "{}" {
		t.Errorf("Details = %q, want {} for an empty summary", got[0].Details)
	}
}

func testAuditInvalid(t *testing.T, s audit.Store) {
	ctx := context.Background()
	cases := map[string]func(e *audit.Entry){
		"no action":          func(e *audit.Entry) { e.Action = "" },
		"no resource":        func(e *audit.Entry) { e.Resource = "" },
		"details not JSON":   func(e *audit.Entry) { e.Details = `{"unterminated":` },
		"details plain text": func(e *audit.Entry) { e.Details = "changed the key" },
	}
	for name, change := range cases {
		e := NewAuditEntry("u1", "a1", audit.ActionUpdate, "c1")
		change(&e)
		if err := s.AppendAudit(ctx, e); err == nil {
			t.Errorf("%s: AppendAudit accepted %+v", name, e)
		}
	}

	got, err := s.ListAudit(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("ListAudit returned %d entries after only rejected appends, want 0", len(got))
	}
}

func testAuditPages(t *testing.T, s audit.Store) {
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("c%d", i)
		ids = append([]string{id}, ids...) // newest first
		if err := s.AppendAudit(ctx, NewAuditEntry("u1", "a1", audit.ActionCreate, id)); err != nil {
			t.Fatalf("AppendAudit %s: %v", id, err)
		}
	}

	pages := []struct {
		name          string
		offset, limit int
		want          []string
	}{
		{"first page", 0, 2, ids[:2]},
		{"second page", 2, 2, ids[2:4]},
		{"last page", 4, 2, ids[4:]},
		{"past the end", 5, 2, nil},
		{"no limit", 1, 0, ids[1:]},
		{"negative offset", -3, 1, ids[:1]},
	}
	for _, p := range pages {
		got, err := s.ListAudit(ctx, "u1", "a1", p.offset, p.limit)
		if err != nil {
			t.Fatalf("%s: ListAudit: %v", p.name, err)
		}
		requireIDs(t, p.name, auditResourceIDs(got), p.want)
	}
}

func testAuditPerApp(t *testing.T, s audit.Store) {
	ctx := context.Background()
	entries := []audit.Entry{
		NewAuditEntry("u1", "a1", audit.ActionCreate, "mine"),
		NewAuditEntry("u1", "a2", audit.ActionCreate, "other-app"),
		NewAuditEntry("u2", "a1", audit.ActionCreate, "other-user"),
		NewAuditEntry("u1", "", audit.ActionCreate, "no-app"),
	}
	for _, e := range entries {
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatalf("AppendAudit %s: %v", e.ResourceID, err)
		}
	}

	cases := []struct {
		user, app string
		want      []string
	}{
		{"u1", "a1", []string{"mine"}},
		{"u1", "a2", []string{"other-app"}},
		{"u2", "a1", []string{"other-user"}},
		{"u1", "", []string{"no-app"}},
		{"u3", "a1", nil},
	}
	for _, c := range cases {
		got, err := s.ListAudit(ctx, c.user, c.app, 0, 0)
		if err != nil {
			t.Fatalf("ListAudit %s/%s: %v", c.user, c.app, err)
		}
		requireIDs(t, "entries of "+c.user+"/"+c.app, auditResourceIDs(got), c.want)
	}
}

// testAuditConcurrent appends from many goroutines at once: every append
// must succeed and get an ID of its own.
func testAuditConcurrent(t *testing.T, s audit.Store) {
	ctx := context.Background()
	const workers, perWorker = 8, 10

	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := s.AppendAudit(ctx, NewAuditEntry("u1", "a1", audit.ActionCreate, id)); err != nil {
					errs <- fmt.Errorf("AppendAudit %s: %w", id, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	got, err := s.ListAudit(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != workers*perWorker {
		t.Errorf("ListAudit returned %d entries, want %d", len(got), workers*perWorker)
	}
	seenIDs := map[int64]bool{}
	seenResources := map[string]bool{}
	for _, e := range got {
		if seenIDs[e.ID] {
			t.Errorf("ID %d appears twice", e.ID)
		}
		seenIDs[e.ID] = true
		seenResources[e.ResourceID] = true
	}
	if len(seenResources) != workers*perWorker {
		t.Errorf("ListAudit holds %d distinct entries, want %d", len(seenResources), workers*perWorker)
	}
}

func auditResourceIDs(entries []audit.Entry) []string {
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.ResourceID)
	}
	return ids
}
