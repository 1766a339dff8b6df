package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/collectord/collectord/config"
	"github.com/collectord/collectord/internal/node"
)

// modes maps the serving commands to the roles they run. run is the
// one-process mode; the others are the many-pod mode.
var modes = map[string]node.Roles{
	"run":     node.AllRoles,
	"sidecar": {Capture: true},
	"ingest":  {Ingest: true},
	"api":     {API: true},
}

// runCommand starts the parts of one mode and blocks until ctx ends, then
// drains.
func runCommand(ctx context.Context, mode string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(mode, stderr)
	cfg, err := config.Load(fs, args, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	roles := modes[mode]
	if err := checkMode(mode, roles, cfg); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}

	logger, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}

	n, err := node.StartRoles(ctx, cfg, roles, logger)
	if err != nil {
		return err
	}
	logger.Info("collectord running", append([]any{"mode", mode}, n.Addrs().LogAttrs()...)...)

	<-ctx.Done()
	logger.Info("draining", "timeout", cfg.DrainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.DrainTimeout))
	defer cancel()
	if err := n.Close(drainCtx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	logger.Info("stopped")
	return nil
}

func newLogger(cfg config.LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func dataPath(dataDir string, parts ...string) string {
	return filepath.Join(append([]string{dataDir}, parts...)...)
}

// checkMode rejects a many-pod command without the shared parts it needs:
// processes that do not share the store and the queue cannot cooperate.
func checkMode(mode string, roles node.Roles, cfg config.Config) error {
	if mode == "run" {
		return nil
	}
	if cfg.Store.PostgresURL == "" {
		return fmt.Errorf("collectord %s shares its store with other processes: set --postgres-url or COLLECTORD_POSTGRES_URL", mode)
	}
	if (roles.Capture || roles.Ingest) && cfg.NATS.URL == "" {
		return fmt.Errorf("collectord %s shares its queue with other processes: set --nats-url or COLLECTORD_NATS_URL", mode)
	}
	return nil
}
