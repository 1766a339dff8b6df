package store

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/store/storetest"
)

// TestPostgres_AdmitLockPerCollector holds one collector's admission lock
// from another connection: Admit for that collector must wait for it, and
// Admit for another collector must not.
func TestPostgres_AdmitLockPerCollector(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	s, err := OpenPostgres(context.Background(), PostgresConfig{
		URL: dsn, Schema: schema, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	held := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "held"}
	free := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "free"}
	if admissionLockKey(s.schema, held) == admissionLockKey(s.schema, free) {
		t.Fatal("the two collectors share a lock key; pick other names")
	}

	holder, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, admissionLockKey(s.schema, held)); err != nil {
		t.Fatalf("take the lock: %v", err)
	}

	candidates := []admission.Candidate{{RecordID: "r1"}}
	// The bound only guards against a hang: the call must not block at all.
	freeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.Admit(freeCtx, free, collector.Policy{}, time.Now(), candidates); err != nil {
		t.Errorf("Admit for another collector while the lock is held: %v", err)
	}

	// While the lock works, this call can only end at its deadline.
	heldCtx, cancelHeld := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelHeld()
	if _, err := s.Admit(heldCtx, held, collector.Policy{}, time.Now(), candidates); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Admit for the locked collector error = %v, want it blocked until the deadline", err)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("release the lock: %v", err)
	}
	afterCtx, cancelAfter := context.WithTimeout(ctx, 10*time.Second)
	defer cancelAfter()
	if _, err := s.Admit(afterCtx, held, collector.Policy{}, time.Now(), candidates); err != nil {
		t.Errorf("Admit for the collector after the lock was released: %v", err)
	}
}
