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

// runCommand starts every part in one process and blocks until ctx ends,
// then drains.
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	cfg, err := config.Load(fs, args, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}

	logger, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}

	n, err := node.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	logger.Info("collectord running", n.Addrs().LogAttrs()...)

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
