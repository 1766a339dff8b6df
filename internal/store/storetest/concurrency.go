package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// RunConcurrency writes and reads from many goroutines at once: every write
// must succeed (no "database is locked" errors), and every write must be
// visible afterwards. Run it with -race.
func RunConcurrency(t *testing.T, open Factory) {
	s := open(t)
	ctx := context.Background()
	const workers, perWorker = 8, 10

	var changes atomic.Int64
	s.OnChange(func() { changes.Add(1) })

	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*4)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runWorker(ctx, s, w, perWorker, errs)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	collectors, err := s.ListCollectors(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListCollectors: %v", err)
	}
	if len(collectors) != workers*perWorker {
		t.Errorf("stored %d collectors, want %d", len(collectors), workers*perWorker)
	}
	if got := changes.Load(); got != workers*perWorker*2 {
		t.Errorf("OnChange ran %d times, want %d (one insert and one update each)", got, workers*perWorker*2)
	}

	inputs, err := s.ListInputs(ctx, "u1", "a1", 0, 0)
	if err != nil {
		t.Fatalf("ListInputs: %v", err)
	}
	if len(inputs) != workers*perWorker*2 {
		t.Errorf("stored %d inputs, want %d", len(inputs), workers*perWorker*2)
	}
}

// runWorker inserts and updates collectors, inserts inputs and reads both,
// sending every failure to errs.
func runWorker(ctx context.Context, s Store, worker, count int, errs chan<- error) {
	model := collector.ModelRef{UserID: "m", AppID: "main", ModelID: "general"}
	for i := 0; i < count; i++ {
		id := fmt.Sprintf("w%d-%d", worker, i)

		c := NewCollector("u1", "a1", id)
		if err := s.InsertCollector(ctx, c); err != nil {
			errs <- fmt.Errorf("InsertCollector %s: %w", id, err)
		}
		c.Paused = i%2 == 0
		if err := s.UpdateCollector(ctx, c); err != nil {
			errs <- fmt.Errorf("UpdateCollector %s: %w", id, err)
		}

		batch := []*clarifaipb.Input{
			{Id: id + "-img", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: []byte("image " + id)}}},
			{Id: id + "-txt", Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: id}}},
		}
		for j, err := range s.InsertInputs(ctx, "u1", "a1", batch) {
			if err != nil {
				errs <- fmt.Errorf("InsertInputs %s input %d: %w", id, j, err)
			}
		}

		if _, err := s.MatchCollectors(ctx, "caller", model); err != nil {
			errs <- fmt.Errorf("MatchCollectors: %w", err)
		}
		if _, err := s.GetInput(ctx, "u1", "a1", id+"-img"); err != nil {
			errs <- fmt.Errorf("GetInput %s: %w", id, err)
		}
	}
}
