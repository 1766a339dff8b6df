package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/secret"
	"github.com/collectord/collectord/internal/store"
)

func secretsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		fmt.Fprintln(stderr, "usage: collectord secrets rotate [flags]\n\n"+
			"rotate re-encrypts every stored post-inputs key with the primary (first) data-encryption key.")
		return ErrUsage
	}
	return secretsRotate(ctx, args[1:], stdout, stderr)
}

// secretsRotate reads the same configuration as `collectord run` (file,
// environment, flags), so it finds the same store and keys.
func secretsRotate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("secrets rotate", stderr)
	cfg, err := config.Load(fs, args, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	logger, err := newLogger(config.LogConfig{Level: "warn", Format: cfg.Log.Format}, stderr)
	if err != nil {
		return err
	}

	// Rotation never creates a key: a missing key file here means the
	// configuration differs from the one the store was written with.
	keys, err := secret.OpenKeyring(secret.KeyringConfig{
		File:        cfg.Secrets.KeyFile,
		Env:         string(cfg.Secrets.Key),
		DefaultFile: dataPath(cfg.DataDir, "secret.key"),
	}, logger)
	if err != nil {
		return err
	}

	db, err := openRawKeyStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()

	res, err := secret.Rotate(ctx, db, keys)
	fmt.Fprintf(stdout, "scanned %d collectors; re-encrypted %d post-inputs keys with key %s; %d failed\n",
		res.Scanned, res.Rotated, keys.PrimaryID(), res.Failed)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// rawKeyStore is a store whose stored post-inputs keys rotation rewrites.
type rawKeyStore interface {
	secret.RawKeyStore
	Close() error
}

// openRawKeyStore opens the store that `collectord run` would open with cfg:
// PostgreSQL when store.postgres_url is set, else SQLite under data_dir.
func openRawKeyStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (rawKeyStore, error) {
	if cfg.Store.PostgresURL != "" {
		db, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: cfg.Store.PostgresURL, Logger: logger})
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	db, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    dataPath(cfg.DataDir, "collectord.db"),
		BlobDir: dataPath(cfg.DataDir, "blobs"),
		Logger:  logger,
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}
