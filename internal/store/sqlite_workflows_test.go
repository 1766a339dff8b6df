package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/store/storetest"
)

// TestSQLite_AdmitTwoProcesses runs the concurrent admission check with two
// stores on one file, as two processes would open it.
func TestSQLite_AdmitTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	a := openTestSQLite(t, dir)
	b := openTestSQLite(t, dir)

	storetest.RequireConcurrentAdmit(t, []admission.Ledger{a, b})

	var n int
	if err := openRaw(t, dir).QueryRow(`SELECT COUNT(*) FROM admissions`).Scan(&n); err != nil {
		t.Fatalf("count admissions: %v", err)
	}
	if n != 50 {
		t.Errorf("admissions table holds %d rows, want 50", n)
	}
}

// TestSQLite_PolicyMigration opens a file written before workflows existed:
// its collector must read back with the zero policy.
func TestSQLite_PolicyMigration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "collectord.db")
	createVersion2Database(t, path)

	requireOldCollector(t, openTestSQLite(t, dir))
}

// requireOldCollector reads the collector of oldCollectorInsert after the
// migration.
func requireOldCollector(t *testing.T, s collector.Store) {
	t.Helper()
	got, err := s.GetCollector(context.Background(), "u1", "a1", "old")
	if err != nil {
		t.Fatalf("GetCollector of a collector stored before the migration: %v", err)
	}
	if got.Policy != (collector.Policy{}) {
		t.Errorf("Policy = %+v, want the zero policy", got.Policy)
	}
	if got.PreQueueWorkflowID != "pre" {
		t.Errorf("PreQueueWorkflowID = %q, want it kept as pre", got.PreQueueWorkflowID)
	}
}

// createVersion2Database writes a database at schema version 2 with one
// collector, using the statements of migrations 0001 and 0002 only.
func createVersion2Database(t *testing.T, path string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("migrations", "000[12]_*.sql"))
	if err != nil || len(files) != 2 {
		t.Fatalf("find migrations 0001 and 0002: %v %v", files, err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	defer db.Close()

	stmts := []string{`CREATE TABLE schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`}
	for i, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read migration: %v", err)
		}
		stmts = append(stmts, string(body),
			fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, '%s', 0)`, i+1, filepath.Base(f)))
	}
	stmts = append(stmts, oldCollectorInsert)
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// oldCollectorInsert stores a collector with the columns of the schema
// before workflows.
const oldCollectorInsert = `INSERT INTO collectors (user_id, app_id, id, created_at, modified_at,
    model_user_id, model_app_id, model_id, pre_queue_workflow_id, version)
VALUES ('u1', 'a1', 'old', 1, 1, 'm', 'main', 'general', 'pre', 1)`
