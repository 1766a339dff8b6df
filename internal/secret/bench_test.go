package secret_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/secret"
)

// Benchmarks of the cost that encryption adds to the collector store. The
// figure to compare is EncryptingStore against Plain in
// BenchmarkMatchCollectors: run both with -count=10 and compare with
// benchstat.

func BenchmarkKeyring_Encrypt(b *testing.B) {
	kr, _ := secret.NewKeyring(fixedKey("k1", 1))
	for b.Loop() {
		_ = kr.Encrypt(plaintextKey, "collector\x00alice\x00dest\x00c1")
	}
}

func BenchmarkKeyring_Decrypt(b *testing.B) {
	kr, _ := secret.NewKeyring(fixedKey("k1", 1))
	value := kr.Encrypt(plaintextKey, "ctx")
	for b.Loop() {
		if _, err := kr.Decrypt(value, "ctx"); err != nil {
			b.Fatal(err)
		}
	}
}

// fixedMatch is a collector store whose MatchCollectors returns a copy of
// a fixed list, so the benchmark below measures the decorator alone.
type fixedMatch struct {
	collector.Store
	result []collector.Collector
}

func (f fixedMatch) MatchCollectors(context.Context, string, collector.ModelRef) ([]collector.Collector, error) {
	return slices.Clone(f.result), nil
}

// BenchmarkMatchCollectors matches 10 collectors with encrypted keys, a
// long candidate list for one model, with and without decryption.
func BenchmarkMatchCollectors(b *testing.B) {
	ctx := context.Background()
	kr, _ := secret.NewKeyring(fixedKey("k1", 1))
	inner := newMemStore()
	enc := secret.NewEncryptingStore(inner, kr, nil)
	for i := range 10 {
		if err := enc.InsertCollector(ctx, newCollector(fmt.Sprintf("c%d", i), plaintextKey)); err != nil {
			b.Fatal(err)
		}
	}
	stored, _ := inner.ListCollectors(ctx, "alice", "dest", 0, 0)
	raw := fixedMatch{Store: inner, result: stored}

	for _, bc := range []struct {
		name  string
		store collector.Store
	}{{"Plain", raw}, {"EncryptingStore", secret.NewEncryptingStore(raw, kr, nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if cs, err := bc.store.MatchCollectors(ctx, "bob", collector.ModelRef{}); err != nil || len(cs) != 10 {
					b.Fatalf("MatchCollectors = %d, %v", len(cs), err)
				}
			}
		})
	}
}
