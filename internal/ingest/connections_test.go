package ingest

import (
	"testing"
	"time"

	"github.com/collectord/collectord/internal/telemetry"
)

// TestRemote_ClientReusedAcrossRecords delivers 10,000 records with four
// workers: the destination receives at most one connection per worker plus a
// little slack, because one keep-alive client serves every post.
func TestRemote_ClientReusedAcrossRecords(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{MaxBytes: 32 << 20})
	defer env.close(t)

	const n, workers, slack = 10000, 4, 2
	fake := newFakeClarifai(t, testKey)
	env.publishAll(t, newRecords("u1", "a1", "c1", n))

	cfg := fastWorkerConfig()
	cfg.Workers = workers
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), cfg)
	// Polling the sink is cheaper than collecting metrics every 10 ms.
	waitFor(t, "10,000 records stored", func() bool { return fake.stored() == n })
	waitFor(t, "10,000 records delivered", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == n
	})
	closeWithin(t, "workers", w.Close)

	if got := fake.stored(); got != n {
		t.Errorf("destination stored %d inputs, want %d", got, n)
	}
	conns := fake.connections()
	t.Logf("%d records in %d requests over %d connections", n, len(fake.log()), conns)
	if conns > workers+slack {
		t.Errorf("destination saw %d new connections, want at most %d workers + %d", conns, workers, slack)
	}
}

// TestRemote_StalledSinkTimesOut posts to a sink that accepts and never
// responds: every attempt ends at the configured timeout (the client closes
// it), attempts keep coming, and they are spaced by a backoff rather than
// sent back to back.
func TestRemote_StalledSinkTimesOut(t *testing.T) {
	const (
		timeout = 300 * time.Millisecond
		margin  = 2 * time.Second
		runFor  = 3 * time.Second
	)
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	sink := newStallingSink(t)
	dest, err := NewRemoteDestination(RemoteConfig{BaseURL: sink.srv.URL, Timeout: timeout},
		RemoteDeps{Keys: staticKeys{"u1/a1/c1": testKey}, Logger: env.logger})
	if err != nil {
		t.Fatalf("NewRemoteDestination: %v", err)
	}
	defer dest.Close()

	env.publishAll(t, newRecords("u1", "a1", "c1", 5))
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	cfg.BreakerThreshold = 2
	cfg.BreakerOpenBase = 200 * time.Millisecond
	cfg.BreakerOpenMax = time.Second
	w := env.workers(t, dest, cfg)
	time.Sleep(runFor)
	attempts := sink.log()
	closeWithin(t, "workers", w.Close)

	if len(attempts) < 3 {
		t.Fatalf("%d attempts in %s, want at least 3: timed-out posts must be retried", len(attempts), runFor)
	}
	backToBack := int(runFor / timeout)
	if len(attempts) >= backToBack {
		t.Errorf("%d attempts in %s, want fewer than the %d that back-to-back retries would make", len(attempts), runFor, backToBack)
	}

	now := time.Now()
	longestWait := time.Duration(0)
	for i, a := range attempts {
		if a.end.IsZero() {
			if open := now.Sub(a.start); open > timeout+margin {
				t.Errorf("attempt %d still open after %s, want it ended at the %s timeout", i, open, timeout)
			}
			continue
		}
		took := a.end.Sub(a.start)
		if took > timeout+margin {
			t.Errorf("attempt %d took %s, want it ended at the %s timeout", i, took, timeout)
		}
		if took < timeout/2 {
			t.Errorf("attempt %d ended after %s, before the %s timeout: the client gave up early", i, took, timeout)
		}
		if i+1 < len(attempts) {
			longestWait = max(longestWait, attempts[i+1].start.Sub(a.end))
		}
	}
	if longestWait < cfg.BreakerOpenBase {
		t.Errorf("longest pause between attempts = %s, want a backoff of at least %s", longestWait, cfg.BreakerOpenBase)
	}
}
