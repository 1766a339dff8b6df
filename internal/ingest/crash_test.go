package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
)

// blockFiles returns the message block files of a stream in the embedded
// store, in write order.
func blockFiles(t *testing.T, dir, stream string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "jetstream", "$G", "streams", stream, "msgs", "*.blk"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(files, func(a, b string) int {
		return len(a) - len(b) + strings.Compare(a, b)*boolInt(len(a) == len(b))
	})
	return files
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestEmbedded_RestartAfterCorruption stops the embedded server without a
// drain, then truncates the last block file of the capture stream and flips
// a byte inside a record of a middle block. On the same directory the
// server starts again, the intact records are delivered, and the damaged
// ones are reported (logged, counted and dead-lettered or reported as
// lost) instead of being delivered again and again.
func TestEmbedded_RestartAfterCorruption(t *testing.T) {
	dir := t.TempDir()
	const n = 100
	recs := newRecords("u1", "a1", "c1", n)
	for _, rec := range recs {
		// About 1 KiB each, so 32 KiB blocks hold about 30 records.
		rec.Input.Data.Text.Raw = strings.Repeat("p", 1000) + rec.GetId()
	}

	// A small MaxBytes gives the smallest block size, so the records span
	// several block files.
	first := openEnv(t, dir, QueueConfig{MaxBytes: 127_000})
	// One record a message, so that the records span several blocks.
	first.publishEach(t, recs)
	stream := first.queue.StreamName()
	// Several publishers store records out of offer order, so the records
	// of the first block are read by stream sequence.
	firstBlock := recordsAt(t, first, stream, 1, 10)
	// Shutdown skips the client drain that Close does.
	first.embedded.srv.Shutdown()
	first.embedded.srv.WaitForShutdown()

	blocks := blockFiles(t, dir, stream)
	t.Logf("block files: %v", blocks)
	if len(blocks) < 3 {
		t.Fatalf("%d block files, want at least 3 to damage a middle and the last one", len(blocks))
	}
	last := blocks[len(blocks)-1]
	info, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	middle := blocks[len(blocks)/2]
	data, err := os.ReadFile(middle)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte of the padding inside one record's payload.
	at := strings.Index(string(data), strings.Repeat("p", 500))
	if at < 0 {
		t.Fatal("no record payload found in the middle block")
	}
	data[at+100] ^= 0xff
	if err := os.WriteFile(middle, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	metrics := newMetricsHarness(t)
	e, err := OpenEmbedded(EmbeddedConfig{Dir: dir, MaxStoreBytes: 64 << 20, Logger: logger,
		Meter: metrics.meterProvider().Meter("test")})
	if err != nil {
		t.Fatalf("OpenEmbedded on the damaged directory: %v", err)
	}
	q, err := OpenQueue(context.Background(), e.Conn(), QueueConfig{MaxBytes: 127_000, DeadLetterMaxBytes: 8 << 20, Logger: logger})
	if err != nil {
		t.Fatalf("OpenQueue on the damaged directory: %v", err)
	}
	second := &env{embedded: e, queue: q, metrics: metrics, logger: testLogger(t)}
	defer second.close(t)
	held := second.streamMsgs(t, stream)
	store := newMemInputs()
	w := second.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "the capture stream settled", func() bool {
		return second.streamMsgs(t, stream) == 0
	})
	closeWithin(t, "workers", w.Close)

	delivered := second.metrics.captures(t, telemetry.OutcomeDelivered, "")
	failed := second.metrics.captures(t, telemetry.OutcomeFailed, "")
	warnings := second.metrics.sum(t, "collectord_nats_server_log_messages_total")
	t.Logf("after restart the stream held %d of %d records; delivered %d, dead-lettered %d; server warnings and errors %d",
		held, n, delivered, failed, warnings)

	if held >= n {
		t.Fatalf("the stream holds all %d records after the damage: the test damaged nothing", n)
	}
	if held == 0 {
		t.Fatal("the stream holds no record: the intact blocks were not recovered")
	}
	if delivered+failed != int64(held) {
		t.Errorf("delivered %d + dead-lettered %d, want the %d records the stream held, each settled once", delivered, failed, held)
	}
	if warnings == 0 {
		t.Error("collectord_nats_server_log_messages_total = 0, want the server's recovery warnings counted")
	}
	if !strings.Contains(logs.String(), "component=nats") || !strings.Contains(logs.String(), "rebuild") {
		t.Errorf("no nats log line reports the rebuilt stream; logs:\n%s", logs.String())
	}

	originals := map[string]string{}
	for _, rec := range recs {
		originals[rec.GetId()] = rec.GetInput().GetData().GetText().GetRaw()
	}
	stored, _ := store.snapshot()
	for id, times := range stored {
		if times != 1 {
			t.Errorf("record %s stored %d times, want 1", id, times)
		}
		in, err := store.GetInput(context.Background(), "u1", "a1", id)
		if err != nil {
			t.Fatalf("GetInput(%s): %v", id, err)
		}
		if got, want := in.GetData().GetText().GetRaw(), originals[id]; got != want {
			t.Errorf("record %s was delivered with damaged data", id)
		}
	}
	// The first block was left alone: all its records must survive.
	for _, id := range firstBlock {
		if stored[id] != 1 {
			t.Errorf("record %s of the intact first block was not delivered", id)
		}
	}
}

// recordsAt returns the IDs of the records at stream sequences from to to.
func recordsAt(t *testing.T, e *env, stream string, from, to uint64) []string {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(e.embedded.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := from; seq <= to; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get record at sequence %d: %v", seq, err)
		}
		rec := &capturepb.Record{}
		if err := proto.Unmarshal(msg.Data, rec); err != nil {
			t.Fatalf("decode record at sequence %d: %v", seq, err)
		}
		ids = append(ids, rec.GetId())
	}
	return ids
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
