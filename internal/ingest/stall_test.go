package ingest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/telemetry"
)

// stallingSink accepts connections and reads requests but sends no response
// while stalled. Each stalled request ends only when the client gives up.
// Once released it forwards to a fakeClarifai.
type stallingSink struct {
	srv     *httptest.Server
	fake    *fakeClarifai
	stalled atomic.Bool

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	attempts    []stalledAttempt
}

// stalledAttempt is one request the sink held: when it arrived and when the
// client closed it.
type stalledAttempt struct {
	start, end time.Time
}

func newStallingSink(t *testing.T) *stallingSink {
	t.Helper()
	s := &stallingSink{fake: newFakeClarifai(t, testKey)}
	s.stalled.Store(true)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *stallingSink) serve(w http.ResponseWriter, r *http.Request) {
	if !s.stalled.Load() {
		s.fake.serve(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)

	s.mu.Lock()
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	n := len(s.attempts)
	s.attempts = append(s.attempts, stalledAttempt{start: time.Now()})
	s.mu.Unlock()

	<-r.Context().Done()

	s.mu.Lock()
	s.inFlight--
	s.attempts[n].end = time.Now()
	s.mu.Unlock()
}

func (s *stallingSink) peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

func (s *stallingSink) log() []stalledAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stalledAttempt(nil), s.attempts...)
}

// goroutineSampler records the most goroutines seen, read every interval.
type goroutineSampler struct {
	stop chan struct{}
	done chan struct{}
	max  int
}

func startGoroutineSampler(every time.Duration) *goroutineSampler {
	s := &goroutineSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-ticker.C:
				s.max = max(s.max, runtime.NumGoroutine())
			}
		}
	}()
	return s
}

func (s *goroutineSampler) finish() int {
	close(s.stop)
	<-s.done
	return s.max
}

// liveHeap returns HeapInuse after two collections, so garbage made while
// the first one ran is gone too and the figure is the data still in use.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestStall_BoundedMemory offers 64 KiB records at up to 500 per second for
// six seconds (up to 190 MiB) while the destination accepts connections
// and never responds. Goroutines and the live heap stay under bounds derived
// from the configuration, not from the number of records; posts in flight
// never exceed the workers; Offer never blocks; the overflow is dropped and
// counted once the stream is full. After the sink recovers, delivered plus
// dead-lettered plus dropped equals offered.
func TestStall_BoundedMemory(t *testing.T) {
	const (
		recordSize  = 64 << 10
		queueBytes  = 16 << 20
		offerPeriod = 10 * time.Millisecond
		perPeriod   = 5
		offerFor    = 6 * time.Second
	)
	pcfg := PublisherConfig{HandoffSize: 64, Publishers: 2, Window: 16}
	wcfg := fastWorkerConfig()
	wcfg.Workers = 2
	wcfg.FetchBatch = 16
	wcfg.BreakerThreshold = 3
	wcfg.BreakerOpenBase = 200 * time.Millisecond
	wcfg.BreakerOpenMax = time.Second

	e, err := OpenEmbedded(EmbeddedConfig{Dir: t.TempDir(), MaxStoreBytes: 2 * queueBytes, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	defer e.Close()
	q, err := OpenQueue(context.Background(), e.Conn(), QueueConfig{MaxBytes: queueBytes, DeadLetterMaxBytes: 8 << 20})
	if err != nil {
		t.Fatalf("OpenQueue: %v", err)
	}
	env := &env{embedded: e, queue: q, metrics: newMetricsHarness(t), logger: testLogger(t)}

	sink := newStallingSink(t)
	dest, err := NewRemoteDestination(RemoteConfig{BaseURL: sink.srv.URL, Timeout: 300 * time.Millisecond},
		RemoteDeps{Keys: staticKeys{"u1/a1/c1": testKey}, Logger: env.logger})
	if err != nil {
		t.Fatalf("NewRemoteDestination: %v", err)
	}
	defer dest.Close()

	baseHeap := liveHeap()
	baseline := runtime.NumGoroutine()
	w := env.workers(t, dest, wcfg)
	defer closeWithin(t, "workers", w.Close)
	p := env.publisher(t, pcfg)
	goroutines := startGoroutineSampler(20 * time.Millisecond)

	payload := strings.Repeat("x", recordSize)
	offered, slowestOffer := 0, time.Duration(0)
	var peakHeap uint64
	ticker := time.NewTicker(offerPeriod)
	began := time.Now()
	for tick := 0; time.Since(began) < offerFor; tick++ {
		<-ticker.C
		if tick%25 == 0 {
			// Every quarter second, measure what is live while the
			// pipeline is full.
			peakHeap = max(peakHeap, liveHeap())
		}
		// Catch up after a slow tick, so the rate holds on a busy machine.
		due := int(time.Since(began) / offerPeriod * perPeriod)
		for range min(due-offered, 20*perPeriod) {
			rec := newRecord("u1", "a1", "c1", offered)
			rec.Id = fmt.Sprintf("stall-%06d", offered)
			rec.Input.Data = &clarifaipb.Data{Text: &clarifaipb.Text{Raw: payload}}
			start := time.Now()
			p.Offer(rec)
			slowestOffer = max(slowestOffer, time.Since(start))
			offered++
		}
	}
	ticker.Stop()
	peakHeap = max(peakHeap, liveHeap())
	closeWithin(t, "publisher", p.Close)
	peakGoroutines := goroutines.finish()

	// The bound adds every buffer that can hold records, sized from the
	// configuration, to the live heap before the test. The buffers are the
	// publisher's hand-off and in-flight window (record, encoding and packed
	// message), each worker's fetched batch in three forms (message, record,
	// request body) and the embedded server's block caches, which may hold
	// the whole stream while it is read and written. A fetch holds up to
	// FetchBatch messages of up to DefaultMessageBytes, within MaxFetchBytes
	// plus one message. 16 MiB covers everything else.
	publisherBytes := 3 * (pcfg.HandoffSize + pcfg.Publishers*pcfg.Window) * recordSize
	fetchBytes := min(wcfg.FetchBatch*DefaultMessageBytes, DefaultMaxFetchBytes+DefaultMessageBytes)
	workerBytes := 3 * wcfg.Workers * fetchBytes
	heapBound := baseHeap + uint64(16<<20+queueBytes+publisherBytes+workerBytes)
	goroutineBound := baseline + 64

	t.Logf("offered %d records (%d MiB); peak goroutines %d (baseline %d), peak live heap %d MiB (baseline %d MiB, bound %d MiB), peak posts in flight %d, slowest Offer %s",
		offered, offered*recordSize>>20, peakGoroutines, baseline, peakHeap>>20, baseHeap>>20, heapBound>>20, sink.peak(), slowestOffer)
	if offered*recordSize <= int(heapBound-baseHeap) {
		t.Fatalf("offered only %d MiB: the test must offer more than the heap allowance of %d MiB to mean anything",
			offered*recordSize>>20, (heapBound-baseHeap)>>20)
	}
	if peakGoroutines > goroutineBound {
		t.Errorf("peak goroutines = %d, want at most %d (baseline %d + 64) whatever the record count", peakGoroutines, goroutineBound, baseline)
	}
	if peakHeap > heapBound {
		t.Errorf("peak live heap = %d MiB, want at most %d MiB", peakHeap>>20, heapBound>>20)
	}
	if got := sink.peak(); got > wcfg.Workers {
		t.Errorf("posts in flight peaked at %d, want at most the %d workers", got, wcfg.Workers)
	}
	if got := sink.peak(); got == 0 {
		t.Error("the stalled sink saw no post")
	}
	if slowestOffer > time.Second {
		t.Errorf("slowest Offer took %s: Offer must not wait for the sink or the stream", slowestOffer)
	}
	if dropped := env.metrics.captures(t, telemetry.OutcomeDropped, ""); dropped == 0 {
		t.Errorf("dropped = 0, want the overflow past the %d MiB stream dropped and counted", queueBytes>>20)
	}

	sink.stalled.Store(false)
	waitFor(t, "capture stream drained", func() bool { return env.streamMsgs(t, q.StreamName()) == 0 })
	waitFor(t, "delivered + dead-lettered + dropped = offered", func() bool {
		settled := env.metrics.captures(t, telemetry.OutcomeDelivered, "") +
			env.metrics.captures(t, telemetry.OutcomeFailed, "") +
			env.metrics.captures(t, telemetry.OutcomeDropped, "")
		return settled == int64(offered)
	})
	if got := env.metrics.captures(t, telemetry.OutcomeEnqueued, ""); got != env.metrics.captures(t, telemetry.OutcomeDelivered, "") {
		t.Errorf("enqueued = %d, delivered = %d: every accepted record must be delivered", got, env.metrics.captures(t, telemetry.OutcomeDelivered, ""))
	}
	if got := sink.fake.stored(); int64(got) != env.metrics.captures(t, telemetry.OutcomeDelivered, "") {
		t.Errorf("sink stored %d inputs, want one per delivered record", got)
	}
	waitFor(t, "capture stream empty", func() bool { return env.streamMsgs(t, q.StreamName()) == 0 })
}
