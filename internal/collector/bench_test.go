package collector_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/store/storetest"
)

// BenchmarkTable_Candidates compares a cached lookup with the store query
// behind a miss, over 1,000 collectors spread on 100 models. Compare runs
// with benchstat:
//
//	go test -run '^$' -bench Table -count 6 ./internal/collector > new.txt
//	benchstat old.txt new.txt
func BenchmarkTable_Candidates(b *testing.B) {
	ctx := context.Background()
	models := []struct {
		name  string
		model collector.ModelRef
	}{
		{"match", collector.ModelRef{UserID: "m", AppID: "main", ModelID: "model-7"}},
		{"no_match", collector.ModelRef{UserID: "m", AppID: "main", ModelID: "unknown"}},
	}
	for _, m := range models {
		b.Run("cached/"+m.name, func(b *testing.B) {
			f := newBenchTable(b)
			f.table.Candidates(ctx, "alice", m.model)
			f.table.Wait()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f.table.Candidates(ctx, "alice", m.model)
			}
		})
		b.Run("store/"+m.name, func(b *testing.B) {
			f := newBenchTable(b)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := f.store.Store.MatchCollectors(ctx, "alice", m.model); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func newBenchTable(b *testing.B) *tableFixture {
	f := newTableFixture(b)
	for i := 0; i < 1000; i++ {
		c := storetest.NewCollector("u1", "a1", fmt.Sprintf("c%04d", i))
		c.Model.ModelID = fmt.Sprintf("model-%d", i%100)
		f.insert(b, c)
	}
	return f
}
