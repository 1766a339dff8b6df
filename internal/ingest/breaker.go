package ingest

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// States of a destination's circuit breaker: the state label of
// collectord_destination_breaker_state. A closed breaker is not tracked, so
// the gauge reports only the other two states.
const (
	breakerOpen     = "open"
	breakerHalfOpen = "half_open"
)

// Defaults of the breaker settings of WorkerConfig.
const (
	DefaultBreakerThreshold = 5
	DefaultBreakerOpenBase  = 5 * time.Second
	DefaultBreakerOpenMax   = 5 * time.Minute
)

// breakerConfig sizes the per-destination circuit breakers.
type breakerConfig struct {
	// threshold is the number of consecutive failed posts that opens the
	// breaker; 0 turns breakers off.
	threshold int
	openBase  time.Duration
	openMax   time.Duration
}

// breakers holds one circuit breaker per destination whose recent posts
// failed. A destination absent from the map is closed: posts go ahead.
//
// A post fails when every record in it was retryable (a timeout, 5xx or
// 429). After threshold consecutive failures the breaker opens for
// openBase, doubled at each reopening up to openMax, or for the
// destination's Retry-After when that is longer. A Retry-After opens the
// breaker at once, because it asks the client as a whole to wait. When the
// open interval ends, the next post is the one trial (half-open): success
// closes the breaker, failure opens it again for a longer interval.
type breakers struct {
	cfg breakerConfig
	now func() time.Time

	mu    sync.Mutex
	byRef map[DestinationRef]*breaker
}

// breaker is the state of one destination.
type breaker struct {
	// failures counts consecutive failed posts while closed.
	failures int
	// opens counts openings since the breaker was last closed; it sets the
	// length of the next open interval.
	opens int
	// openUntil is when the open interval ends; zero while closed.
	openUntil time.Time
	// trial is set while the half-open trial post is in flight.
	trial bool
}

func newBreakers(cfg breakerConfig) *breakers {
	return &breakers{cfg: cfg, now: time.Now, byRef: map[DestinationRef]*breaker{}}
}

// admission is the decision for one post.
type admission struct {
	// post is false when the records must be deferred by wait.
	post bool
	// trial marks the one post allowed while half-open.
	trial bool
	wait  time.Duration
}

// admit decides whether a post to ref may go ahead now.
func (b *breakers) admit(ref DestinationRef) admission {
	if b.cfg.threshold <= 0 {
		return admission{post: true}
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	st := b.byRef[ref]
	if st == nil || st.openUntil.IsZero() {
		return admission{post: true}
	}
	if now := b.now(); now.Before(st.openUntil) {
		return admission{wait: st.openUntil.Sub(now)}
	}
	if st.trial {
		// Another worker is running the trial: wait about one base interval
		// for its outcome instead of piling more posts onto the destination.
		return admission{wait: b.cfg.openBase}
	}
	st.trial = true
	return admission{post: true, trial: true}
}

// transition is what a recorded post did to the breaker.
type transition struct {
	// opened is set when the breaker (re)opened; openFor is its interval.
	opened  bool
	openFor time.Duration
	// closed is set when a post succeeded on an open or half-open breaker.
	closed bool
}

// record reports the outcome of an admitted post. retryAfter is the longest
// delay the destination asked for, already capped by the caller.
func (b *breakers) record(ref DestinationRef, adm admission, failed bool, retryAfter time.Duration) transition {
	if b.cfg.threshold <= 0 {
		return transition{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	st := b.byRef[ref]
	if !failed {
		if st == nil {
			return transition{}
		}
		delete(b.byRef, ref)
		return transition{closed: !st.openUntil.IsZero()}
	}

	if st == nil {
		st = &breaker{}
		b.byRef[ref] = st
	}
	if adm.trial {
		st.trial = false
	}
	st.failures++
	if !adm.trial && st.failures < b.cfg.threshold && retryAfter <= 0 {
		return transition{}
	}

	st.opens++
	st.failures = 0
	openFor := max(b.interval(st.opens), retryAfter)
	st.openUntil = b.now().Add(openFor)
	return transition{opened: true, openFor: openFor}
}

// interval returns openBase doubled per earlier opening, capped at openMax.
func (b *breakers) interval(opens int) time.Duration {
	d := b.cfg.openBase
	for i := 1; i < opens && d < b.cfg.openMax; i++ {
		d *= 2
	}
	return min(d, b.cfg.openMax)
}

// counts returns how many destinations are open and half-open.
func (b *breakers) counts() (open, halfOpen int) {
	b.mu.Lock()
	defer b.mu.Unlock()

	now := b.now()
	for _, st := range b.byRef {
		switch {
		case st.openUntil.IsZero():
		case now.Before(st.openUntil):
			open++
		default:
			halfOpen++
		}
	}
	return open, halfOpen
}

// breakerMetrics are the instruments of the circuit breakers.
type breakerMetrics struct {
	opens metric.Int64Counter
	state metric.Registration
}

func newBreakerMetrics(meter metric.Meter, b *breakers) (*breakerMetrics, error) {
	opens, err := meter.Int64Counter("collectord_destination_breaker_opens_total",
		metric.WithDescription("Times a destination's circuit breaker opened after failed posts."))
	if err != nil {
		return nil, err
	}
	gauge, err := meter.Int64ObservableGauge("collectord_destination_breaker_state",
		metric.WithDescription("Destinations whose circuit breaker is open or half-open, by state."))
	if err != nil {
		return nil, err
	}
	openAttrs := metric.WithAttributes(attribute.String("state", breakerOpen))
	halfOpenAttrs := metric.WithAttributes(attribute.String("state", breakerHalfOpen))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		open, halfOpen := b.counts()
		o.ObserveInt64(gauge, int64(open), openAttrs)
		o.ObserveInt64(gauge, int64(halfOpen), halfOpenAttrs)
		return nil
	}, gauge)
	if err != nil {
		return nil, err
	}
	return &breakerMetrics{opens: opens, state: reg}, nil
}
