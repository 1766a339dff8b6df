package identity

import (
	"context"
	"errors"
	"fmt"
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

	"github.com/collectord/collectord/internal/capture"
)

// The resolver is how the capture engine finds the caller of a predict.
var _ capture.CallerResolver = (*Resolver)(nil)

// Defaults of ResolverConfig.
const (
	DefaultKeyCacheTTL   = time.Minute
	DefaultNegativeTTL   = 10 * time.Second
	DefaultMaxCachedKeys = 10_000
)

const (
	authorizationHeader = "authorization"
	// lookupTimeout bounds one store query for a key.
	lookupTimeout = 2 * time.Second
	// errorLogInterval limits store error logs to one per interval; the
	// lookups counter still counts every error.
	errorLogInterval = 10 * time.Second
	// maxAuthorizationBytes is far above any real key, so a longer header is
	// rejected without hashing it.
	maxAuthorizationBytes = 4096
)

// Values of the result attribute of collectord_key_lookups_total.
const (
	keyLookupHit      = "hit"
	keyLookupFound    = "found"
	keyLookupNotFound = "not_found"
	keyLookupError    = "error"
)

// ResolverConfig configures a Resolver. Zero fields take the defaults.
type ResolverConfig struct {
	// TrustedHeader names a request header whose value is the caller's user
	// ID, checked before any API key; empty turns it off. Set it only when
	// the proxy in front removes that header from client requests, or any
	// client can claim to be any user.
	TrustedHeader string
	// CacheTTL is how long a known key stays cached. A deleted key keeps
	// working until then unless Invalidate or Clear is called. Default
	// DefaultKeyCacheTTL.
	CacheTTL time.Duration
	// NegativeTTL is how long an unknown key is remembered as unknown, so
	// that repeated requests with a bad key do not each reach the store.
	// Default DefaultNegativeTTL.
	NegativeTTL time.Duration
	// MaxCachedKeys caps the cached keys, known and unknown. Default
	// DefaultMaxCachedKeys.
	MaxCachedKeys int64
	// JWT reads the caller from a payload Envoy's jwt_authn filter verified,
	// before the trusted header and API keys. Off unless JWT.PayloadKey is
	// set.
	JWT JWTConfig
	// Introspection resolves callers whose API key the key store does not
	// hold. Off unless Introspection.BaseURL is set. It only names callers
	// of predicts: ResolveKey, which authorizes the management API, never
	// uses it, because the endpoint returns a user but no scopes.
	Introspection IntrospectionConfig
}

func (c *ResolverConfig) applyDefaults() {
	c.TrustedHeader = strings.ToLower(strings.TrimSpace(c.TrustedHeader))
	if c.CacheTTL <= 0 {
		c.CacheTTL = DefaultKeyCacheTTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.MaxCachedKeys <= 0 {
		c.MaxCachedKeys = DefaultMaxCachedKeys
	}
	c.JWT.applyDefaults()
	c.Introspection.applyDefaults()
}

// ResolverDeps are the collaborators of a Resolver.
type ResolverDeps struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Meter registers collectord_key_lookups_total, and
	// collectord_key_introspections_total when introspection is on; nil uses
	// a no-op meter.
	Meter metric.Meter
}

// cachedKey is a cache entry: the stored key, or the fact that none exists.
type cachedKey struct {
	key   Key
	found bool
}

// Resolver turns request credentials into a caller. It caches key lookups by
// the SHA-256 of the secret, so neither the cache nor the logs ever hold a
// secret.
type Resolver struct {
	keys    KeyStore
	cfg     ResolverConfig
	cache   *ristretto.Cache[string, cachedKey]
	lookups metric.Int64Counter
	// results holds the attribute option of each lookup result, built once
	// because lookups run on every predict that carries a key.
	results map[string]metric.AddOption
	logger  *slog.Logger

	// generation is part of every cache key. Invalidate and Clear advance
	// it, so a lookup that started before them stores its result under a
	// key no later lookup reads.
	generation atomic.Uint64
	// group merges concurrent misses of one key into one store query.
	group    singleflight.Group
	errorLog rate.Sometimes

	// introspector is nil unless ResolverConfig.Introspection.BaseURL is set.
	introspector *Introspector
	// claimLog limits warnings about JWT payloads without the caller claim.
	claimLog rate.Sometimes

	// mu guards the cache. Get, Set and Del hold it shared; Clear, Wait and
	// Close hold it exclusively, because ristretto's Clear and Close are not
	// safe alongside other calls, and a store query may finish after Close.
	mu     sync.RWMutex
	closed bool
}

// NewResolver builds a Resolver over keys. Call Close when done.
func NewResolver(keys KeyStore, cfg ResolverConfig, deps ResolverDeps) (*Resolver, error) {
	if keys == nil {
		return nil, errors.New("new caller resolver: key store is nil")
	}
	cfg.applyDefaults()
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	meter := deps.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("identity")
	}

	lookups, err := meter.Int64Counter("collectord_key_lookups_total",
		metric.WithDescription("API key lookups by result: hit (served from the cache), found or not_found (read from the store), error (store failed)."))
	if err != nil {
		return nil, err
	}

	cache, err := ristretto.NewCache(&ristretto.Config[string, cachedKey]{
		// Ristretto recommends about ten counters per item it may hold.
		NumCounters: cfg.MaxCachedKeys * 10,
		// Every entry costs 1, so MaxCost is the entry count.
		MaxCost:            cfg.MaxCachedKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}

	var introspector *Introspector
	if cfg.Introspection.BaseURL != "" {
		introspector, err = NewIntrospector(cfg.Introspection, IntrospectorDeps{Logger: logger, Meter: meter})
		if err != nil {
			cache.Close()
			return nil, fmt.Errorf("new caller resolver: %w", err)
		}
	}

	return &Resolver{
		keys:         keys,
		cfg:          cfg,
		cache:        cache,
		lookups:      lookups,
		results:      resultOptions(keyLookupHit, keyLookupFound, keyLookupNotFound, keyLookupError),
		logger:       logger,
		errorLog:     rate.Sometimes{Interval: errorLogInterval},
		introspector: introspector,
		claimLog:     rate.Sometimes{Interval: errorLogInterval},
	}, nil
}

// ResolveKey resolves the value of an Authorization header, "Key <secret>"
// or "Bearer <secret>" with the scheme in any case, to its stored key. It
// returns ErrNoCredentials when the value holds no key, ErrKeyNotFound when
// the key is unknown, and another error when the store fails.
func (r *Resolver) ResolveKey(ctx context.Context, authorization string) (Key, error) {
	secret, err := parseAuthorization(authorization)
	if err != nil {
		return Key{}, err
	}
	return r.keyByHash(ctx, HashKey(secret))
}

func (r *Resolver) keyByHash(ctx context.Context, hash string) (Key, error) {
	entry, err := r.lookup(ctx, hash)
	if err != nil {
		return Key{}, err
	}
	if !entry.found {
		return Key{}, ErrKeyNotFound
	}

	key := entry.key
	key.Scopes = slices.Clone(key.Scopes)
	return key, nil
}

// ResolveCaller returns the user a predict is made for, from the first of
// these sources that names one:
//
//  1. the configured claim of a JWT payload that Envoy's jwt_authn filter
//     verified and forwarded in the dynamic metadata, when JWT is set;
//  2. the trusted header, when one is configured;
//  3. the owner of the API key in the authorization header, from the key
//     store or, for a key the store does not hold, the introspection
//     endpoint when one is configured.
//
// ok is false when none names a user. Client-controlled headers decide
// nothing unless they are configured as the trusted header.
func (r *Resolver) ResolveCaller(ctx context.Context, req capture.RequestInfo) (string, bool) {
	if user, ok := r.callerFromJWT(req.Metadata); ok {
		return user, true
	}
	if req.Headers == nil {
		return "", false
	}

	if r.cfg.TrustedHeader != "" {
		if user := strings.TrimSpace(req.Headers.Get(r.cfg.TrustedHeader)); user != "" {
			return user, true
		}
	}
	return r.callerFromKey(ctx, req.Headers.Get(authorizationHeader))
}

// callerFromJWT returns the caller named by a verified JWT payload. A
// payload without the claim is logged, since it means the claim name is
// wrong for the tokens in use, and the next sources are tried.
func (r *Resolver) callerFromJWT(md map[string]map[string]any) (string, bool) {
	user, outcome := r.cfg.JWT.callerFromMetadata(md)
	if outcome == jwtNoClaim {
		r.claimLog.Do(func() {
			r.logger.Warn("verified JWT payload has no string claim naming the caller",
				"namespace", r.cfg.JWT.Namespace, "payload_key", r.cfg.JWT.PayloadKey, "claim", r.cfg.JWT.Claim)
		})
	}
	return user, outcome == jwtFound
}

// callerFromKey returns the owner of the API key in authorization, asking
// the introspection endpoint when the store does not hold the key. A store
// error ends the lookup, because the endpoint may not know local keys.
func (r *Resolver) callerFromKey(ctx context.Context, authorization string) (string, bool) {
	secret, err := parseAuthorization(authorization)
	if err != nil {
		return "", false
	}
	hash := HashKey(secret)

	key, err := r.keyByHash(ctx, hash)
	switch {
	case err == nil:
		return key.UserID, true
	case !errors.Is(err, ErrKeyNotFound) || r.introspector == nil:
		return "", false
	case isJWT(secret):
		// A bearer JWT that jwt_authn did not accept is not an API key, and
		// the endpoint must not receive a token meant for someone else.
		return "", false
	}

	// The predict waits at most Introspection.Wait. A slower request goes
	// on in the background and caches its result for the next predict.
	wctx, cancel := context.WithTimeout(ctx, r.cfg.Introspection.Wait)
	defer cancel()
	user, err := r.introspector.introspect(wctx, secret, hash)
	if err != nil {
		return "", false
	}
	return user, true
}

// lookup returns the cached entry for hash, or reads and caches it.
func (r *Resolver) lookup(ctx context.Context, hash string) (cachedKey, error) {
	cacheKey := strconv.FormatUint(r.generation.Load(), 10) + ":" + hash
	if entry, ok := r.get(cacheKey); ok {
		r.count(ctx, keyLookupHit)
		return entry, nil
	}

	ch := r.group.DoChan(cacheKey, func() (any, error) {
		return r.load(ctx, cacheKey, hash)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			r.count(ctx, keyLookupError)
			r.errorLog.Do(func() {
				r.logger.Error("API key lookup failed", "error", res.Err)
			})
			return cachedKey{}, res.Err
		}
		entry := res.Val.(cachedKey)
		if entry.found {
			r.count(ctx, keyLookupFound)
		} else {
			r.count(ctx, keyLookupNotFound)
		}
		return entry, nil
	case <-ctx.Done():
		return cachedKey{}, ctx.Err()
	}
}

// load reads one key from the store and caches the result, an unknown key
// included. The query gets a context of its own because it serves every
// caller waiting on the same key.
func (r *Resolver) load(ctx context.Context, cacheKey, hash string) (cachedKey, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()

	key, err := r.keys.KeyByHash(qctx, hash)
	switch {
	case errors.Is(err, ErrKeyNotFound):
		entry := cachedKey{}
		r.set(cacheKey, entry, r.cfg.NegativeTTL)
		return entry, nil
	case err != nil:
		return cachedKey{}, err
	}

	r.logger.Debug("resolved API key", "key_id", key.ID, "user_id", key.UserID, "app_id", key.AppID)
	entry := cachedKey{key: key, found: true}
	r.set(cacheKey, entry, r.cfg.CacheTTL)
	return entry, nil
}

func (r *Resolver) get(cacheKey string) (cachedKey, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return cachedKey{}, false
	}
	return r.cache.Get(cacheKey)
}

// set caches entry; a false Set from ristretto means the entry was dropped,
// which only costs a store query next time.
func (r *Resolver) set(cacheKey string, entry cachedKey, ttl time.Duration) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.closed {
		r.cache.SetWithTTL(cacheKey, entry, 1, ttl)
	}
}

// Invalidate drops the cached result for a key hash, so the next request
// with that key reads the store. Call it after deleting a key. It also
// advances the cache generation, so that a lookup in flight cannot cache the
// deleted key again. As a side effect, every other key is read from the
// store once more.
func (r *Resolver) Invalidate(hash string) {
	old := strconv.FormatUint(r.generation.Add(1)-1, 10) + ":" + hash

	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.closed {
		r.cache.Del(old)
	}
}

// Clear drops every cached key.
func (r *Resolver) Clear() {
	r.generation.Add(1)

	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.cache.Clear()
	}
}

// Wait blocks until every lookup cached so far is visible, introspected
// keys included. Ristretto applies writes asynchronously, so tests call
// Wait before they assert that a lookup is served from the cache.
func (r *Resolver) Wait() {
	if r.introspector != nil {
		r.introspector.Wait()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.cache.Wait()
	}
}

// Close releases the caches. Later lookups read the store directly, and
// introspect every unknown key again.
func (r *Resolver) Close() {
	if r.introspector != nil {
		r.introspector.Close()
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.cache.Close()
	}
}

func (r *Resolver) count(ctx context.Context, result string) {
	r.lookups.Add(ctx, 1, r.results[result])
}

func resultOptions(results ...string) map[string]metric.AddOption {
	out := make(map[string]metric.AddOption, len(results))
	for _, res := range results {
		out[res] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", res)))
	}
	return out
}

// parseAuthorization extracts the secret from "Key <secret>" or
// "Bearer <secret>". Any other value, an empty secret, or one with inner
// whitespace holds no usable key.
func parseAuthorization(value string) (string, error) {
	if len(value) > maxAuthorizationBytes {
		return "", ErrNoCredentials
	}

	scheme, secret, ok := strings.Cut(strings.TrimSpace(value), " ")
	if !ok {
		return "", ErrNoCredentials
	}
	if !strings.EqualFold(scheme, "Key") && !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoCredentials
	}

	secret = strings.TrimSpace(secret)
	if secret == "" || strings.ContainsAny(secret, " \t\r\n") {
		return "", ErrNoCredentials
	}
	return secret, nil
}

// isJWT reports whether secret has the shape of a JWT in compact
// serialization: three base64url segments joined by two dots. Clarifai's
// keys (hex) and collectord's keys (base64url) contain no dot.
func isJWT(secret string) bool {
	return strings.Count(secret, ".") == 2
}
