package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/store/storetest"
	"github.com/collectord/collectord/internal/workflow"
)

// TestPostgres_WorkflowChangeFeed writes workflows through one store and
// expects the workflow listeners of another store on the same schema to
// run, but not its collector listeners. A collector write runs only the
// collector listeners.
func TestPostgres_WorkflowChangeFeed(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	writer := openTestPostgres(t, dsn, schema)
	reader := openTestPostgres(t, dsn, schema)
	ctx := context.Background()

	workflowChanges := make(chan struct{}, 100)
	reader.OnWorkflowChange(func() { workflowChanges <- struct{}{} })
	collectorChanges := make(chan struct{}, 100)
	reader.OnChange(func() { collectorChanges <- struct{}{} })

	w := storetest.NewWorkflow("u1", "a1", "wf1")
	steps := []struct {
		name string
		run  func() error
	}{
		{"insert", func() error { return writer.InsertWorkflow(ctx, w) }},
		{"update", func() error { return writer.UpdateWorkflow(ctx, w) }},
		{"delete", func() error { return writer.DeleteWorkflow(ctx, "u1", "a1", "wf1") }},
		{"insert again", func() error { return writer.InsertWorkflow(ctx, w) }},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		requireChange(t, workflowChanges, step.name)
	}

	// PostgreSQL delivers notifications in commit order, so once the
	// collector marker arrives, any collector notification of the workflow
	// writes would have arrived before it.
	if err := writer.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "marker")); err != nil {
		t.Fatalf("insert collector marker: %v", err)
	}
	requireChange(t, collectorChanges, "collector marker")
	if extra := len(collectorChanges); extra != 0 {
		t.Errorf("reader's collector listener ran %d times for workflow writes", extra)
	}

	if err := writer.InsertWorkflow(ctx, storetest.NewWorkflow("u1", "a1", "marker")); err != nil {
		t.Fatalf("insert workflow marker: %v", err)
	}
	requireChange(t, workflowChanges, "workflow marker")
	if extra := len(workflowChanges); extra != 0 {
		t.Errorf("reader's workflow listener ran %d times for a collector write", extra)
	}
}

// TestPostgres_WorkflowChangeFeedFailedWrite expects no notification from
// workflow writes that change nothing or roll back.
func TestPostgres_WorkflowChangeFeedFailedWrite(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	writer := openTestPostgres(t, dsn, schema)
	reader := openTestPostgres(t, dsn, schema)
	ctx := context.Background()

	changes := make(chan struct{}, 100)
	reader.OnWorkflowChange(func() { changes <- struct{}{} })

	w := storetest.NewWorkflow("u1", "a1", "wf1")
	if err := writer.InsertWorkflow(ctx, w); err != nil {
		t.Fatalf("InsertWorkflow: %v", err)
	}
	requireChange(t, changes, "insert")
	c := storetest.NewCollector("u1", "a1", "c1")
	c.PostQueueWorkflowID = "wf1"
	if err := writer.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}

	if err := writer.InsertWorkflow(ctx, w); !errors.Is(err, workflow.ErrAlreadyExists) {
		t.Fatalf("duplicate InsertWorkflow error = %v, want ErrAlreadyExists", err)
	}
	if err := writer.UpdateWorkflow(ctx, storetest.NewWorkflow("u1", "a1", "missing")); !errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("UpdateWorkflow of a missing workflow error = %v, want ErrNotFound", err)
	}
	if err := writer.DeleteWorkflow(ctx, "u1", "a1", "missing"); !errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("DeleteWorkflow of a missing workflow error = %v, want ErrNotFound", err)
	}
	// The in-use check rolls back a delete that already ran in the
	// transaction, and its notification with it.
	if err := writer.DeleteWorkflow(ctx, "u1", "a1", "wf1"); !errors.Is(err, workflow.ErrInUse) {
		t.Fatalf("DeleteWorkflow of a used workflow error = %v, want ErrInUse", err)
	}

	if err := writer.InsertWorkflow(ctx, storetest.NewWorkflow("u1", "a1", "marker")); err != nil {
		t.Fatalf("insert marker: %v", err)
	}
	requireChange(t, changes, "marker")
	if extra := len(changes); extra != 0 {
		t.Errorf("reader's workflow listener ran %d times for writes that changed nothing", extra)
	}
}

// TestPostgres_AdmitTwoStores runs the concurrent admission check with two
// stores on one schema, as two ingest workers in different pods.
func TestPostgres_AdmitTwoStores(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	a := openTestPostgres(t, dsn, schema)
	b := openTestPostgres(t, dsn, schema)

	storetest.RequireConcurrentAdmit(t, []admission.Ledger{a, b})

	rows := queryStrings(t, dsn, schema, `SELECT COUNT(*)::text FROM admissions`)
	if rows[0] != "50" {
		t.Errorf("admissions table holds %s rows, want 50", rows[0])
	}
}

// TestPostgres_PolicyMigration opens a schema written before workflows
// existed: its collector must read back with the zero policy.
func TestPostgres_PolicyMigration(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	body, err := os.ReadFile(filepath.Join("pgmigrations", "0001_init.sql"))
	if err != nil {
		t.Fatalf("read migration: %v", err)
	}
	execIn(t, dsn, schema, `CREATE TABLE schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
	execIn(t, dsn, schema, string(body))
	execIn(t, dsn, schema, `INSERT INTO schema_migrations VALUES (1, '0001_init.sql', 0)`)
	execIn(t, dsn, schema, oldCollectorInsert)

	requireOldCollector(t, openTestPostgres(t, dsn, schema))
}
