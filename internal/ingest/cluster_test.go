package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/collectord/collectord/internal/telemetry"
)

// reservedPorts are never used by the test cluster: the machine's own NATS
// and database servers listen there.
var reservedPorts = map[int]bool{4222: true, 5432: true, 6222: true, 8222: true}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !reservedPorts[port] {
			return port
		}
	}
	t.Fatal("no free port outside the reserved ones")
	return 0
}

// testCluster is three JetStream servers on loopback, routed to each other.
type testCluster struct {
	t       *testing.T
	names   []string
	opts    []*server.Options
	servers []*server.Server
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	const size = 3
	c := &testCluster{t: t}
	clientPorts := make([]int, size)
	routePorts := make([]int, size)
	var routes []string
	for i := range size {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
	}
	base := t.TempDir()
	for i := range size {
		name := fmt.Sprintf("n%d", i+1)
		c.names = append(c.names, name)
		c.opts = append(c.opts, &server.Options{
			ServerName:         name,
			Host:               "127.0.0.1",
			Port:               clientPorts[i],
			NoSigs:             true,
			JetStream:          true,
			StoreDir:           filepath.Join(base, name),
			JetStreamMaxStore:  256 << 20,
			JetStreamMaxMemory: 16 << 20,
			Cluster:            server.ClusterOpts{Name: "collectord-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	c.servers = make([]*server.Server, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	})
	return c
}

// start starts node i on its ports and directory, as a restart after a
// crash does.
func (c *testCluster) start(i int) {
	c.t.Helper()
	opts := *c.opts[i]
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("configure %s: %v", c.names[i], err)
	}
	// Route and election warnings while nodes come and go are expected.
	s.SetLoggerV2(&serverLogger{logger: slog.New(slog.DiscardHandler)}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("%s not ready", c.names[i])
	}
	c.servers[i] = s
}

// stop shuts node i down, ending its client and route connections.
func (c *testCluster) stop(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
	c.servers[i] = nil
}

func (c *testCluster) url(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

func (c *testCluster) urls() string {
	var all []string
	for i := range c.opts {
		all = append(all, c.url(i))
	}
	return strings.Join(all, ",")
}

func (c *testCluster) index(name string) int {
	for i, n := range c.names {
		if n == name {
			return i
		}
	}
	c.t.Fatalf("no node named %q", name)
	return -1
}

func connectCluster(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// openClusterQueue retries OpenQueue until the cluster has elected its
// JetStream meta leader.
func openClusterQueue(t *testing.T, nc *nats.Conn) *Queue {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		q, err := OpenQueue(ctx, nc, QueueConfig{Replicas: 3, MaxBytes: 64 << 20, DeadLetterMaxBytes: 8 << 20, AckWait: 5 * time.Second})
		cancel()
		if err == nil {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("open the replicated queue: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// streamLeader waits until the capture stream has a leader and, when
// wantCurrent is set, every replica is online and caught up.
func streamLeader(t *testing.T, q *Queue, wantCurrent bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		info, err := q.JetStream().Stream(ctx, q.StreamName())
		var ci *jetstream.ClusterInfo
		if err == nil {
			ci = info.CachedInfo().Cluster
		}
		cancel()
		if ci != nil && ci.Leader != "" && (!wantCurrent || replicasCurrent(ci)) {
			return ci.Leader
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the capture stream has no leader with every replica current")
	return ""
}

func replicasCurrent(ci *jetstream.ClusterInfo) bool {
	if len(ci.Replicas) != 2 {
		return false
	}
	for _, r := range ci.Replicas {
		if !r.Current || r.Offline {
			return false
		}
	}
	return true
}

// TestCluster_NodeLossLosesNothing publishes under load through the
// Publisher to a three-node cluster with a stream of three replicas while
// first a follower, then the stream leader is shut down and restarted.
// Workers connected to a surviving node deliver every record the publisher
// counted as enqueued, and every offer is counted as enqueued or dropped.
func TestCluster_NodeLossLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := startCluster(t)
	pubConn := connectCluster(t, c.urls())
	q := openClusterQueue(t, pubConn)
	leader := c.index(streamLeader(t, q, true))
	follower, workersNode := (leader+1)%3, (leader+2)%3

	env := &env{queue: q, metrics: newMetricsHarness(t), logger: testLogger(t)}
	workerQueue := openClusterQueue(t, connectCluster(t, c.url(workersNode)))
	store := newMemInputs()
	w, err := StartWorkers(workerQueue, NewLocalDestination(store), fastWorkerConfig(),
		WorkerDeps{Meter: env.metrics.meterProvider().Meter("test"), Logger: env.logger})
	if err != nil {
		t.Fatalf("StartWorkers: %v", err)
	}
	defer closeWithin(t, "workers", w.Close)

	// Retries span a leader election (a few seconds at most).
	p := env.publisher(t, PublisherConfig{HandoffSize: 4096, Retries: 7, RetryWait: 50 * time.Millisecond, AckTimeout: 2 * time.Second})
	var offered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(5 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			p.Offer(newRecord("u1", "a1", "c1", i))
			offered.Add(1)
		}
	}()

	time.Sleep(time.Second)
	t.Logf("shutting down follower %s", c.names[follower])
	c.stop(follower)
	time.Sleep(1500 * time.Millisecond)
	c.start(follower)
	streamLeader(t, q, true)

	leader = c.index(streamLeader(t, q, true))
	if leader == workersNode {
		stepDown(t, pubConn, q)
		leader = c.index(streamLeader(t, q, true))
	}
	t.Logf("shutting down stream leader %s", c.names[leader])
	c.stop(leader)
	time.Sleep(1500 * time.Millisecond)
	c.start(leader)
	time.Sleep(500 * time.Millisecond)

	close(stop)
	wg.Wait()
	closeWithin(t, "publisher", p.Close)

	enqueued := env.metrics.captures(t, telemetry.OutcomeEnqueued, "")
	dropped := env.metrics.captures(t, telemetry.OutcomeDropped, "")
	t.Logf("offered %d, enqueued %d, dropped %d", offered.Load(), enqueued, dropped)
	if enqueued+dropped != offered.Load() {
		t.Errorf("enqueued %d + dropped %d = %d, want every one of %d offers counted once", enqueued, dropped, enqueued+dropped, offered.Load())
	}
	if enqueued < offered.Load()/2 {
		t.Errorf("enqueued %d of %d offers: the cluster should keep taking records while one node is down", enqueued, offered.Load())
	}
	waitFor(t, "every enqueued record delivered", func() bool { return int64(store.count()) >= enqueued })
	waitFor(t, "capture stream empty", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		depth, err := q.Depth(ctx)
		return err == nil && depth == 0
	})
	stored, _ := store.snapshot()
	for id := range stored {
		if !strings.HasPrefix(id, "u1-a1-c1-") {
			t.Errorf("stored input %q was never offered", id)
		}
	}
}

// stepDown asks the capture stream's leader to hand over to another node.
func stepDown(t *testing.T, nc *nats.Conn, q *Queue) {
	t.Helper()
	if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+q.StreamName(), nil, 5*time.Second); err != nil {
		t.Fatalf("stream leader step-down: %v", err)
	}
}
