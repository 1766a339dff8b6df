package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/store"
)

func keysCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: collectord keys create|list|delete [flags]")
		return ErrUsage
	}
	switch args[0] {
	case "create":
		return keysCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return keysList(ctx, args[1:], stdout, stderr)
	case "delete":
		return keysDelete(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown keys command %q: use create, list or delete\n", args[0])
		return ErrUsage
	}
}

// keysCreate prints the new secret alone on stdout, so scripts can capture it;
// only its SHA-256 is stored.
func keysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys create", stderr)
	dataDir := fs.String("data-dir", "./collectord-data", "data directory of the store")
	postgresURL := fs.String("postgres-url", "", "postgres:// URL of a shared PostgreSQL store; empty uses the SQLite store in --data-dir")
	user := fs.String("user", "", "user ID the key acts for (required)")
	app := fs.String("app", "", "app ID for an app key; empty makes a personal key for all the user's apps")
	scopes := fs.String("scopes", strings.Join(identity.AllScopes, ","), "comma-separated scopes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return fmt.Errorf("%w: --user is required", ErrUsage)
	}
	list := splitList(*scopes)
	for _, s := range list {
		if !slices.Contains(identity.AllScopes, s) {
			return fmt.Errorf("%w: unknown scope %q; valid scopes: %s", ErrUsage, s, strings.Join(identity.AllScopes, ","))
		}
	}

	db, err := openKeyStore(ctx, *dataDir, *postgresURL, stderr)
	if err != nil {
		return err
	}
	defer db.Close()

	secret, err := identity.NewSecret()
	if err != nil {
		return err
	}
	key := identity.Key{
		ID:        identity.NewKeyID(),
		Hash:      identity.HashKey(secret),
		UserID:    *user,
		AppID:     *app,
		Scopes:    list,
		CreatedAt: time.Now().UTC(),
	}
	if err := db.InsertKey(ctx, key); err != nil {
		return fmt.Errorf("store key: %w", err)
	}
	fmt.Fprintln(stdout, secret)
	return nil
}

func keysList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys list", stderr)
	dataDir := fs.String("data-dir", "./collectord-data", "data directory of the store")
	postgresURL := fs.String("postgres-url", "", "postgres:// URL of a shared PostgreSQL store; empty uses the SQLite store in --data-dir")
	user := fs.String("user", "", "list only this user's keys")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	db, err := openKeyStore(ctx, *dataDir, *postgresURL, stderr)
	if err != nil {
		return err
	}
	defer db.Close()

	keys, err := db.ListKeys(ctx, *user)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tAPP\tSCOPES\tCREATED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.UserID, k.AppID, strings.Join(k.Scopes, ","), k.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func keysDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys delete", stderr)
	dataDir := fs.String("data-dir", "./collectord-data", "data directory of the store")
	postgresURL := fs.String("postgres-url", "", "postgres:// URL of a shared PostgreSQL store; empty uses the SQLite store in --data-dir")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: keys delete takes one key ID (see keys list)", ErrUsage)
	}

	db, err := openKeyStore(ctx, *dataDir, *postgresURL, stderr)
	if err != nil {
		return err
	}
	defer db.Close()

	if err := db.DeleteKey(ctx, fs.Arg(0)); err != nil {
		if errors.Is(err, identity.ErrKeyNotFound) {
			return fmt.Errorf("key %q not found", fs.Arg(0))
		}
		return err
	}
	fmt.Fprintf(stdout, "deleted key %s\n", fs.Arg(0))
	return nil
}

// openKeyStore opens the PostgreSQL store at postgresURL when it is set, and
// the SQLite store under dataDir otherwise.
func openKeyStore(ctx context.Context, dataDir, postgresURL string, stderr io.Writer) (store.Store, error) {
	if postgresURL == "" {
		db, err := openStore(ctx, dataDir, stderr)
		if err != nil {
			return nil, err
		}
		return db, nil
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := store.OpenPostgres(ctx, store.PostgresConfig{URL: postgresURL, Logger: logger})
	if err != nil {
		return nil, err
	}
	return db, nil
}

func openStore(ctx context.Context, dataDir string, stderr io.Writer) (*store.SQLite, error) {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return store.OpenSQLite(ctx, store.SQLiteConfig{
		Path:    dataPath(dataDir, "collectord.db"),
		BlobDir: dataPath(dataDir, "blobs"),
		Logger:  logger,
	})
}
