package identity_test

import (
	"context"
	"testing"

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
