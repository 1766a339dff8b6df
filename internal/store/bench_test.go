package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store/storetest"
)

// Compare runs with benchstat:
//
//	go test -run '^$' -bench SQLite -count 6 ./internal/store > new.txt
//	benchstat old.txt new.txt

// BenchmarkSQLite_MatchCollectors measures the lookup behind a collector
// table miss, with 1,000 collectors of which 10 share the requested model.
func BenchmarkSQLite_MatchCollectors(b *testing.B) {
	s := openTestSQLite(b, b.TempDir())
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

// BenchmarkSQLite_InsertCollector measures one committed write.
func BenchmarkSQLite_InsertCollector(b *testing.B) {
	s := openTestSQLite(b, b.TempDir())
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if err := s.InsertCollector(ctx, storetest.NewCollector("u1", "a1", fmt.Sprintf("c%d", i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLite_InsertInputs measures a batch of 16 inputs with 64 KiB of
// distinct image bytes each: 16 blob files written and synced, one commit.
func BenchmarkSQLite_InsertInputs(b *testing.B) {
	s := openTestSQLite(b, b.TempDir())
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

// BenchmarkSQLite_InsertTextInputs inserts batches of 128 text inputs of
// about 1 KiB, like the records of the ingest ratio benchmark. The inputs
// per second it reports bound ingestion into the local app.
func BenchmarkSQLite_InsertTextInputs(b *testing.B) {
	s := openTestSQLite(b, b.TempDir())
	ctx := context.Background()
	text := strings.Repeat("x", 900)

	n := 0
	for b.Loop() {
		batch := make([]*clarifaipb.Input, 128)
		for j := range batch {
			n++
			batch[j] = &clarifaipb.Input{Id: fmt.Sprintf("in%d", n), Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: text}}}
		}
		for _, err := range s.InsertInputs(ctx, "u1", "a1", batch) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "inputs/s")
}
