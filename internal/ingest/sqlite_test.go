package ingest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/telemetry"
)

func TestLocalDestination_SQLiteStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer db.Close()

	env := openEnv(t, filepath.Join(dir, "nats"), QueueConfig{})
	defer env.close(t)

	recs := newRecords("u1", "a1", "c1", 20)
	recs[5].Input.Id = "caller-5"
	recs[6].Input.Data.Image = &clarifaipb.Image{Base64: []byte("\x89PNG fake image bytes")}
	// An earlier delivery stored recs[0] before its ack was lost.
	if errs := db.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{InputFromRecord(recs[0])}); errs[0] != nil {
		t.Fatalf("preload input: %v", errs[0])
	}

	env.publishAll(t, recs)
	w := env.workers(t, NewLocalDestination(db), fastWorkerConfig())
	waitFor(t, "20 delivered", func() bool { return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 20 })
	closeWithin(t, "workers", w.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeFailed, ""); got != 0 {
		t.Errorf("failed = %d, want 0", got)
	}
	listed, err := db.ListInputs(ctx, "u1", "a1", 0, 100)
	if err != nil {
		t.Fatalf("ListInputs: %v", err)
	}
	if len(listed) != len(recs) {
		t.Errorf("app holds %d inputs, want %d: one per record", len(listed), len(recs))
	}
	got, err := db.GetInput(ctx, "u1", "a1", recs[5].GetId())
	if err != nil {
		t.Fatalf("GetInput: %v", err)
	}
	callerID := got.GetData().GetMetadata().GetFields()[MetadataKey].GetStructValue().GetFields()["caller_input_id"].GetStringValue()
	if callerID != "caller-5" {
		t.Errorf("stored caller_input_id = %q, want caller-5", callerID)
	}
}
