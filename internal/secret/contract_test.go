package secret_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collectord/collectord/internal/secret"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/store/storetest"
)

// Both product stores can be rotated.
var (
	_ secret.RawKeyStore = (*store.SQLite)(nil)
	_ secret.RawKeyStore = (*store.Postgres)(nil)
)

// encryptedSQLite is a SQLite store whose collector methods go through an
// EncryptingStore. The SQLite methods sit one level deeper, so the
// EncryptingStore's methods win where both define one.
type encryptedSQLite struct {
	*secret.EncryptingStore
	plain
}

type plain struct{ *store.SQLite }

func openSQLite(t *testing.T, dir string) *store.SQLite {
	t.Helper()
	db, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
	})
	if err != nil {
		t.Fatalf("open SQLite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestEncryptingStore_Contract runs the store contract suite through the
// decorator, so it behaves as the store it wraps.
func TestEncryptingStore_Contract(t *testing.T) {
	keys := requireKeyring(t, fixedKey("k1", 1))
	storetest.Run(t, func(t *testing.T) storetest.Store {
		db := openSQLite(t, t.TempDir())
		return encryptedSQLite{secret.NewEncryptingStore(db, keys, nil), plain{db}}
	})
}

// TestEncryptingStore_SQLiteFileHoldsCiphertext writes a key through the
// decorator and searches the database files for it.
func TestEncryptingStore_SQLiteFileHoldsCiphertext(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openSQLite(t, dir)
	s := secret.NewEncryptingStore(db, requireKeyring(t, fixedKey("k1", 1)), nil)
	if err := s.InsertCollector(ctx, newCollector("c1", plaintextKey)); err != nil {
		t.Fatal(err)
	}

	raw, err := db.GetCollector(ctx, "alice", "dest", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw.PostInputsKey, "enc:v1:k1:") {
		t.Errorf("SQLite holds %q, want ciphertext under k1", raw.PostInputsKey)
	}
	found := false
	for _, name := range []string{"collectord.db", "collectord.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		found = found || bytes.Contains(data, []byte(raw.PostInputsKey))
		if bytes.Contains(data, []byte(plaintextKey)) {
			t.Errorf("%s contains the post-inputs key in clear", name)
		}
	}
	if !found {
		t.Errorf("the ciphertext is in neither database file, so the search above proves nothing")
	}
}

func TestRotate_SQLite(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t, t.TempDir())
	old := secret.NewEncryptingStore(db, requireKeyring(t, fixedKey("old", 1)), nil)
	for _, id := range []string{"a", "b"} {
		if err := old.InsertCollector(ctx, newCollector(id, plaintextKey+id)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := db.GetCollector(ctx, "alice", "dest", "a")

	res, err := secret.Rotate(ctx, db, requireKeyring(t, fixedKey("new", 2), fixedKey("old", 1)))
	if err != nil || res.Rotated != 2 {
		t.Fatalf("Rotate = %+v, %v; want 2 rotated", res, err)
	}
	after, err := secret.NewEncryptingStore(db, requireKeyring(t, fixedKey("new", 2)), nil).GetCollector(ctx, "alice", "dest", "a")
	if err != nil {
		t.Fatalf("decrypt with the new key alone: %v", err)
	}
	if after.PostInputsKey != plaintextKey+"a" {
		t.Errorf("key after rotation = %q", after.PostInputsKey)
	}
	if after.Version != before.Version || !after.ModifiedAt.Equal(before.ModifiedAt) {
		t.Errorf("rotation changed version %d→%d or modified_at", before.Version, after.Version)
	}
}
