package identity_test

import (
	"context"
	"testing"

	"github.com/collectord/collectord/internal/capture"
	"github.com/collectord/collectord/internal/identity"
)

// BenchmarkResolver_ResolveKey compares a cached key with the store lookup
// behind a miss. Compare runs with benchstat:
//
//	go test -run '^$' -bench Resolver -count 6 ./internal/identity > new.txt
//	benchstat old.txt new.txt
func BenchmarkResolver_ResolveKey(b *testing.B) {
	ctx := context.Background()
	b.Run("cached", func(b *testing.B) {
		f := newResolverFixture(b, identity.ResolverConfig{})
		if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
			b.Fatal(err)
		}
		f.resolver.Wait()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.resolver.ResolveKey(ctx, "Key "+aliceSecret); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		f := newResolverFixture(b, identity.ResolverConfig{})
		hash := identity.HashKey(aliceSecret)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.keys.KeyStore.KeyByHash(ctx, hash); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResolver_ResolveCaller compares the caller sources of a predict
// once their lookups are cached: a verified JWT payload in the metadata, a
// key from the local store, and a key resolved by the introspection
// endpoint. Compare runs with benchstat as above.
func BenchmarkResolver_ResolveCaller(b *testing.B) {
	ctx := context.Background()
	users := newClarifaiUsers(b, map[string]string{carolPAT: "carol"})
	f := newResolverFixture(b, identity.ResolverConfig{
		JWT:           jwtOn,
		Introspection: identity.IntrospectionConfig{BaseURL: users.srv.URL},
	})
	cases := []struct {
		name string
		req  capture.RequestInfo
		want string
	}{
		{"jwt", capture.RequestInfo{Headers: headers{}, Metadata: jwtMetadata("jwt_payload", map[string]any{"sub": "bob"})}, "bob"},
		{"key", capture.RequestInfo{Headers: headers{"authorization": "Key " + aliceSecret}}, "alice"},
		{"introspected", capture.RequestInfo{Headers: headers{"authorization": "Key " + carolPAT}}, "carol"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			if user, ok := f.resolver.ResolveCaller(ctx, tc.req); !ok || user != tc.want {
				b.Fatalf("ResolveCaller = %q, %v; want %s", user, ok, tc.want)
			}
			f.resolver.Wait()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, ok := f.resolver.ResolveCaller(ctx, tc.req); !ok {
					b.Fatal("no caller")
				}
			}
		})
	}
	if n := users.requests.Load(); n != 1 {
		b.Errorf("endpoint received %d requests, want 1", n)
	}
}
