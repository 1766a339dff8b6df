package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/localapp"
	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
)

// ratioRecords is the number of records each path moves per iteration.
const ratioRecords = 20000

// BenchmarkIngestVsRawJetStream compares the records per second of the real
// ingestion path with raw JetStream, in the same run and on the same disk.
// The real path is Publisher.Offer, the capture stream, Workers and the
// SQLite local app. Raw JetStream is an async publish to a file stream and a
// pull consumer that acks each message. The ingest/raw metric is the share
// of raw JetStream throughput the product keeps, and the target is at least
// 0.5. Run it with:
//
//	go test -run '^$' -bench IngestVsRaw -benchtime 1x -count 5 ./internal/ingest
func BenchmarkIngestVsRawJetStream(b *testing.B) {
	recs := ratioRecordsOfKiB(ratioRecords)
	var raw, ingest time.Duration

	for range b.N {
		raw += measureRawJetStream(b, recs)
		ingest += measureIngest(b, recs)
	}

	rawRate := float64(b.N*len(recs)) / raw.Seconds()
	ingestRate := float64(b.N*len(recs)) / ingest.Seconds()
	b.ReportMetric(rawRate, "raw-records/s")
	b.ReportMetric(ingestRate, "ingest-records/s")
	b.ReportMetric(ingestRate/rawRate, "ingest/raw")
}

// ratioRecordsOfKiB returns n records whose encoding is about 1 KiB: a
// text input of the size a short caption or prompt has.
func ratioRecordsOfKiB(n int) []*capturepb.Record {
	recs := newRecords("u1", "a1", "c1", n)
	for i, rec := range recs {
		text := fmt.Sprintf("record %d ", i)
		rec.Input.Data.Text.Raw = text + strings.Repeat("x", 1024-len(text)-96)
	}
	return recs
}

// measureRawJetStream publishes recs asynchronously to a file stream while
// a pull consumer acks them, and returns the time until the last ack.
func measureRawJetStream(b *testing.B, recs []*capturepb.Record) time.Duration {
	b.Helper()
	ctx := context.Background()
	e := openRatioServer(b)
	js, err := jetstream.New(e.Conn())
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage, MaxBytes: 512 << 20,
	})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: DefaultMaxAckPending,
	})
	if err != nil {
		b.Fatal(err)
	}
	payloads := make([][]byte, len(recs))
	for i, rec := range recs {
		if payloads[i], err = proto.Marshal(rec); err != nil {
			b.Fatal(err)
		}
	}

	var acked atomic.Int64
	done := make(chan struct{})
	began := time.Now()
	consumeCtx, err := cons.Consume(func(msg jetstream.Msg) {
		if msg.Ack() == nil && acked.Add(1) == int64(len(recs)) {
			close(done)
		}
	}, jetstream.PullMaxMessages(DefaultFetchBatch))
	if err != nil {
		b.Fatal(err)
	}
	defer consumeCtx.Stop()

	for _, data := range payloads {
		if _, err := js.PublishAsync("raw.u1.a1", data); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publishes not acknowledged within a minute")
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("raw consumer acked %d of %d within a minute", acked.Load(), len(recs))
	}
	return time.Since(began)
}

// measureIngest offers recs to a Publisher while Workers deliver them into
// the SQLite local app, and returns the time until the app holds them all.
func measureIngest(b *testing.B, recs []*capturepb.Record) time.Duration {
	b.Helper()
	ctx := context.Background()
	e := openRatioServer(b)
	q, err := OpenQueue(ctx, e.Conn(), QueueConfig{MaxBytes: 512 << 20, DeadLetterMaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	db, err := store.OpenSQLite(ctx, store.SQLiteConfig{
		Path: filepath.Join(dir, "collectord.db"), BlobDir: filepath.Join(dir, "blobs"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	inputs := &countingInputs{InputStore: db}

	began := time.Now()
	w, err := StartWorkers(q, NewLocalDestination(inputs), WorkerConfig{}, WorkerDeps{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPublisher(q, PublisherConfig{HandoffSize: len(recs) + 1}, PublisherDeps{})
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range recs {
		if !p.Offer(rec) {
			b.Fatal("Offer dropped a record")
		}
	}
	deadline := time.Now().Add(time.Minute)
	for inputs.stored.Load() < int64(len(recs)) {
		if time.Now().After(deadline) {
			b.Fatalf("the app holds %d of %d inputs after a minute", inputs.stored.Load(), len(recs))
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(began)

	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Close(closeCtx); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(closeCtx); err != nil {
		b.Fatal(err)
	}
	checkStored(b, db, len(recs))
	return elapsed
}

// checkStored reads the app back, so that a count of inserts the store did
// not keep cannot pass for throughput.
func checkStored(b *testing.B, db *store.SQLite, want int) {
	b.Helper()
	got, err := db.ListInputs(context.Background(), "u1", "a1", 0, want+1)
	if err != nil {
		b.Fatal(err)
	}
	if len(got) != want {
		b.Fatalf("the app holds %d inputs, want %d", len(got), want)
	}
}

func openRatioServer(b *testing.B) *Embedded {
	b.Helper()
	e, err := OpenEmbedded(EmbeddedConfig{Dir: b.TempDir(), MaxStoreBytes: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e
}

// countingInputs counts the inputs an input store accepted, so the
// benchmark can poll a counter instead of listing the app.
type countingInputs struct {
	localapp.InputStore
	stored atomic.Int64
}

func (c *countingInputs) InsertInputs(ctx context.Context, userID, appID string, inputs []*clarifaipb.Input) []error {
	errs := c.InputStore.InsertInputs(ctx, userID, appID, inputs)
	for _, err := range errs {
		if err == nil {
			c.stored.Add(1)
		}
	}
	return errs
}
