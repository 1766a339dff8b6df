package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store/storetest"
)

// The PostgreSQL benchmarks mirror the SQLite ones in bench_test.go. Run
// both and compare the rows of the same operation, or compare one backend's
// runs over time with benchstat:
//
//	go test -run '^$' -bench 'MatchCollectors|InsertCollector|InsertInputs' -count 6 ./internal/store > new.txt
//	benchstat old.txt new.txt

// BenchmarkPostgres_MatchCollectors measures the lookup behind a collector
// table miss on PostgreSQL, with the data of BenchmarkSQLite_MatchCollectors:
// 1,000 collectors of which 10 share the requested model.
func BenchmarkPostgres_MatchCollectors(b *testing.B) {
	s := openFreshPostgres(b)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		c := storetest.NewCollector("u1", "a1", fmt.Sprintf("c%04d", i))
		c.Model.ModelID = fmt.Sprintf("model-%d", i%100)
		if err := s.InsertCollector(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	model := collector.ModelRef{UserID: "m", AppID: "main", ModelID: "model-7"}

	b.ResetTimer()
	for b.Loop() {
		got, err := s.MatchCollectors(ctx, "caller", model)
		if err != nil || len(got) != 10 {
			b.Fatalf("MatchCollectors = %d collectors, %v", len(got), err)
		}
	}
}

// BenchmarkPostgres_InsertCollector measures one committed write with its
// change notification.
func BenchmarkPostgres_InsertCollector(b *testing.B) {
	s := openFreshPostgres(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if err := s.InsertCollector(ctx, storetest.NewCollector("u1", "a1", fmt.Sprintf("c%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostgres_InsertInputs measures a batch of 16 inputs with 64 KiB
// of distinct image bytes each, stored in the blobs table in one commit.
func BenchmarkPostgres_InsertInputs(b *testing.B) {
	s := openFreshPostgres(b)
	ctx := context.Background()
	image := storetest.RandomBytes(b, 64<<10)
	b.SetBytes(16 * int64(len(image)))

	n := 0
	for b.Loop() {
		batch := make([]*clarifaipb.Input, 16)
		for j := range batch {
			n++
			img := append([]byte(fmt.Sprintf("%d", n)), image...)
			batch[j] = &clarifaipb.Input{Id: fmt.Sprintf("in%d", n), Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: img}}}
		}
		for _, err := range s.InsertInputs(ctx, "u1", "a1", batch) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
