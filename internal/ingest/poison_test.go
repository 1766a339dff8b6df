package ingest

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/telemetry"
)

// TestWorkers_PoisonRecordsDoNotBlock queues 300 records among which R holds
// about 6 MB, which the sink rejects with 413 in any batch, and S is
// malformed, which the sink rejects with 400. The sink also responds with 503 to
// everything for its first 2 seconds and then 429 with Retry-After: 1 once.
// Expected: 503 and 429 are retried, the retry after the 429 waits the
// second asked for, the batch holding R is split until R alone is
// dead-lettered, S is dead-lettered without being posted again, and every
// other record, including those queued behind R and S, is stored once.
func TestWorkers_PoisonRecordsDoNotBlock(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	const n = 300
	recs := newRecords("u1", "a1", "c1", n)
	big, malformed := recs[50], recs[120]
	big.Input.Data.Text.Raw = strings.Repeat("r", 6<<20)

	fake := newFakeClarifai(t, testKey)
	fake.maxBodyBytes = 4 << 20
	var (
		mu        sync.Mutex
		start     = time.Now()
		sent429   bool
		at429     time.Time
		unavail   int
		afterNext time.Time
	)
	fake.respond = func(req fakeRequest) (int, http.Header, bool) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(start) < 2*time.Second {
			unavail++
			return http.StatusServiceUnavailable, nil, true
		}
		if !sent429 {
			sent429, at429 = true, req.at
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, true
		}
		if afterNext.IsZero() {
			afterNext = req.at
		}
		if slices.Contains(req.ids, malformed.GetId()) {
			return http.StatusBadRequest, nil, true
		}
		return 0, nil, false
	}

	env.publishAll(t, recs)
	// One worker, so no post admitted before the 429 lands after it.
	cfg := fastWorkerConfig()
	cfg.Workers = 1
	// Fetches and posts may be larger than the fake accepts, so the large
	// record is first posted with others and the 413 split runs.
	cfg.MaxFetchBytes = 64 << 20
	cfg.MaxBatchBytes = 64 << 20
	w := env.workers(t, env.remote(t, fake, staticKeys{"u1/a1/c1": testKey}), cfg)
	waitFor(t, "298 stored", func() bool { return fake.stored() == n-2 })
	waitFor(t, "298 delivered and 2 dead-lettered", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == n-2 &&
			env.metrics.captures(t, telemetry.OutcomeFailed, "") == 2
	})
	closeWithin(t, "workers", w.Close)

	for _, rec := range recs {
		stored := fake.has("u1", "a1", rec.GetId())
		if poisoned := rec == big || rec == malformed; stored == poisoned {
			t.Errorf("record %s stored = %v, want %v", rec.GetId(), stored, !poisoned)
		}
	}

	reasons := map[string]string{}
	for _, d := range env.deadLetters(t) {
		reasons[d.rec.GetId()] = d.reason
	}
	if len(reasons) != 2 || reasons[big.GetId()] != ReasonTooLarge || reasons[malformed.GetId()] != ReasonBadRequest {
		t.Errorf("dead letters = %v, want %s: %s and %s: %s", reasons, big.GetId(), ReasonTooLarge, malformed.GetId(), ReasonBadRequest)
	}

	mu.Lock()
	defer mu.Unlock()
	if unavail == 0 {
		t.Error("the sink answered no 503: the test did not exercise retries")
	}
	if !sent429 {
		t.Fatal("the sink sent no 429")
	}
	if gap := afterNext.Sub(at429); gap < time.Second {
		t.Errorf("next post came %s after the 429, want at least its Retry-After of 1s", gap)
	}

	requireSplitThenAlone(t, fake.requestsFor(big.GetId()), big.GetId(), http.StatusRequestEntityTooLarge)
	requireSplitThenAlone(t, fake.requestsFor(malformed.GetId()), malformed.GetId(), http.StatusBadRequest)
}

// requireSplitThenAlone checks that a poison record was first posted with
// others, that exactly one request carried it alone with the given
// rejection, and that no request carried it after that one: a permanent
// rejection is never retried.
func requireSplitThenAlone(t *testing.T, reqs []fakeRequest, id string, status int) {
	t.Helper()
	if len(reqs) == 0 {
		t.Fatalf("no request carried %s", id)
	}
	if len(reqs[0].ids) < 2 {
		t.Errorf("first request with %s carried %d inputs, want it batched with others", id, len(reqs[0].ids))
	}
	alone := -1
	for i, r := range reqs {
		if len(r.ids) == 1 && r.status == status {
			if alone >= 0 {
				t.Errorf("%s was posted alone and rejected with %d twice, want once", id, status)
			}
			alone = i
		}
	}
	if alone < 0 {
		t.Fatalf("no request carried %s alone with status %d", id, status)
	}
	if after := len(reqs) - alone - 1; after != 0 {
		t.Errorf("%d requests carried %s after its %d, want none", after, id, status)
	}
}
