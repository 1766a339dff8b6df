package ingest

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/collectord/collectord/internal/pb/capturepb"
	"github.com/collectord/collectord/internal/telemetry"
)

// fakeClock is a settable clock for the breaker state machine.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestBreakers(threshold int) (*breakers, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBreakers(breakerConfig{threshold: threshold, openBase: time.Second, openMax: 4 * time.Second})
	b.now = clock.now
	return b, clock
}

func TestBreakers_OpensAfterThreshold(t *testing.T) {
	b, clock := newTestBreakers(3)
	a := DestinationRef{UserID: "u", AppID: "a", CollectorID: "c"}
	other := DestinationRef{UserID: "u", AppID: "b", CollectorID: "c"}

	for i := range 2 {
		adm := b.admit(a)
		if !adm.post {
			t.Fatalf("post %d refused before the threshold", i)
		}
		if tr := b.record(a, adm, true, 0); tr.opened {
			t.Fatalf("breaker opened after %d failures, want 3", i+1)
		}
	}
	tr := b.record(a, b.admit(a), true, 0)
	if !tr.opened || tr.openFor != time.Second {
		t.Fatalf("third failure: %+v, want opened for the 1s base", tr)
	}

	if adm := b.admit(a); adm.post || adm.wait != time.Second {
		t.Errorf("admit while open = %+v, want deferred for 1s", adm)
	}
	if adm := b.admit(other); !adm.post {
		t.Error("another destination was refused: breakers are per destination")
	}
	if open, half := b.counts(); open != 1 || half != 0 {
		t.Errorf("counts = %d open, %d half-open, want 1 and 0", open, half)
	}

	clock.advance(time.Second)
	trial := b.admit(a)
	if !trial.post || !trial.trial {
		t.Fatalf("admit after the open interval = %+v, want the trial post", trial)
	}
	if second := b.admit(a); second.post {
		t.Error("a second post was admitted while the trial is in flight")
	}
	if open, half := b.counts(); open != 0 || half != 1 {
		t.Errorf("counts during trial = %d open, %d half-open, want 0 and 1", open, half)
	}
}

func TestBreakers_FailedTrialDoublesInterval(t *testing.T) {
	b, clock := newTestBreakers(1)
	a := DestinationRef{AppID: "a"}

	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, w := range want {
		tr := b.record(a, b.admit(a), true, 0)
		if !tr.opened || tr.openFor != w {
			t.Fatalf("opening %d: %+v, want open for %s (doubling, capped at 4s)", i+1, tr, w)
		}
		clock.advance(w)
	}

	tr := b.record(a, b.admit(a), false, 0)
	if !tr.closed {
		t.Fatalf("successful trial: %+v, want closed", tr)
	}
	if tr := b.record(a, b.admit(a), true, 0); tr.openFor != time.Second {
		t.Errorf("after closing, next opening lasts %s, want the base again", tr.openFor)
	}
}

func TestBreakers_RetryAfterOpensAtOnce(t *testing.T) {
	b, _ := newTestBreakers(5)
	a := DestinationRef{AppID: "a"}

	tr := b.record(a, b.admit(a), true, 30*time.Second)
	if !tr.opened || tr.openFor != 30*time.Second {
		t.Fatalf("429 with Retry-After 30s: %+v, want open for 30s at the first failure", tr)
	}
}

func TestBreakers_ThresholdZeroDisables(t *testing.T) {
	b, _ := newTestBreakers(0)
	a := DestinationRef{AppID: "a"}
	for range 10 {
		if tr := b.record(a, b.admit(a), true, time.Minute); tr.opened {
			t.Fatal("a disabled breaker opened")
		}
	}
	if adm := b.admit(a); !adm.post {
		t.Error("a disabled breaker refused a post")
	}
}

// TestWorkers_BreakerIsolatesFailingDestination: destination A answers 503
// to every post while B is healthy. B's records are all delivered while A's
// breaker is open, A is posted to far fewer times than it has records, and
// once A recovers every record of both is stored exactly once.
func TestWorkers_BreakerIsolatesFailingDestination(t *testing.T) {
	env := openEnv(t, t.TempDir(), QueueConfig{})
	defer env.close(t)

	var aDown atomic.Bool
	aDown.Store(true)
	var aPosts atomic.Int64
	fake := newFakeClarifai(t, testKey)
	fake.respond = func(req fakeRequest) (int, http.Header, bool) {
		if !strings.Contains(req.path, "/apps/a/") {
			return 0, nil, false
		}
		aPosts.Add(1)
		return http.StatusServiceUnavailable, nil, aDown.Load()
	}

	const n = 200
	recsA := newRecords("u1", "a", "c1", n)
	recsB := newRecords("u1", "b", "c1", n)
	var all []*capturepb.Record
	for i := range n {
		all = append(all, recsA[i], recsB[i])
	}
	env.publishAll(t, all)

	cfg := fastWorkerConfig()
	cfg.FetchBatch = 20
	cfg.BreakerThreshold = 3
	cfg.BreakerOpenBase = 100 * time.Millisecond
	cfg.BreakerOpenMax = 400 * time.Millisecond
	// The pause after a wholly deferred fetch holds up B's records behind
	// A's; with open intervals this short it would take most of the time.
	cfg.MaxDeferredPause = 5 * time.Millisecond
	keys := staticKeys{"u1/a/c1": testKey, "u1/b/c1": testKey}
	w := env.workers(t, env.remote(t, fake, keys), cfg)
	defer closeWithin(t, "workers", w.Close)

	waitFor(t, "all of B delivered", func() bool {
		for _, rec := range recsB {
			if !fake.has("u1", "b", rec.GetId()) {
				return false
			}
		}
		return true
	})
	// Let A keep failing a while longer: without a breaker every record
	// would be posted again every few tens of milliseconds.
	time.Sleep(time.Second)
	postsWhileDown := aPosts.Load()

	if opens := env.metrics.sum(t, "collectord_destination_breaker_opens_total"); opens == 0 {
		t.Error("breaker opens = 0, want A's breaker opened")
	}
	tracked := env.metrics.sum(t, "collectord_destination_breaker_state", attribute.String("state", breakerOpen)) +
		env.metrics.sum(t, "collectord_destination_breaker_state", attribute.String("state", breakerHalfOpen))
	if tracked != 1 {
		t.Errorf("destinations open or half-open = %d, want 1 (A only)", tracked)
	}
	if postsWhileDown >= n/4 {
		t.Errorf("A was posted to %d times while down, want far fewer than its %d records", postsWhileDown, n)
	}
	if got := env.metrics.captures(t, telemetry.OutcomeDelivered, ""); got < n {
		t.Errorf("delivered = %d while A was down, want at least B's %d", got, n)
	}

	aDown.Store(false)
	waitFor(t, "every record delivered after A recovers", func() bool {
		return env.metrics.captures(t, telemetry.OutcomeDelivered, "") == 2*n
	})
	for _, rec := range recsA {
		if !fake.has("u1", "a", rec.GetId()) {
			t.Errorf("record %s of A not stored", rec.GetId())
		}
	}
	if got := len(env.deadLetters(t)); got != 0 {
		t.Errorf("dead letters = %d, want 0: 503 is retryable", got)
	}
	waitFor(t, "A's breaker closed", func() bool {
		return env.metrics.sum(t, "collectord_destination_breaker_state", attribute.String("state", breakerOpen)) == 0 &&
			env.metrics.sum(t, "collectord_destination_breaker_state", attribute.String("state", breakerHalfOpen)) == 0
	})
}
