package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/identity"
)

// jwtMetadata returns the dynamic metadata that Envoy's jwt_authn filter
// writes for a verified payload under payloadKey, in the form the ext_proc
// server passes it on.
func jwtMetadata(payloadKey string, payload map[string]any) map[string]map[string]any {
	return map[string]map[string]any{
		identity.DefaultJWTNamespace: {payloadKey: payload},
	}
}

var jwtOn = identity.JWTConfig{PayloadKey: "jwt_payload"}

func TestResolver_JWTCaller(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{JWT: jwtOn})
	req := capture.RequestInfo{
		Headers: headers{"authorization": "Key " + aliceSecret, "x-collectord-caller": "mallory"},
		Metadata: jwtMetadata("jwt_payload", map[string]any{
			"iss": "https://issuer.example", "sub": "bob", "exp": float64(1901281058),
		}),
	}

	user, ok := f.resolver.ResolveCaller(context.Background(), req)
	if !ok || user != "bob" {
		t.Errorf("ResolveCaller = %q, %v; want bob from the verified JWT", user, ok)
	}
	if n := f.keys.calls(); n != 0 {
		t.Errorf("store queried %d times although the JWT named the caller", n)
	}
}

func TestResolver_JWTBeforeTrustedHeader(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{JWT: jwtOn, TrustedHeader: "x-collectord-caller"})
	req := capture.RequestInfo{
		Headers:  headers{"x-collectord-caller": "carol"},
		Metadata: jwtMetadata("jwt_payload", map[string]any{"sub": "bob"}),
	}
	if user, ok := f.resolver.ResolveCaller(context.Background(), req); !ok || user != "bob" {
		t.Errorf("ResolveCaller = %q, %v; want bob: the JWT comes before the trusted header", user, ok)
	}
}

func TestResolver_JWTCustomClaim(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{JWT: identity.JWTConfig{
		Namespace: "custom.jwt", PayloadKey: "verified", Claim: "clarifai_user_id",
	}})
	req := capture.RequestInfo{Metadata: map[string]map[string]any{
		"custom.jwt": {"verified": map[string]any{"sub": "svc-account-7", "clarifai_user_id": "bob"}},
	}}
	if user, ok := f.resolver.ResolveCaller(context.Background(), req); !ok || user != "bob" {
		t.Errorf("ResolveCaller = %q, %v; want bob from the configured claim", user, ok)
	}
}

func TestResolver_JWTIgnored(t *testing.T) {
	cases := []struct {
		name string
		cfg  identity.JWTConfig
		md   map[string]map[string]any
	}{
		{"jwt off", identity.JWTConfig{}, jwtMetadata("jwt_payload", map[string]any{"sub": "bob"})},
		{"other payload key", jwtOn, jwtMetadata("other_payload", map[string]any{"sub": "bob"})},
		{"other namespace", jwtOn, map[string]map[string]any{
			"envoy.filters.http.header_to_metadata": {"jwt_payload": map[string]any{"sub": "bob"}},
		}},
		{"payload not a struct", jwtOn, map[string]map[string]any{
			identity.DefaultJWTNamespace: {"jwt_payload": "eyJzdWIiOiJib2IifQ"},
		}},
		{"no sub claim", jwtOn, jwtMetadata("jwt_payload", map[string]any{"iss": "https://issuer.example"})},
		{"numeric sub", jwtOn, jwtMetadata("jwt_payload", map[string]any{"sub": float64(42)})},
		{"blank sub", jwtOn, jwtMetadata("jwt_payload", map[string]any{"sub": "  "})},
		{"no metadata", jwtOn, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newResolverFixture(t, identity.ResolverConfig{JWT: tc.cfg})
			req := capture.RequestInfo{Headers: headers{"authorization": "Key " + aliceSecret}, Metadata: tc.md}
			user, ok := f.resolver.ResolveCaller(context.Background(), req)
			if !ok || user != "alice" {
				t.Errorf("ResolveCaller = %q, %v; want alice from the key", user, ok)
			}
		})
	}
}

func TestResolver_JWTWithoutClaimLogged(t *testing.T) {
	f := newResolverFixture(t, identity.ResolverConfig{JWT: jwtOn})
	req := capture.RequestInfo{Metadata: jwtMetadata("jwt_payload", map[string]any{"email": "bob@example.com"})}
	for range 3 {
		if user, ok := f.resolver.ResolveCaller(context.Background(), req); ok {
			t.Errorf("ResolveCaller = %q without the claim, want no caller", user)
		}
	}
	if n := strings.Count(f.logs.String(), "no string claim naming the caller"); n != 1 {
		t.Errorf("logged the missing claim %d times in a row, want 1", n)
	}
}

// introspectionResolver is a resolver over the key store fixture whose
// introspection endpoint accepts carol's and dave's keys.
func introspectionResolver(t *testing.T, cfg identity.ResolverConfig) (*resolverFixture, *clarifaiUsers) {
	t.Helper()
	users := newClarifaiUsers(t, map[string]string{carolPAT: "carol", davePAT: "dave"})
	cfg.Introspection.BaseURL = users.srv.URL
	return newResolverFixture(t, cfg), users
}

func TestResolver_IntrospectedCaller(t *testing.T) {
	f, users := introspectionResolver(t, identity.ResolverConfig{})
	ctx := context.Background()

	req := capture.RequestInfo{Headers: headers{"authorization": "Key " + carolPAT}}
	if user, ok := f.resolver.ResolveCaller(ctx, req); !ok || user != "carol" {
		t.Errorf("ResolveCaller = %q, %v; want carol from the introspection endpoint", user, ok)
	}
	f.resolver.Wait()
	if user, ok := f.resolver.ResolveCaller(ctx, req); !ok || user != "carol" {
		t.Errorf("ResolveCaller again = %q, %v; want carol from the cache", user, ok)
	}
	if n := users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1", n)
	}

	// A key the store holds never reaches the endpoint.
	local := capture.RequestInfo{Headers: headers{"authorization": "Key " + aliceSecret}}
	if user, ok := f.resolver.ResolveCaller(ctx, local); !ok || user != "alice" {
		t.Errorf("ResolveCaller with a local key = %q, %v; want alice", user, ok)
	}
	if n := users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests after a local key, want 1", n)
	}
}

func TestResolver_IntrospectedKeyNotForManagement(t *testing.T) {
	f, _ := introspectionResolver(t, identity.ResolverConfig{})
	ctx := context.Background()

	if _, ok := f.resolver.ResolveCaller(ctx, capture.RequestInfo{Headers: headers{"authorization": "Key " + carolPAT}}); !ok {
		t.Fatal("ResolveCaller found no caller for an introspected key")
	}
	// The endpoint returns a user without scopes, so the key grants nothing
	// on the management API.
	if _, err := f.resolver.ResolveKey(ctx, "Key "+carolPAT); err == nil {
		t.Errorf("ResolveKey accepted an introspected key")
	}
}

func TestResolver_IntrospectionRejects(t *testing.T) {
	f, users := introspectionResolver(t, identity.ResolverConfig{})
	ctx := context.Background()

	unknown := capture.RequestInfo{Headers: headers{"authorization": "Key ffffffffffffffffffffffffffffffff"}}
	if user, ok := f.resolver.ResolveCaller(ctx, unknown); ok {
		t.Errorf("ResolveCaller = %q for a key the endpoint rejects, want no caller", user)
	}

	// A bearer JWT that jwt_authn did not accept is never sent.
	jwt := capture.RequestInfo{Headers: headers{"authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"}}
	if user, ok := f.resolver.ResolveCaller(ctx, jwt); ok {
		t.Errorf("ResolveCaller = %q for an unverified JWT, want no caller", user)
	}
	if n := users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1 (the unknown key only)", n)
	}
}

func TestResolver_StoreErrorSkipsIntrospection(t *testing.T) {
	f, users := introspectionResolver(t, identity.ResolverConfig{})
	boom := context.DeadlineExceeded
	f.keys.fail.Store(&boom)

	if user, ok := f.resolver.ResolveCaller(context.Background(), capture.RequestInfo{Headers: headers{"authorization": "Key " + carolPAT}}); ok {
		t.Errorf("ResolveCaller = %q while the store fails, want no caller", user)
	}
	if n := users.requests.Load(); n != 0 {
		t.Errorf("endpoint received %d requests while the store fails, want 0", n)
	}
}

func TestResolver_IntrospectionWait(t *testing.T) {
	f, users := introspectionResolver(t, identity.ResolverConfig{
		Introspection: identity.IntrospectionConfig{Wait: 20 * time.Millisecond},
	})
	users.holdRequests()

	// The endpoint holds the request, so only the wait bound returns.
	req := capture.RequestInfo{Headers: headers{"authorization": "Key " + carolPAT}}
	if user, ok := f.resolver.ResolveCaller(context.Background(), req); ok {
		t.Errorf("ResolveCaller = %q while the endpoint holds the request, want no caller", user)
	}
	if n := users.requests.Load(); n != 1 {
		t.Errorf("endpoint received %d requests, want 1", n)
	}
}

func TestNewResolver_InvalidIntrospectionURL(t *testing.T) {
	_, err := identity.NewResolver(&memKeys{}, identity.ResolverConfig{
		Introspection: identity.IntrospectionConfig{BaseURL: "ftp://host"},
	}, identity.ResolverDeps{})
	if err == nil || !strings.Contains(err.Error(), "ftp://host") {
		t.Errorf("NewResolver error = %v, want one naming the base URL", err)
	}
}
