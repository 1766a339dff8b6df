package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/telemetry"
)

// externalNATS is the machine's own NATS server with JetStream.
const externalNATS = "127.0.0.1:4222"

func TestConnect_ExternalJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a NATS server with JetStream on " + externalNATS)
	}
	conn, err := net.DialTimeout("tcp", externalNATS, 2*time.Second)
	if err != nil {
		t.Fatalf("NATS on %s is unreachable (%v): start nats-server -js there, or run with -short to skip", externalNATS, err)
	}
	_ = conn.Close()

	nc, err := Connect(ExternalConfig{URL: "nats://" + externalNATS, Name: "collectord-test"})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()

	// A prefix of its own keeps this test away from any other stream there.
	prefix := fmt.Sprintf("collectordtest_%d_%x", time.Now().UnixNano(), rand.Uint32())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := OpenQueue(ctx, nc, QueueConfig{Prefix: prefix, MaxBytes: 8 << 20, DeadLetterMaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("OpenQueue on %s: %v", externalNATS, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := q.DeleteStreams(ctx); err != nil {
			t.Errorf("delete test streams: %v", err)
		}
	}()

	env := &env{queue: q, metrics: newMetricsHarness(t), logger: testLogger(t)}
	recs := newRecords("u1", "a1", "c1", 20)
	env.publishAll(t, recs)
	store := newMemInputs()
	w := env.workers(t, NewLocalDestination(store), fastWorkerConfig())
	waitFor(t, "records delivered through the external server", func() bool { return store.count() == len(recs) })
	closeWithin(t, "workers", w.Close)

	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got != int64(len(recs)) {
		t.Errorf("delivered = %d, want %d", got, len(recs))
	}
}
