package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/store/storetest"
)

func openTestSQLite(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestSQLite_Contract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openTestSQLite(t, t.TempDir())
	})
}

func TestSQLite_Migrations(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	if err := s.InsertCollector(context.Background(), storetest.NewCollector("u1", "a1", "c1")); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}

	db := openRaw(t, dir)
	var versions []int
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("scan: %v", err)
		}
		versions = append(versions, v)
	}
	if len(versions) == 0 || versions[0] != 1 {
		t.Errorf("schema_migrations versions = %v, want to start at 1", versions)
	}

	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatalf("read journal_mode: %v", err)
	}
	if !strings.EqualFold(mode, "wal") {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestSQLite_Reopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	image := []byte("image bytes kept across restarts")

	first, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := first.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "c1")); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	in := &clarifaipb.Input{Id: "in1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}}
	if errs := first.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in}); errs[0] != nil {
		t.Fatalf("InsertInputs: %v", errs[0])
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Opening again applies no migration twice and keeps the data.
	second := openTestSQLite(t, dir)
	if _, err := second.GetCollector(ctx, "u1", "a1", "c1"); err != nil {
		t.Errorf("GetCollector after reopen: %v", err)
	}
	got, err := second.GetInput(ctx, "u1", "a1", "in1")
	if err != nil {
		t.Fatalf("GetInput after reopen: %v", err)
	}
	if !bytes.Equal(got.GetData().GetImage().GetBase64(), image) {
		t.Errorf("image bytes differ after reopen")
	}
}

func TestSQLite_NewerSchemaRejected(t *testing.T) {
	dir := t.TempDir()
	s, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	s.Close()

	db := openRaw(t, dir)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatalf("insert future migration: %v", err)
	}

	_, err = store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
	})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenSQLite of a newer schema error = %v, want a 'newer' error", err)
	}
}

func TestSQLite_BlobFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	ctx := context.Background()
	image := storetest.RandomBytes(t, 4096)

	in := &clarifaipb.Input{Id: "in1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}}
	if errs := s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in}); errs[0] != nil {
		t.Fatalf("InsertInputs: %v", errs[0])
	}

	// The bytes live in a file named by their SHA-256 ...
	sum := sha256.Sum256(image)
	name := hex.EncodeToString(sum[:])
	onDisk, err := os.ReadFile(filepath.Join(dir, "blobs", name[:2], name))
	if err != nil {
		t.Fatalf("read blob file: %v", err)
	}
	if !bytes.Equal(onDisk, image) {
		t.Errorf("blob file content differs from the image")
	}

	// ... and not in the row.
	db := openRaw(t, dir)
	var message []byte
	var imageName string
	if err := db.QueryRow(`SELECT message, image_sha256 FROM inputs WHERE id = 'in1'`).Scan(&message, &imageName); err != nil {
		t.Fatalf("read row: %v", err)
	}
	if bytes.Contains(message, image[:64]) {
		t.Errorf("row message contains the image bytes")
	}
	if imageName != name {
		t.Errorf("image_sha256 = %q, want %q", imageName, name)
	}

	// No temporary file is left behind.
	leftovers, err := filepath.Glob(filepath.Join(dir, "blobs", "*", ".tmp-*"))
	if err != nil {
		t.Fatalf("glob: %v", err)
	}
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestSQLite_InsertInputsSetsStatus(t *testing.T) {
	s := openTestSQLite(t, t.TempDir())
	in := &clarifaipb.Input{Id: "in1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: []byte("x")}}}

	if errs := s.InsertInputs(context.Background(), "u1", "a1", []*clarifaipb.Input{in}); errs[0] != nil {
		t.Fatalf("InsertInputs: %v", errs[0])
	}

	if in.GetStatus().GetCode() != clarifaipb.StatusCode_INPUT_SUCCESS {
		t.Errorf("caller's input status = %v, want INPUT_SUCCESS", in.GetStatus().GetCode())
	}
	if in.GetCreatedAt() == nil {
		t.Errorf("caller's input created_at is not set")
	}
	if string(in.GetData().GetImage().GetBase64()) != "x" {
		t.Errorf("caller's image bytes changed to %q", in.GetData().GetImage().GetBase64())
	}
}

func TestSQLite_ClockOrder(t *testing.T) {
	dir := t.TempDir()
	frozen := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	s, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Now:     func() time.Time { return frozen },
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	defer s.Close()
	ctx := context.Background()

	// With a stopped clock, creation order still decides the list order.
	ids := []string{"c", "a", "b"}
	for _, id := range ids {
		if err := s.InsertCollector(ctx, storetest.NewCollector("u1", "a1", id)); err != nil {
			t.Fatalf("InsertCollector %s: %v", id, err)
		}
	}
	list, err := s.ListCollectors(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	for i, c := range list {
		if c.ID != ids[i] {
			t.Fatalf("list order = %v, want %v", idsOf(list), ids)
		}
	}
	if list[0].CreatedAt.Before(frozen) {
		t.Errorf("CreatedAt = %v, want not before %v", list[0].CreatedAt, frozen)
	}
}

// TestSQLite_TwoProcesses opens one file twice, as two processes would, and
// writes from both at once: busy_timeout and BEGIN IMMEDIATE must keep every
// write from failing with SQLITE_BUSY.
func TestSQLite_TwoProcesses(t *testing.T) {
	dir := t.TempDir()
	a := openTestSQLite(t, dir)
	b := openTestSQLite(t, dir)
	ctx := context.Background()

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w, s := range []*store.SQLite{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				c := storetest.NewCollector("u1", "a1", idFor(w, i))
				if err := s.InsertCollector(ctx, c); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("InsertCollector: %v", err)
	}

	list, err := b.ListCollectors(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	if len(list) != 100 {
		t.Errorf("stored %d collectors, want 100", len(list))
	}
}

func TestOpenSQLite_InvalidConfig(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]store.SQLiteConfig{
		"no path":       {BlobDir: dir},
		"no blob dir":   {Path: filepath.Join(dir, "x.db")},
		"query in path": {Path: filepath.Join(dir, "x.db?mode=ro"), BlobDir: dir},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if s, err := store.OpenSQLite(context.Background(), cfg); err == nil {
				s.Close()
				t.Errorf("OpenSQLite accepted %+v", cfg)
			}
		})
	}
}

func openRaw(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(dir, "collectord.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatalf("open raw database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func idFor(worker, i int) string {
	return fmt.Sprintf("w%d-%d", worker, i)
}

func idsOf(cs []collector.Collector) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
