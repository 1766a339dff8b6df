// Package cli implements the collectord command line. Main is the whole
// program minus signal handling, so tests run it in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `collectord: capture the inputs of production predicts as training data.

Usage:
  collectord run [flags]           everything in one process: ext_proc, API, ingest,
                                   embedded SQLite and JetStream under --data-dir
  collectord sidecar|ingest|api [flags]
                                   the many-pod mode, one role a process: ext_proc and
                                   the interceptor; delivery workers; the management
                                   API (needs --postgres-url, and --nats-url for
                                   sidecar and ingest)
  collectord keys create|list|delete [flags]
                                   manage API keys in the store under --data-dir
  collectord collectors create|list|get|update|delete|pause|resume|preview [flags]
                                   manage collectors through the REST API of a
                                   running collectord (--api, $COLLECTORD_KEY)
  collectord workflows create|update|list|get|delete [flags]
                                   manage the workflows that collectors name
                                   through the REST API
  collectord apps create|list|get [flags]
                                   manage apps through the REST API
  collectord deadletters list|replay|purge [flags]
                                   inspect, requeue or delete dead-lettered records
                                   of a stopped node (--data-dir) or a cluster
                                   (--nats-url)
  collectord secrets rotate [flags]
                                   re-encrypt every stored post-inputs key with the
                                   primary data-encryption key (see docs/security.md)
  collectord version

Run "collectord COMMAND -h" for the flags of a command.
`

// ErrUsage marks a command line that could not be parsed; Main has already
// printed the reason.
var ErrUsage = errors.New("invalid command line")

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Main runs the collectord command line and returns when the command ends or
// ctx is cancelled (SIGTERM: a graceful drain).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}

	switch args[0] {
	case "run", "sidecar", "ingest", "api":
		return runCommand(ctx, args[0], args[1:], stdout, stderr)
	case "keys":
		return keysCommand(ctx, args[1:], stdout, stderr)
	case "secrets":
		return secretsCommand(ctx, args[1:], stdout, stderr)
	case "collectors":
		return collectorsCommand(ctx, args[1:], stdout, stderr)
	case "workflows":
		return workflowsCommand(ctx, args[1:], stdout, stderr)
	case "apps":
		return appsCommand(ctx, args[1:], stdout, stderr)
	case "deadletters":
		return deadLettersCommand(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, Version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return ErrUsage
	}
}

// ExitCode maps an error of Main to a process exit code: 2 for a bad command
// line, 1 for anything else.
func ExitCode(err error) int {
	if errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args into fs and turns a parse failure into ErrUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
