package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Defaults of IntrospectionConfig.
const (
	DefaultIntrospectionTimeout     = 2 * time.Second
	DefaultIntrospectionWait        = 100 * time.Millisecond
	DefaultIntrospectionCacheTTL    = 5 * time.Minute
	DefaultIntrospectionNegativeTTL = 30 * time.Second
	DefaultIntrospectionMaxInFlight = 64
)

const (
	// introspectionPath is Clarifai's "who am I" endpoint: it returns the
	// user that owns the key in the Authorization header.
	introspectionPath = "/v2/users/me"
	// maxIntrospectionBodyBytes bounds the response read. A users/me reply
	// is well under 1 KiB.
	maxIntrospectionBodyBytes = 64 << 10
)

// Values of the result attribute of collectord_key_introspections_total.
const (
	introspectHit       = "hit"
	introspectFound     = "found"
	introspectNotFound  = "not_found"
	introspectError     = "error"
	introspectBusy      = "busy"
	introspectAbandoned = "abandoned"
)

// ErrIntrospectionBusy means MaxInFlight introspection requests were already
// running, so the key was not looked up. It is not cached.
var ErrIntrospectionBusy = errors.New("too many API key introspections in flight")

// IntrospectionConfig configures an Introspector. Zero fields other than
// BaseURL take the defaults.
type IntrospectionConfig struct {
	// BaseURL is the http:// or https:// base of a Clarifai-compatible API,
	// without /v2, for example https://api.clarifai.com. Required.
	BaseURL string
	// Timeout bounds one request, from connecting to reading the body.
	// Default DefaultIntrospectionTimeout.
	Timeout time.Duration
	// Wait bounds how long the Resolver holds a predict's request headers
	// for an introspection. The request goes on in the background and its
	// result is cached for the next predict with that key. Keep it below
	// Envoy's message_timeout (200 ms by default), or Envoy gives up on the
	// reply first. Default DefaultIntrospectionWait.
	Wait time.Duration
	// CacheTTL is how long a key the endpoint accepted stays cached, so a
	// key revoked at the endpoint names its user until then. Default
	// DefaultIntrospectionCacheTTL.
	CacheTTL time.Duration
	// NegativeTTL is how long a key the endpoint rejected stays cached as
	// unknown. Default DefaultIntrospectionNegativeTTL.
	NegativeTTL time.Duration
	// MaxCachedKeys caps the cached keys, accepted and rejected. Default
	// DefaultMaxCachedKeys.
	MaxCachedKeys int64
	// MaxInFlight caps concurrent requests, so that a flood of predicts
	// with made-up keys cannot flood the endpoint. A lookup over the cap
	// fails with ErrIntrospectionBusy. Default
	// DefaultIntrospectionMaxInFlight.
	MaxInFlight int
}

func (c *IntrospectionConfig) applyDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultIntrospectionTimeout
	}
	if c.Wait <= 0 {
		c.Wait = DefaultIntrospectionWait
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = DefaultIntrospectionCacheTTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultIntrospectionNegativeTTL
	}
	if c.MaxCachedKeys <= 0 {
		c.MaxCachedKeys = DefaultMaxCachedKeys
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultIntrospectionMaxInFlight
	}
}

// IntrospectorDeps are the collaborators of an Introspector.
type IntrospectorDeps struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Meter registers collectord_key_introspections_total; nil uses a no-op
	// meter.
	Meter metric.Meter
}

// introspected is a cache entry: the key's user, or the fact that the
// endpoint rejected the key.
type introspected struct {
	userID string
	found  bool
}

// Introspector resolves API keys that the local key store does not hold by
// asking a Clarifai-compatible API who owns them: GET {base}/v2/users/me
// with "Authorization: Key <key>". Results are cached by the SHA-256 of the
// key, and concurrent lookups of one key share one request. The key is sent
// only in that header: never logged, cached or put in a metric label.
type Introspector struct {
	cfg      IntrospectionConfig
	endpoint string
	client   *http.Client
	cache    *ristretto.Cache[string, introspected]
	group    singleflight.Group
	// slots holds one token per request in flight.
	slots    chan struct{}
	lookups  metric.Int64Counter
	results  map[string]metric.AddOption
	logger   *slog.Logger
	errorLog rate.Sometimes

	// mu guards the cache as in Resolver: ristretto's Clear and Close are
	// not safe alongside other calls, and a request may finish after Close.
	mu     sync.RWMutex
	closed bool

	// joined, when set by a test, runs after a lookup joined or started a
	// request.
	joined func()
}

// NewIntrospector builds an Introspector for cfg.BaseURL. Call Close when
// done.
func NewIntrospector(cfg IntrospectionConfig, deps IntrospectorDeps) (*Introspector, error) {
	endpoint, err := introspectionEndpoint(cfg.BaseURL)
	if err != nil {
		return nil, err
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

	lookups, err := meter.Int64Counter("collectord_key_introspections_total",
		metric.WithDescription("API key introspections by result: hit (served from the cache), found or not_found (returned by the endpoint), error (request failed, not cached), busy (not sent, too many in flight), abandoned (the predict stopped waiting; the request goes on)."))
	if err != nil {
		return nil, err
	}

	cache, err := ristretto.NewCache(&ristretto.Config[string, introspected]{
		NumCounters:        cfg.MaxCachedKeys * 10,
		MaxCost:            cfg.MaxCachedKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}

	return &Introspector{
		cfg:      cfg,
		endpoint: endpoint,
		client:   newIntrospectionClient(cfg),
		cache:    cache,
		slots:    make(chan struct{}, cfg.MaxInFlight),
		lookups:  lookups,
		results:  resultOptions(introspectHit, introspectFound, introspectNotFound, introspectError, introspectBusy, introspectAbandoned),
		logger:   logger,
		errorLog: rate.Sometimes{Interval: errorLogInterval},
	}, nil
}

// introspectionEndpoint validates base and returns the users/me URL under it.
func introspectionEndpoint(base string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil {
		return "", fmt.Errorf("introspection base URL %q is invalid: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("introspection base URL %q must start with http:// or https://", base)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("introspection base URL %q must be scheme://host[:port][/path] only", base)
	}
	return strings.TrimRight(u.String(), "/") + introspectionPath, nil
}

// newIntrospectionClient returns a client that keeps connections to the
// endpoint alive and bounds every request by cfg.Timeout.
func newIntrospectionClient(cfg IntrospectionConfig) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Every request goes to one host. Go's default of 2 idle connections per
	// host would close and reopen connections under concurrent lookups.
	transport.MaxIdleConnsPerHost = cfg.MaxInFlight
	transport.ResponseHeaderTimeout = cfg.Timeout
	return &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// Following a redirect would send the key to another URL, so the
		// 3xx response itself is returned and treated as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Introspect returns the user that owns secret. It returns ErrKeyNotFound
// when the endpoint rejects the key, ErrIntrospectionBusy over MaxInFlight,
// ctx's error when ctx ends first, and another error when the request
// fails. Only the first two outcomes and found keys are cached.
func (i *Introspector) Introspect(ctx context.Context, secret string) (string, error) {
	if secret == "" {
		return "", ErrNoCredentials
	}
	return i.introspect(ctx, secret, HashKey(secret))
}

// introspect serves a lookup from the cache, or joins or starts the request
// for hash. The request runs on its own context, so it goes on and caches
// its result when ctx ends first.
func (i *Introspector) introspect(ctx context.Context, secret, hash string) (string, error) {
	if entry, ok := i.get(hash); ok {
		i.count(ctx, introspectHit)
		return entry.userOrNotFound()
	}

	ch := i.group.DoChan(hash, func() (any, error) {
		return i.load(ctx, secret, hash)
	})
	if i.joined != nil {
		i.joined()
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", i.failed(ctx, res.Err)
		}
		entry := res.Val.(introspected)
		if entry.found {
			i.count(ctx, introspectFound)
		} else {
			i.count(ctx, introspectNotFound)
		}
		return entry.userOrNotFound()
	case <-ctx.Done():
		i.count(ctx, introspectAbandoned)
		return "", ctx.Err()
	}
}

// failed counts and logs a lookup that ended without a result. Busy lookups are
// logged at most as often as errors, because a flood produces many.
func (i *Introspector) failed(ctx context.Context, err error) error {
	if errors.Is(err, ErrIntrospectionBusy) {
		i.count(ctx, introspectBusy)
	} else {
		i.count(ctx, introspectError)
	}
	i.errorLog.Do(func() {
		i.logger.Warn("API key introspection failed", "endpoint", i.endpoint, "error", err)
	})
	return err
}

func (e introspected) userOrNotFound() (string, error) {
	if !e.found {
		return "", ErrKeyNotFound
	}
	return e.userID, nil
}

// load sends one request and caches its result. Failures are not cached, so
// the next predict with the key tries again.
func (i *Introspector) load(ctx context.Context, secret, hash string) (introspected, error) {
	select {
	case i.slots <- struct{}{}:
		defer func() { <-i.slots }()
	default:
		return introspected{}, ErrIntrospectionBusy
	}

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), i.cfg.Timeout)
	defer cancel()
	entry, err := i.fetch(rctx, secret)
	if err != nil {
		return introspected{}, err
	}

	ttl := i.cfg.NegativeTTL
	if entry.found {
		ttl = i.cfg.CacheTTL
		i.logger.Debug("introspected API key", "user_id", entry.userID)
	}
	i.set(hash, entry, ttl)
	return entry, nil
}

// fetch requests the user that owns secret from the endpoint.
func (i *Introspector) fetch(ctx context.Context, secret string) (introspected, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, i.endpoint, nil)
	if err != nil {
		return introspected{}, err
	}
	req.Header.Set("Authorization", "Key "+secret)
	req.Header.Set("Accept", "application/json")

	// The error of Do names the URL, never the request's headers.
	resp, err := i.client.Do(req)
	if err != nil {
		return introspected{}, err
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBodyBytes+1))
	if err != nil {
		return introspected{}, fmt.Errorf("read the introspection response: %w", err)
	}
	if len(body) > maxIntrospectionBodyBytes {
		return introspected{}, fmt.Errorf("introspection response is over %d bytes", maxIntrospectionBodyBytes)
	}
	return parseIntrospection(resp.StatusCode, body)
}

// parseIntrospection reads a users/me response. Clarifai responds to a known
// key with HTTP 200, status code SUCCESS and the user, and to an unknown or
// malformed key with HTTP 401 and CONN_KEY_NOT_FOUND or CONN_KEY_INVALID.
// Those two codes, and any 401 or 403, count as a rejected key, because a
// key that may not read its own user cannot name a caller either. Every
// other response is an error.
func parseIntrospection(httpStatus int, body []byte) (introspected, error) {
	var resp clarifaipb.SingleUserResponse
	parseErr := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, &resp)
	code := resp.GetStatus().GetCode()

	switch {
	case code == clarifaipb.StatusCode_CONN_KEY_NOT_FOUND || code == clarifaipb.StatusCode_CONN_KEY_INVALID:
		return introspected{}, nil
	case httpStatus == http.StatusUnauthorized || httpStatus == http.StatusForbidden:
		return introspected{}, nil
	case httpStatus != http.StatusOK:
		return introspected{}, fmt.Errorf("introspection endpoint returned HTTP %d with status code %d", httpStatus, code)
	case parseErr != nil:
		return introspected{}, fmt.Errorf("introspection response is not a SingleUserResponse: %w", parseErr)
	case code != clarifaipb.StatusCode_SUCCESS:
		return introspected{}, fmt.Errorf("introspection endpoint returned status code %d", code)
	}

	userID := strings.TrimSpace(resp.GetUser().GetId())
	if userID == "" {
		return introspected{}, errors.New("introspection response has no user id")
	}
	return introspected{userID: userID, found: true}, nil
}

func (i *Introspector) get(hash string) (introspected, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if i.closed {
		return introspected{}, false
	}
	return i.cache.Get(hash)
}

func (i *Introspector) set(hash string, entry introspected, ttl time.Duration) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if !i.closed {
		i.cache.SetWithTTL(hash, entry, 1, ttl)
	}
}

// Wait blocks until every result cached so far is visible; see
// Resolver.Wait.
func (i *Introspector) Wait() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.closed {
		i.cache.Wait()
	}
}

// Close releases the cache and idle connections. Later lookups send a
// request each time.
func (i *Introspector) Close() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.closed {
		i.closed = true
		i.cache.Close()
		i.client.CloseIdleConnections()
	}
}

func (i *Introspector) count(ctx context.Context, result string) {
	i.lookups.Add(ctx, 1, i.results[result])
}
