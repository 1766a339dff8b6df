// Command demomodel serves demo Clarifai models over REST and gRPC on one
// port. Each model computes its concepts from the input itself: colors
// returns the dominant colours of an image, text-stats the length,
// questions, uppercase and digits of a text, and echo-size the size of the
// inline payload. It needs no weights or network, so it can stand in for a
// model server behind collectord.
//
// Usage:
//
//	go run ./examples/demomodel --listen 127.0.0.1:8000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/collectord/collectord/examples/demomodel/model"
)

// shutdownTimeout bounds how long in-flight predicts may take to finish
// after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "demomodel:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, when not nil, receives the listening
// address once the server accepts connections.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(net.Addr)) error {
	flags := flag.NewFlagSet("demomodel", flag.ContinueOnError)
	flags.SetOutput(stderr)
	listen := flags.String("listen", "127.0.0.1:8000", "address (host:port) to serve REST and gRPC on")
	userID := flags.String("user", model.DefaultUserID, "user ID that owns the demo models")
	appID := flags.String("app", model.DefaultAppID, "app ID that owns the demo models")
	versionID := flags.String("version", model.DefaultVersionID, "model version ID returned when a predict names none")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; all options are flags", flags.Args())
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	server := model.New(model.Config{UserID: *userID, AppID: *appID, DefaultVersionID: *versionID})
	httpServer := model.NewHTTPServer(server.Handler(), logger)

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s failed: %w", *listen, err)
	}
	logger.Info("demo model server listening",
		"address", listener.Addr().String(), "user_id", *userID, "app_id", *appID, "models", server.ModelIDs())
	if ready != nil {
		ready(listener.Addr())
	}

	return serve(ctx, httpServer, listener, logger)
}

// serve runs httpServer on listener until ctx ends, then shuts it down
// gracefully.
func serve(ctx context.Context, httpServer *http.Server, listener net.Listener, logger *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(listener) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving failed: %w", err)
	case <-ctx.Done():
	}

	logger.Info("demo model server stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown failed: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving failed: %w", err)
	}
	return nil
}
