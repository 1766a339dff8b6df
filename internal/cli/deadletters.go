package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/collectord/collectord/internal/ingest"
)

const deadLettersUsage = "usage: collectord deadletters list|replay|purge [--data-dir DIR | --nats-url URL] [flags]"

// deadLettersCommand inspects and acts on the dead-letter stream of a
// stopped node's embedded JetStream store, or of an external cluster.
func deadLettersCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, deadLettersUsage)
		return ErrUsage
	}
	switch args[0] {
	case "list":
		return deadLettersList(ctx, args[1:], stdout, stderr)
	case "replay":
		return deadLettersReplay(ctx, args[1:], stdout, stderr)
	case "purge":
		return deadLettersPurge(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown deadletters command %q: use list, replay or purge\n%s\n", args[0], deadLettersUsage)
		return ErrUsage
	}
}

// deadLetterFlags are the flags every deadletters command takes.
type deadLetterFlags struct {
	dataDir string
	natsURL string
	prefix  string
	ids     []string
}

func (f *deadLetterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./collectord-data", "data directory of a stopped collectord node")
	fs.StringVar(&f.natsURL, "nats-url", "", "external NATS servers, comma separated; replaces --data-dir")
	fs.StringVar(&f.prefix, "prefix", ingest.DefaultPrefix, "subject and stream prefix of the queue")
	fs.Func("id", "record ID to act on; repeat or separate with commas (default all)", func(v string) error {
		f.ids = append(f.ids, splitList(v)...)
		return nil
	})
}

// openDeadLetters attaches to the queue and returns it with a function
// that releases the connection and, for a data directory, the embedded
// server.
//
// NOTE: nothing stops two servers from opening one store directory, so
// run this only while the node that owns --data-dir is stopped.
func openDeadLetters(ctx context.Context, f deadLetterFlags) (*ingest.Queue, func(), error) {
	var nc *nats.Conn
	release := func() {}
	if f.natsURL != "" {
		conn, err := ingest.Connect(ingest.ExternalConfig{URL: f.natsURL, Name: "collectord-deadletters"})
		if err != nil {
			return nil, nil, err
		}
		nc, release = conn, conn.Close
	} else {
		dir := dataPath(f.dataDir, "jetstream")
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("no JetStream store in %s (%w): pass the data directory of a collectord node", f.dataDir, err)
		}
		// The limit only has to admit the streams the node created; it
		// reserves no disk.
		e, err := ingest.OpenEmbedded(ingest.EmbeddedConfig{Dir: dir, MaxStoreBytes: 1 << 40, DrainTimeout: 10 * time.Second})
		if err != nil {
			return nil, nil, err
		}
		nc, release = e.Conn(), func() { _ = e.Close() }
	}

	attachCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q, err := ingest.AttachQueue(attachCtx, nc, ingest.QueueConfig{Prefix: f.prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		release()
		return nil, nil, err
	}
	return q, release, nil
}

func deadLettersList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deadletters list", stderr)
	var f deadLetterFlags
	f.register(fs)
	output := fs.String("o", "table", "output format: table or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("%w: -o %q is invalid: use table or json", ErrUsage, *output)
	}

	q, release, err := openDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	defer release()

	letters, err := q.ListDeadLetters(ctx)
	if err != nil {
		return err
	}
	letters = filterDeadLetters(letters, f.ids)
	if *output == "json" {
		return writeDeadLettersJSON(stdout, letters)
	}
	return writeDeadLettersTable(stdout, letters)
}

func filterDeadLetters(letters []ingest.DeadLetter, ids []string) []ingest.DeadLetter {
	if len(ids) == 0 {
		return letters
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []ingest.DeadLetter
	for _, d := range letters {
		if want[d.RecordID] {
			out = append(out, d)
		}
	}
	return out
}

func writeDeadLettersJSON(w io.Writer, letters []ingest.DeadLetter) error {
	if letters == nil {
		letters = []ingest.DeadLetter{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"dead_letters": letters})
}

func writeDeadLettersTable(w io.Writer, letters []ingest.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDESTINATION\tREASON\tATTEMPTS\tFAILED AT")
	for _, d := range letters {
		failedAt := "-"
		if !d.FailedAt.IsZero() {
			failedAt = d.FailedAt.UTC().Format(time.RFC3339)
		}
		dest := d.UserID + "/" + d.AppID + "/" + d.CollectorID
		if d.UserID == "" && d.AppID == "" {
			dest = "(undecodable record)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.RecordID, dest, d.Reason, d.Attempts, failedAt)
	}
	return tw.Flush()
}

func deadLettersReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deadletters replay", stderr)
	var f deadLetterFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	q, release, err := openDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	defer release()

	res, err := q.ReplayDeadLetters(ctx, f.ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replayed %d\n", res.Replayed)
	if res.Duplicates > 0 {
		fmt.Fprintf(stdout, "kept %d: the capture stream still remembers their IDs (duplicate window); replay them again later\n", res.Duplicates)
	}
	return nil
}

func deadLettersPurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deadletters purge", stderr)
	var f deadLetterFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	q, release, err := openDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	defer release()

	n, err := q.PurgeDeadLetters(ctx, f.ids)
	if err != nil {
		return errors.Join(fmt.Errorf("purged %d before the error", n), err)
	}
	fmt.Fprintf(stdout, "purged %d\n", n)
	return nil
}
