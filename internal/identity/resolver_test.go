package identity_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/store"
)

const (
	aliceSecret = "cdk_alice-secret-5d41402abc4b2a76b9719d911017c592"
	bobSecret   = "cdk_bob-secret-7d793037a0760186574b0282f2f435e7"
)

// headers is a capture.Headers over a map with lowercase names.
type headers map[string]string

func (h headers) Get(name string) string { return h[name] }

// countingKeys wraps a real key store, records the hashes it is asked for,
// and can fail lookups.
type countingKeys struct {
	identity.KeyStore

	mu     sync.Mutex
	hashes []string
	fail   atomic.Pointer[error]
}

func (k *countingKeys) KeyByHash(ctx context.Context, hash string) (identity.Key, error) {
	k.mu.Lock()
	k.hashes = append(k.hashes, hash)
	k.mu.Unlock()
	if err := k.fail.Load(); err != nil {
		return identity.Key{}, *err
	}
	return k.KeyStore.KeyByHash(ctx, hash)
}

func (k *countingKeys) calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.hashes)
}

type resolverFixture struct {
	keys     *countingKeys
	resolver *identity.Resolver
	reader   *sdkmetric.ManualReader
	logs     *syncBuffer
}

func newResolverFixture(t testing.TB, cfg identity.ResolverConfig) *resolverFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenSQLite(context.Background(), store.SQLiteConfig{
		Path:    filepath.Join(dir, "collectord.db"),
		BlobDir: filepath.Join(dir, "blobs"),
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	seed := []identity.Key{
		{ID: "k-alice", Hash: identity.HashKey(aliceSecret), UserID: "alice", Scopes: []string{identity.ScopePredict}},
		{ID: "k-bob", Hash: identity.HashKey(bobSecret), UserID: "bob", AppID: "bobs-app"},
	}
	for _, k := range seed {
		if err := db.InsertKey(context.Background(), k); err != nil {
			t.Fatalf("InsertKey %s: %v", k.ID, err)
		}
	}

	f := &resolverFixture{
		keys:   &countingKeys{KeyStore: db},
		reader: sdkmetric.NewManualReader(),
		logs:   &syncBuffer{},
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader)).Meter("test")

	f.resolver, err = identity.NewResolver(f.keys, cfg, identity.ResolverDeps{Logger: logger, Meter: meter})
	if err != nil {
		t.Fatalf("NewResolver: %v", err)
	}
	t.Cleanup(f.resolver.Close)
	return f
}

// lookups returns collectord_key_lookups_total by result.
func (f *resolverFixture) lookups(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "collectord_key_lookups_total" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				result, _ := dp.Attributes.Value("result")
				out[result.AsString()] += dp.Value
			}
		}
	}
	return out
}

func TestResolver_ResolveKey(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()

	forms := []string{
		"Key " + aliceSecret,
		"key " + aliceSecret,
		"KEY " + aliceSecret,
		"Bearer " + aliceSecret,
		"bearer " + aliceSecret,
		"  Key   " + aliceSecret + "  ",
	}
	for _, auth := range forms {
		key, err := f.resolver.ResolveKey(ctx, auth)
		if err != nil {
			t.Errorf("ResolveKey(%q scheme form): %v", strings.Fields(auth)[0], err)
			continue
		}
		if key.ID != "k-alice" || key.UserID != "alice" {
			t.Errorf("ResolveKey = %s/%s, want k-alice/alice", key.ID, key.UserID)
		}
		if !key.HasScope(identity.ScopePredict) {
			t.Errorf("resolved key lost its scopes: %v", key.Scopes)
		}
	}

	bob, err := f.resolver.ResolveKey(ctx, "Key "+bobSecret)
	if err != nil {
		t.Fatalf("ResolveKey bob: %v", err)
	}
	if bob.UserID != "bob" || bob.AppID != "bobs-app" {
		t.Errorf("ResolveKey bob = %s/%s, want bob/bobs-app", bob.UserID, bob.AppID)
	}
}

func TestResolver_NoCredentials(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	cases := []string{
		"",
		"Key",
		"Key ",
		aliceSecret,
		"Basic " + aliceSecret,
		"Key two words",
		"Key " + strings.Repeat("x", 5000),
	}
	for _, auth := range cases {
		_, err := f.resolver.ResolveKey(context.Background(), auth)
		if !errors.Is(err, identity.ErrNoCredentials) {
			t.Errorf("ResolveKey(value of %d bytes) error = %v, want ErrNoCredentials", len(auth), err)
		}
	}
	if n := f.keys.calls(); n != 0 {
		t.Errorf("store queried %d times for values without a key, want 0", n)
	}
}

func TestResolver_CachedByHash(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()

	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
		t.Fatalf("ResolveKey: %v", err)
	}
	f.resolver.Wait()
	// Another scheme with the same secret is the same cache entry.
	if _, err := f.resolver.ResolveKey(ctx, "Bearer "+aliceSecret); err != nil {
		t.Fatalf("ResolveKey again: %v", err)
	}

	if n := f.keys.calls(); n != 1 {
		t.Errorf("store queried %d times for one key, want 1", n)
	}
	if got := f.keys.hashes[0]; got != identity.HashKey(aliceSecret) {
		t.Errorf("store asked for %q, want the secret's SHA-256", got)
	}
	lookups := f.lookups(t)
	if lookups["found"] != 1 || lookups["hit"] != 1 {
		t.Errorf("lookups = %v, want one found and one hit", lookups)
	}
}

func TestResolver_ScopesAreACopy(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()

	first, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret)
	if err != nil {
		t.Fatalf("ResolveKey: %v", err)
	}
	f.resolver.Wait()
	first.Scopes[0] = "Everything"

	second, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret)
	if err != nil {
		t.Fatalf("ResolveKey again: %v", err)
	}
	if second.Scopes[0] != identity.ScopePredict {
		t.Errorf("cached scopes = %v after a caller changed its copy", second.Scopes)
	}
}

func TestResolver_UnknownKeyNegativeCached(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		_, err := f.resolver.ResolveKey(ctx, "Key cdk_unknown")
		if !errors.Is(err, identity.ErrKeyNotFound) {
			t.Fatalf("ResolveKey of an unknown key error = %v, want ErrKeyNotFound", err)
		}
		f.resolver.Wait()
	}

	if n := f.keys.calls(); n != 1 {
		t.Errorf("store queried %d times for one unknown key, want 1", n)
	}
	if got := f.lookups(t)["not_found"]; got != 1 {
		t.Errorf("not_found lookups = %d, want 1", got)
	}
}

func TestResolver_StoreError(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()
	boom := errors.New("database is unavailable")
	f.keys.fail.Store(&boom)

	for i := 0; i < 2; i++ {
		_, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret)
		if !errors.Is(err, boom) {
			t.Errorf("ResolveKey on store error = %v, want the store's error", err)
		}
		f.resolver.Wait()
	}
	if _, ok := f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: headers{"authorization": "Key " + aliceSecret}}); ok {
		t.Errorf("ResolveCaller succeeded while the store fails")
	}

	// Errors are not cached.
	if n := f.keys.calls(); n != 3 {
		t.Errorf("store queried %d times, want 3", n)
	}
	if got := f.lookups(t)["error"]; got != 3 {
		t.Errorf("error lookups = %d, want 3", got)
	}
	if n := strings.Count(f.logs.String(), "API key lookup failed"); n != 1 {
		t.Errorf("logged the store error %d times in a row, want 1", n)
	}

	f.keys.fail.Store(nil)
	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
		t.Errorf("ResolveKey after recovery: %v", err)
	}
}

func TestResolver_TrustedHeaderOff(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()

	forged := headers{"x-collectord-user": "mallory", "authorization": "Key " + aliceSecret}
	user, ok := f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: forged})
	if !ok || user != "alice" {
		t.Errorf("ResolveCaller = %q, %v; want alice from the key, not the unconfigured header", user, ok)
	}

	onlyForged := headers{"x-collectord-user": "mallory"}
	if user, ok := f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: onlyForged}); ok {
		t.Errorf("ResolveCaller = %q from an unconfigured header, want no caller", user)
	}
}

func TestResolver_TrustedHeaderOn(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{TrustedHeader: "X-Collectord-User"})
	ctx := context.Background()

	both := headers{"x-collectord-user": "carol", "authorization": "Key " + aliceSecret}
	user, ok := f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: both})
	if !ok || user != "carol" {
		t.Errorf("ResolveCaller = %q, %v; want carol from the trusted header", user, ok)
	}
	if n := f.keys.calls(); n != 0 {
		t.Errorf("store queried %d times although the trusted header named the caller", n)
	}

	keyOnly := headers{"authorization": "Key " + bobSecret}
	user, ok = f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: keyOnly})
	if !ok || user != "bob" {
		t.Errorf("ResolveCaller without the header = %q, %v; want bob from the key", user, ok)
	}
}

func TestResolver_NoCaller(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{TrustedHeader: "x-collectord-user"})
	ctx := context.Background()
	cases := map[string]capture.RequestInfo{
		"no headers":    {},
		"empty headers": {Headers: headers{}},
		"blank header":  {Headers: headers{"x-collectord-user": "  "}},
		"unknown key":   {Headers: headers{"authorization": "Key cdk_unknown"}},
	}
	for name, req := range cases {
		if user, ok := f.resolver.ResolveCaller(ctx, req); ok {
			t.Errorf("%s: ResolveCaller = %q, want no caller", name, user)
		}
	}
}

func TestResolver_DeletedKeyAfterClear(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()
	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
		t.Fatalf("ResolveKey: %v", err)
	}
	f.resolver.Wait()

	if err := f.keys.DeleteKey(ctx, "k-alice"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	// The cache keeps the deleted key until Clear or Invalidate.
	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
		t.Errorf("ResolveKey before Clear: %v, want the cached key", err)
	}

	f.resolver.Clear()
	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); !errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("ResolveKey after Clear error = %v, want ErrKeyNotFound", err)
	}
}

func TestResolver_DeletedKeyAfterInvalidate(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	ctx := context.Background()
	for _, secret := range []string{aliceSecret, bobSecret} {
		if _, err := f.resolver.ResolveKey(ctx, "Key "+secret); err != nil {
			t.Fatalf("ResolveKey: %v", err)
		}
	}
	f.resolver.Wait()

	if err := f.keys.DeleteKey(ctx, "k-alice"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	f.resolver.Invalidate(identity.HashKey(aliceSecret))

	if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); !errors.Is(err, identity.ErrKeyNotFound) {
		t.Errorf("ResolveKey after Invalidate error = %v, want ErrKeyNotFound", err)
	}
	if _, err := f.resolver.ResolveKey(ctx, "Key "+bobSecret); err != nil {
		t.Errorf("ResolveKey of another key after Invalidate: %v", err)
	}
}

func TestResolver_NoSecretInLogs(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{TrustedHeader: "x-collectord-user"})
	ctx := context.Background()

	f.resolver.ResolveKey(ctx, "Key "+aliceSecret)
	f.resolver.ResolveKey(ctx, "Bearer cdk_unknown-secret-value")
	f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: headers{"authorization": "Key " + bobSecret}})
	boom := errors.New("database is unavailable")
	f.keys.fail.Store(&boom)
	f.resolver.Clear()
	f.resolver.ResolveKey(ctx, "Key "+aliceSecret)

	logs := f.logs.String()
	if !strings.Contains(logs, "resolved API key") || !strings.Contains(logs, "API key lookup failed") {
		t.Fatalf("expected debug and error lines to search, got:\n%s", logs)
	}
	for _, secret := range []string{aliceSecret, bobSecret, "cdk_unknown-secret-value"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a secret:\n%s", logs)
		}
		if strings.Contains(logs, identity.HashKey(secret)) {
			t.Errorf("log contains a secret's hash:\n%s", logs)
		}
	}
}

func TestResolver_Close(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{})
	f.resolver.Close()
	f.resolver.Close()
	f.resolver.Clear()
	f.resolver.Invalidate(identity.HashKey(aliceSecret))
	f.resolver.Wait()

	key, err := f.resolver.ResolveKey(context.Background(), "Key "+aliceSecret)
	if err != nil || key.UserID != "alice" {
		t.Errorf("ResolveKey after Close = %q, %v; want alice from the store", key.UserID, err)
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		secret, err := identity.NewSecret()
		if err != nil {
			t.Fatalf("NewSecret: %v", err)
		}
		if !strings.HasPrefix(secret, identity.SecretPrefix) {
			t.Errorf("secret does not start with %q", identity.SecretPrefix)
		}
		if got := len(secret) - len(identity.SecretPrefix); got != 43 {
			t.Errorf("secret body has %d characters, want 43 (32 bytes in base64url)", got)
		}
		if seen[secret] {
			t.Fatalf("NewSecret repeated a secret")
		}
		seen[secret] = true

		if _, err := parseKey(secret); err != nil {
			t.Errorf("a new secret does not survive the Authorization header: %v", err)
		}
	}
}

func TestNewKeyID(t *testing.T) {
	a, b := identity.NewKeyID(), identity.NewKeyID()
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("NewKeyID = %q, want 32 lowercase hex digits", a)
	}
	if a == b {
		t.Errorf("NewKeyID repeated %q", a)
	}
}

// parseKey resolves a secret through a resolver over a store that holds
// nothing but that secret's key.
func parseKey(secret string) (identity.Key, error) {
	keys := &memKeys{hash: identity.HashKey(secret)}
	r, err := identity.NewResolver(keys, identity.ResolverConfig{}, identity.ResolverDeps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return identity.Key{}, err
	}
	defer r.Close()
	return r.ResolveKey(context.Background(), "Key "+secret)
}

// memKeys is a KeyStore holding one key.
type memKeys struct {
	identity.KeyStore
	hash string
}

func (m *memKeys) KeyByHash(_ context.Context, hash string) (identity.Key, error) {
	if hash != m.hash {
		return identity.Key{}, identity.ErrKeyNotFound
	}
	return identity.Key{ID: "k", Hash: hash, UserID: "u"}, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent loggers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
