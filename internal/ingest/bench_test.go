package ingest

import (
	"context"
	"testing"
	"time"
)

// Benchmarks run against the embedded server on the local disk. Compare
// runs with benchstat: go test -run '^$' -bench . -count 10 | tee new.txt.

// BenchmarkPublisher_Enqueue measures records offered and acknowledged by
// JetStream (the time includes Close, which waits for every ack).
func BenchmarkPublisher_Enqueue(b *testing.B) {
	env := openBenchEnv(b)
	recs := newRecords("u1", "a1", "c1", b.N)

	b.ResetTimer()
	p, err := NewPublisher(env.queue, PublisherConfig{HandoffSize: b.N + 1}, PublisherDeps{})
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range recs {
		if !p.Offer(rec) {
			b.Fatal("Offer dropped a record")
		}
	}
	if err := p.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkWorkers_DeliverLocal measures fetching queued records and
// delivering them to an in-memory input store.
func BenchmarkWorkers_DeliverLocal(b *testing.B) {
	env := openBenchEnv(b)
	recs := newRecords("u1", "a1", "c1", b.N)
	p, err := NewPublisher(env.queue, PublisherConfig{HandoffSize: b.N + 1}, PublisherDeps{})
	if err != nil {
		b.Fatal(err)
	}
	for _, rec := range recs {
		p.Offer(rec)
	}
	if err := p.Close(context.Background()); err != nil {
		b.Fatal(err)
	}

	store := newMemInputs()
	b.ResetTimer()
	w, err := StartWorkers(env.queue, NewLocalDestination(store), WorkerConfig{FetchWait: 20 * time.Millisecond}, WorkerDeps{})
	if err != nil {
		b.Fatal(err)
	}
	for store.count() < b.N {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	_ = w.Close(context.Background())
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func openBenchEnv(b *testing.B) *env {
	b.Helper()
	e, err := OpenEmbedded(EmbeddedConfig{Dir: b.TempDir(), MaxStoreBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	q, err := OpenQueue(context.Background(), e.Conn(), QueueConfig{MaxBytes: 512 << 20, DeadLetterMaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	return &env{embedded: e, queue: q}
}
