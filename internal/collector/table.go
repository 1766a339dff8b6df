package collector

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Defaults of TableConfig.
const (
	DefaultTableMaxEntries    = 10_000
	DefaultTableTTL           = 30 * time.Second
	DefaultTableLookupTimeout = time.Second
)

// Values of the result attribute of collectord_collector_lookups_total.
const (
	lookupHit   = "hit"
	lookupMiss  = "miss"
	lookupError = "error"
	// lookupCanceled counts callers whose context ended while the store
	// query was running.
	lookupCanceled = "canceled"
)

// TableConfig sizes the cache of a Table. Zero fields take the defaults.
type TableConfig struct {
	// MaxEntries is how many (caller, model) results the cache keeps, empty
	// results included. Default DefaultTableMaxEntries.
	MaxEntries int64
	// TTL is how long a result is kept. Writes through the same Store clear
	// the cache at once. The TTL bounds how long a change that the Store
	// cannot report, such as another process writing a shared database,
	// stays unseen. Default DefaultTableTTL.
	TTL time.Duration
	// LookupTimeout bounds one store query. A lookup that times out returns
	// no candidates, so the predict it serves is not captured. Default
	// DefaultTableLookupTimeout.
	LookupTimeout time.Duration
}

func (c *TableConfig) applyDefaults() {
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultTableMaxEntries
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTableTTL
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = DefaultTableLookupTimeout
	}
}

// TableDeps are the collaborators of a Table.
type TableDeps struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Meter registers collectord_collector_lookups_total; nil uses a no-op
	// meter.
	Meter metric.Meter
}

// Table finds the collectors that may capture a predict by a caller of a
// model. It caches Store.MatchCollectors results in memory, empty results
// included, so that the request path rarely reaches the store: almost every
// predict matches no collector. Every change reported by Store.OnChange
// clears the cache, so the next lookup reads the store again.
type Table struct {
	store   Store
	cfg     TableConfig
	cache   *ristretto.Cache[string, []Collector]
	lookups metric.Int64Counter
	// results holds the attribute option of each lookup result, built once
	// because Candidates runs on every predict.
	results map[string]metric.AddOption
	logger  *slog.Logger

	// generation is part of every cache key. Invalidate advances it before
	// clearing, so a lookup that started before a change stores its result
	// under a key no later lookup reads.
	generation atomic.Uint64
	// group merges concurrent misses of one key into one store query.
	group singleflight.Group
	// errorLog limits store error logs to one per interval; the lookups
	// counter still counts every error.
	errorLog rate.Sometimes

	// mu guards the cache. Get and Set hold it shared; Clear, Wait and Close
	// hold it exclusively, because ristretto's Clear and Close are not safe
	// alongside other calls, and a store query may finish after Close.
	mu     sync.RWMutex
	closed bool
}

// NewTable builds a Table over store and registers it for store changes.
// Call Close when done.
func NewTable(store Store, cfg TableConfig, deps TableDeps) (*Table, error) {
	if store == nil {
		return nil, errors.New("new collector table: store is nil")
	}
	cfg.applyDefaults()
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	meter := deps.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("collector")
	}

	lookups, err := meter.Int64Counter("collectord_collector_lookups_total",
		metric.WithDescription("Collector table lookups by result: hit (served from the cache), miss (read from the store) or error (store failed; no candidates) or canceled (the caller stopped waiting)."))
	if err != nil {
		return nil, err
	}

	cache, err := ristretto.NewCache(&ristretto.Config[string, []Collector]{
		// Ristretto recommends about ten counters per item it may hold.
		NumCounters: cfg.MaxEntries * 10,
		// Every entry costs 1, so MaxCost is the entry count.
		MaxCost:            cfg.MaxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}

	t := &Table{
		store:    store,
		cfg:      cfg,
		cache:    cache,
		lookups:  lookups,
		results:  resultOptions(lookupHit, lookupMiss, lookupError, lookupCanceled),
		logger:   logger,
		errorLog: rate.Sometimes{Interval: 10 * time.Second},
	}
	store.OnChange(t.Invalidate)
	return t, nil
}

// Candidates returns the active collectors for callerUserID and model, by the
// rules of Store.MatchCollectors. It never fails: a store error is logged and
// counted, and returns no candidates. The caller may modify the result.
func (t *Table) Candidates(ctx context.Context, callerUserID string, model ModelRef) []Collector {
	key := t.cacheKey(callerUserID, model)
	if found, ok := t.get(key); ok {
		t.count(ctx, lookupHit)
		return slices.Clone(found)
	}

	// Each waiter gives up when its own context ends, and the shared query
	// runs on without it.
	ch := t.group.DoChan(key, func() (any, error) {
		return t.load(ctx, key, callerUserID, model)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			t.count(ctx, lookupError)
			t.logError(res.Err, callerUserID, model)
			return nil
		}
		t.count(ctx, lookupMiss)
		return slices.Clone(res.Val.([]Collector))
	case <-ctx.Done():
		t.count(ctx, lookupCanceled)
		return nil
	}
}

// load queries the store and caches the result under key. The query gets a
// context of its own because it serves every caller waiting on key.
func (t *Table) load(ctx context.Context, key, callerUserID string, model ModelRef) ([]Collector, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.LookupTimeout)
	defer cancel()

	found, err := t.store.MatchCollectors(qctx, callerUserID, model)
	if err != nil {
		return nil, err
	}

	t.set(key, found)
	return found, nil
}

func (t *Table) get(key string) ([]Collector, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, false
	}
	return t.cache.Get(key)
}

func (t *Table) set(key string, found []Collector) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return
	}
	// A false Set means the cache dropped or rejected the entry, which only
	// costs a store query next time.
	t.cache.SetWithTTL(key, found, 1, t.cfg.TTL)
}

// cacheKey joins the generation, the caller and the model's user, app and
// ID, each prefixed with its length so that no two lookups share a key
// whatever bytes the IDs hold. The version is left out because
// Store.MatchCollectors ignores it.
func (t *Table) cacheKey(callerUserID string, model ModelRef) string {
	var b strings.Builder
	b.Grow(32 + len(callerUserID) + len(model.UserID) + len(model.AppID) + len(model.ModelID))
	b.WriteString(strconv.FormatUint(t.generation.Load(), 10))
	for _, part := range []string{callerUserID, model.UserID, model.AppID, model.ModelID} {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

// Invalidate drops every cached result. The Store calls it after each change;
// call it directly when a change arrives by another path.
func (t *Table) Invalidate() {
	t.generation.Add(1)

	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.cache.Clear()
	}
}

// Close releases the cache. Later Candidates calls query the store directly.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.cache.Close()
	}
}

func (t *Table) count(ctx context.Context, result string) {
	t.lookups.Add(ctx, 1, t.results[result])
}

func resultOptions(results ...string) map[string]metric.AddOption {
	out := make(map[string]metric.AddOption, len(results))
	for _, r := range results {
		out[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
	}
	return out
}

func (t *Table) logError(err error, callerUserID string, model ModelRef) {
	t.errorLog.Do(func() {
		t.logger.Error("collector lookup failed; predicts are not captured until the store recovers",
			"error", err,
			"caller_user_id", callerUserID,
			"model_user_id", model.UserID,
			"model_app_id", model.AppID,
			"model_id", model.ModelID)
	})
}

// Wait blocks until every result cached so far is visible to Candidates.
// Ristretto applies writes asynchronously, so tests call Wait before they
// assert that a lookup is served from the cache.
func (t *Table) Wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.cache.Wait()
	}
}
