package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/secret"
	"github.com/collectord/collectord/internal/store"
)

const (
	oldKeyLine = "old:" + "1111111111111111111111111111111111111111111111111111111111111111"
	newKeyLine = "new:" + "2222222222222222222222222222222222222222222222222222222222222222"
	postKey    = "cdk_rotate-test-post-inputs-key-0123456789"
)

func keyringOf(t *testing.T, text string) *secret.Keyring {
	t.Helper()
	keys, err := secret.ParseKeys(text)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secret.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// withCollectorStore opens the SQLite store of dataDir, runs fn on it with
// the keys of keyText, and closes it again.
func withCollectorStore(t *testing.T, dataDir, keyText string, fn func(collector.Store)) {
	t.Helper()
	db, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dataDir, "collectord.db"),
		BlobDir: filepath.Join(dataDir, "blobs"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fn(secret.NewEncryptingStore(db, keyringOf(t, keyText), nil))
}

func TestSecretsRotate(t *testing.T) {
	t.Setenv("COLLECTORD_SECRET_KEY", "")
	t.Setenv("COLLECTORD_SECRET_KEY_FILE", "")
	ctx := context.Background()
	dir := t.TempDir()
	withCollectorStore(t, dir, oldKeyLine, func(s collector.Store) {
		err := s.InsertCollector(ctx, collector.Collector{
			UserID: "alice", AppID: "dest", ID: "c1", PostInputsKey: postKey, RandomSample: 1,
			Model: collector.ModelRef{UserID: "demo", AppID: "main", ModelID: "m"},
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte(newKeyLine+"\n"+oldKeyLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := cli.Main(ctx, []string{"secrets", "rotate", "--data-dir", dir, "--secret-key-file", keyFile}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("secrets rotate: %v: %s", err, stderr.String())
	}
	if want := "scanned 1 collectors; re-encrypted 1 post-inputs keys with key new; 0 failed"; !strings.Contains(stdout.String(), want) {
		t.Errorf("output = %q, want %q", stdout.String(), want)
	}
	if strings.Contains(stdout.String()+stderr.String(), postKey) || strings.Contains(stderr.String(), "2222") {
		t.Errorf("the output shows a secret: %s%s", stdout.String(), stderr.String())
	}

	// The old key can go now.
	withCollectorStore(t, dir, newKeyLine, func(s collector.Store) {
		c, err := s.GetCollector(ctx, "alice", "dest", "c1")
		if err != nil {
			t.Fatalf("decrypt with the new key alone: %v", err)
		}
		if c.PostInputsKey != postKey {
			t.Errorf("key after rotation = %q", c.PostInputsKey)
		}
	})
}

func TestSecretsRotate_NoKeyConfigured(t *testing.T) {
	t.Setenv("COLLECTORD_SECRET_KEY", "")
	t.Setenv("COLLECTORD_SECRET_KEY_FILE", "")
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := cli.Main(context.Background(), []string{"secrets", "rotate", "--data-dir", dir}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no data-encryption key") {
		t.Errorf("secrets rotate without keys: error = %v, want one saying no key is configured", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret.key")); err == nil {
		t.Errorf("rotate created a key file; only `collectord run` may")
	}
}

func TestSecretsCommand_Usage(t *testing.T) {
	for _, args := range [][]string{{"secrets"}, {"secrets", "shred"}} {
		var stdout, stderr bytes.Buffer
		err := cli.Main(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%v: error = %v, want ErrUsage", args, err)
		}
		if !strings.Contains(stderr.String(), "secrets rotate") {
			t.Errorf("%v: usage not printed: %q", args, stderr.String())
		}
	}
}
