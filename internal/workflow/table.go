package workflow

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/collectord/collectord/filter"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Defaults of TableConfig.
const (
	DefaultTableMaxEntries    = 10_000
	DefaultTableTTL           = 30 * time.Second
	DefaultTableLookupTimeout = time.Second
)

// Values of the result attribute of collectord_workflow_lookups_total.
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
	// MaxEntries is how many lookup results the cache keeps, "not found"
	// and compile errors included. Default DefaultTableMaxEntries.
	MaxEntries int64
	// TTL is how long a result is kept. Writes that the Store reports
	// through OnWorkflowChange clear the cache at once. The TTL bounds how
	// long a change that the Store cannot report stays unseen. Default
	// DefaultTableTTL.
	TTL time.Duration
	// LookupTimeout bounds one store query. Default
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
	// Meter registers collectord_workflow_lookups_total. Nil uses a no-op
	// meter.
	Meter metric.Meter
}

// tableEntry is one cached lookup result: a compiled workflow, or the
// error that Find returns for it (not found, or a compile error).
type tableEntry struct {
	compiled *Compiled
	err      error
}

// Table finds compiled workflows. It caches what Store.GetWorkflow returned
// after compiling it with one filter.Config, and it also caches "not found"
// and compile errors, because a collector that names a missing or broken
// workflow would otherwise query the store for every input. A store error
// is not cached. Every change reported by Store.OnWorkflowChange clears the
// cache.
type Table struct {
	store   Store
	filters filter.Config
	cfg     TableConfig
	cache   *ristretto.Cache[string, *tableEntry]
	lookups metric.Int64Counter
	// results holds the attribute option of each lookup result, built once
	// because Find runs for every captured input.
	results map[string]metric.AddOption

	// generation is part of every cache key. Invalidate advances it before
	// clearing, so a lookup that started before a change stores its result
	// under a key no later lookup reads.
	generation atomic.Uint64
	// group merges concurrent misses of one key into one store query.
	group singleflight.Group

	// mu guards the cache. Get and Set hold it shared. Clear, Wait and
	// Close hold it exclusively, because ristretto's Clear and Close are
	// not safe alongside other calls, and a store query may finish after
	// Close.
	mu     sync.RWMutex
	closed bool
}

var _ Finder = (*Table)(nil)

// NewTable builds a Table over store that compiles workflows with filters,
// so that their remote-model nodes use filters.RemoteEndpoints and their
// random-sample nodes use filters.Float64. It registers the Table for store
// changes. Call Close when done.
func NewTable(store Store, filters filter.Config, cfg TableConfig, deps TableDeps) (*Table, error) {
	if store == nil {
		return nil, errors.New("new workflow table: store is nil")
	}
	cfg.applyDefaults()

	meter := deps.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("workflow")
	}

	lookups, err := meter.Int64Counter("collectord_workflow_lookups_total",
		metric.WithDescription("Workflow table lookups by result: hit (served from the cache, including cached not-found and compile errors), miss (read from the store), error (the store failed) or canceled (the caller stopped waiting)."))
	if err != nil {
		return nil, fmt.Errorf("new workflow table: %w", err)
	}

	cache, err := ristretto.NewCache(&ristretto.Config[string, *tableEntry]{
		// Ristretto recommends about ten counters per item it may hold.
		NumCounters: cfg.MaxEntries * 10,
		// Every entry costs 1, so MaxCost is the entry count.
		MaxCost:            cfg.MaxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("new workflow table: %w", err)
	}

	t := &Table{
		store:   store,
		filters: filters,
		cfg:     cfg,
		cache:   cache,
		lookups: lookups,
		results: resultOptions(lookupHit, lookupMiss, lookupError, lookupCanceled),
	}
	store.OnWorkflowChange(t.Invalidate)

	return t, nil
}

// Find returns the compiled workflow id of the app userID/appID. It returns
// an error wrapping ErrNotFound when the app has no such workflow, a compile
// error naming the node when the stored workflow no longer compiles with
// the Table's filter.Config, a store error, or ctx.Err() when ctx ends
// first. Callers share the returned value and must not modify it.
func (t *Table) Find(ctx context.Context, userID, appID, id string) (*Compiled, error) {
	key := t.cacheKey(userID, appID, id)
	if entry, ok := t.get(key); ok {
		t.count(ctx, lookupHit)
		return entry.compiled, entry.err
	}

	// Each waiter gives up when its own context ends, and the shared query
	// runs on without it.
	ch := t.group.DoChan(key, func() (any, error) {
		return t.load(ctx, key, userID, appID, id)
	})

	select {
	case res := <-ch:
		if res.Err != nil {
			t.count(ctx, lookupError)
			return nil, res.Err
		}

		t.count(ctx, lookupMiss)
		entry := res.Val.(*tableEntry)

		return entry.compiled, entry.err
	case <-ctx.Done():
		t.count(ctx, lookupCanceled)
		return nil, ctx.Err()
	}
}

// load reads and compiles one workflow and caches the result under key. A
// store error other than ErrNotFound is returned and not cached. The query
// gets a context of its own because it serves every caller waiting on key.
func (t *Table) load(ctx context.Context, key, userID, appID, id string) (*tableEntry, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.LookupTimeout)
	defer cancel()

	stored, err := t.store.GetWorkflow(qctx, userID, appID, id)
	switch {
	case errors.Is(err, ErrNotFound):
		entry := &tableEntry{err: fmt.Errorf("workflow %q of app %s/%s: %w", id, userID, appID, err)}
		t.set(key, entry)

		return entry, nil
	case err != nil:
		return nil, fmt.Errorf("get workflow %q of app %s/%s: %w", id, userID, appID, err)
	}

	entry := &tableEntry{}
	flow, err := t.filters.Compile(&clarifaipb.Workflow{Id: stored.ID, Nodes: stored.Nodes})
	if err != nil {
		entry.err = fmt.Errorf("compile workflow %q version %d of app %s/%s: %w", id, stored.Version, userID, appID, err)
	} else {
		entry.compiled = &Compiled{ID: stored.ID, Version: stored.Version, Flow: flow}
	}
	t.set(key, entry)

	return entry, nil
}

func (t *Table) get(key string) (*tableEntry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()

	if t.closed {
		return nil, false
	}

	return t.cache.Get(key)
}

func (t *Table) set(key string, entry *tableEntry) {
	t.mu.RLock()
	defer t.mu.RUnlock()

	if t.closed {
		return
	}

	// A false Set means the cache dropped or rejected the entry, which only
	// costs a store query next time.
	t.cache.SetWithTTL(key, entry, 1, t.cfg.TTL)
}

// cacheKey joins the generation, the user, the app and the workflow id,
// each prefixed with its length so that no two lookups share a key whatever
// bytes the ids hold.
func (t *Table) cacheKey(userID, appID, id string) string {
	var b strings.Builder
	b.Grow(32 + len(userID) + len(appID) + len(id))
	b.WriteString(strconv.FormatUint(t.generation.Load(), 10))

	for _, part := range []string{userID, appID, id} {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}

	return b.String()
}

// Invalidate drops every cached result. The Store calls it after each
// change. Call it directly when a change arrives by another path.
func (t *Table) Invalidate() {
	t.generation.Add(1)

	t.mu.Lock()
	defer t.mu.Unlock()

	if !t.closed {
		t.cache.Clear()
	}
}

// Close releases the cache. Later Find calls query the store directly.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()

	if !t.closed {
		t.closed = true
		t.cache.Close()
	}
}

// Wait blocks until every result cached so far is visible to Find.
// Ristretto applies writes asynchronously, so tests call Wait before they
// assert that a lookup is served from the cache.
func (t *Table) Wait() {
	t.mu.Lock()
	defer t.mu.Unlock()

	if !t.closed {
		t.cache.Wait()
	}
}

func (t *Table) count(ctx context.Context, result string) {
	t.lookups.Add(ctx, 1, t.results[result])
}

func resultOptions(results ...string) map[string]metric.AddOption {
	options := make(map[string]metric.AddOption, len(results))
	for _, result := range results {
		options[result] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", result)))
	}

	return options
}
