package main

// The stall mode checks that a node whose remote destination stops
// responding keeps serving predicts with bounded memory. It also checks that
// once the destination recovers, every accepted capture is delivered,
// dead-lettered or counted as dropped. The destination is a Clarifai
// stand-in the soak serves on loopback. During the stall it accepts
// connections and keeps every request open without a response. Afterwards
// it responds to PostInputs with SUCCESS.
//
// Usage:
//
//	go run ./cmd/collectord-soak --mode stall --stall 5m --rate 500 --size 65536

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

const (
	// echoModelPath is the demo model that reads inline bytes of any kind,
	// so an image-like payload gets a SUCCESS output and is captured.
	echoModelPath = "/v2/users/demo/apps/main/models/echo-size/outputs"
	stallMarker   = "stall-"
)

// stallOptions are the command-line settings of the stall mode.
type stallOptions struct {
	stall   time.Duration
	rate    int
	size    int
	workers int
	settle  time.Duration
	workDir string
	keep    bool
}

// modeOf returns the value of --mode in args, "kill" when it is absent.
func modeOf(args []string) string {
	for i, arg := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if name != "mode" || !strings.HasPrefix(arg, "-") {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return "kill"
}

func parseStallOptions(args []string, stderr io.Writer) (stallOptions, error) {
	fs := flag.NewFlagSet("collectord-soak --mode stall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o stallOptions
	fs.String("mode", "stall", "kill or stall")
	fs.DurationVar(&o.stall, "stall", 5*time.Minute, "how long the remote destination holds requests without answering, and how long the load runs")
	fs.IntVar(&o.rate, "rate", 500, "predicts per second sent through the interceptor")
	fs.IntVar(&o.size, "size", 64<<10, "bytes of the image-like payload of each predict (sent base64-encoded)")
	fs.IntVar(&o.workers, "workers", 128, "concurrent predict clients; a tick finding all of them busy is counted as shed")
	fs.DurationVar(&o.settle, "settle-timeout", 10*time.Minute, "bound on the wait for the accounting to balance after the stall")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for binaries, data and logs (default a new temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory after the run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.stall <= 0 || o.rate < 1 || o.size < 1 || o.workers < 1 || o.settle <= 0 {
		return o, errors.New("invalid flags: need --stall > 0, --rate >= 1, --size >= 1, --workers >= 1 and --settle-timeout > 0")
	}
	return o, nil
}

// runStall is the stall mode: build, start the sink, the model and the
// node, load it through the stall, recover the sink and check the
// accounting.
func runStall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseStallOptions(args, stderr)
	if err != nil {
		return err
	}
	work, cleanup, err := prepareWorkDir(options{workDir: o.workDir, keep: o.keep})
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "stall %s at %d predicts/s of %d bytes, work directory %s\n", o.stall, o.rate, o.size, work)

	bins, err := buildBinaries(ctx, work)
	if err != nil {
		return err
	}
	modelAddr, stopModel, err := startModel(ctx, bins.model, work)
	if err != nil {
		return err
	}
	defer stopModel()
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.close()

	n, err := newNode(bins.collectord, work, modelAddr)
	if err != nil {
		return err
	}
	if err := setupRemote(ctx, n, sink.url()); err != nil {
		return err
	}
	defer func() { _ = n.stop() }()

	rep, err := stallSoak(ctx, o, n, sink, stdout)
	if err != nil {
		return err
	}
	return rep.print(stdout)
}

// spawnRemote starts `collectord run` like spawn does, delivering to the
// sink instead of the local app.
func (n *node) spawnRemote(ctx context.Context, remoteURL string) error {
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, n.bin, "run",
		"--data-dir", n.dataDir,
		"--api-listen", n.api,
		"--grpc-listen", "",
		"--admin-listen", n.admin,
		"--extproc-listen", n.extproc,
		"--proxy-listen", n.proxy,
		"--upstream", "http://"+n.model,
		"--remote-base-url", remoteURL,
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start collectord: %w", err)
	}
	n.cmd = cmd
	return nil
}

// setupRemote creates the keys, starts the node and creates the app and a
// collector of every echo-size predict whose inputs are posted with the
// owner's key. The node keeps running.
func setupRemote(ctx context.Context, n *node, remoteURL string) error {
	var err error
	if n.ownerKey, err = n.createKey(ctx, ownerUser, ""); err != nil {
		return err
	}
	if n.callerKey, err = n.createKey(ctx, callerUser, "Predict"); err != nil {
		return err
	}
	if err := n.spawnRemote(ctx, remoteURL); err != nil {
		return err
	}
	if err := waitTCP(ctx, n.api, 30*time.Second); err != nil {
		return fmt.Errorf("management API on %s: %w", n.api, err)
	}

	if err := n.call(ctx, "POST", "/v2/users/me/apps", map[string]any{"apps": []any{map[string]any{"id": appID}}}, nil); err != nil {
		return err
	}
	source := map[string]any{
		"model_user_id": "demo", "model_app_id": "main", "model_id": "echo-size",
		"caller_user_id": callerUser, "post_inputs_key_id": n.ownerKey,
	}
	collector := map[string]any{"collectors": []any{map[string]any{
		"id": "stall", "pre_queue_random_sample": 1,
		"collector_source": map[string]any{"api_post_model_outputs_collector_source": source},
	}}}
	return n.call(ctx, "POST", "/v2/users/me/apps/"+appID+"/collectors", collector, nil)
}

// sink is the Clarifai stand-in. While stalled, it keeps each request open
// until the client gives up or the sink closes. Afterwards it responds to
// PostInputs.
type sink struct {
	listener net.Listener
	server   *http.Server
	ownerKey atomic.Pointer[string]
	stalled  atomic.Bool
	done     chan struct{}

	held     atomic.Int64
	answered atomic.Int64
	mu       sync.Mutex
	received map[string]bool
}

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{listener: l, done: make(chan struct{}), received: map[string]bool{}}
	s.stalled.Store(true)
	s.server = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.server.Serve(l) }()
	return s, nil
}

func (s *sink) url() string { return "http://" + s.listener.Addr().String() }

// recover makes the sink respond to the requests that arrive from now on.
func (s *sink) recover() { s.stalled.Store(false) }

// close releases the held requests and stops the server.
func (s *sink) close() {
	close(s.done)
	_ = s.server.Close()
}

func (s *sink) inputs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	if s.stalled.Load() {
		s.held.Add(1)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	}
	s.answered.Add(1)

	// Clarifai's REST API returns 401 with code 11009 for an unknown key.
	if key := s.ownerKey.Load(); key == nil || r.Header.Get("Authorization") != "Key "+*key {
		writeStatus(w, http.StatusUnauthorized, &clarifaipb.MultiInputResponse{Status: &clarifaipb.Status{
			Code: clarifaipb.StatusCode_CONN_KEY_NOT_FOUND, Description: "API key not found"}})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v2/users/"+ownerUser+"/apps/"+appID+"/inputs" {
		writeStatus(w, http.StatusNotFound, &clarifaipb.MultiInputResponse{Status: &clarifaipb.Status{
			Code: clarifaipb.StatusCode_CONN_DOES_NOT_EXIST, Description: "Resource does not exist"}})
		return
	}
	body, err := io.ReadAll(r.Body)
	req := &clarifaipb.PostInputsRequest{}
	if err == nil {
		err = protojson.Unmarshal(body, req)
	}
	if err != nil {
		writeStatus(w, http.StatusBadRequest, &clarifaipb.MultiInputResponse{Status: &clarifaipb.Status{
			Code: clarifaipb.StatusCode_FAILURE, Description: "Failure", Details: err.Error()}})
		return
	}
	writeStatus(w, http.StatusOK, s.accept(req))
}

// accept records the inputs and builds a PostInputs response: SUCCESS with
// each input listed as pending. The response omits the uploaded bytes, which
// keeps it small when each input carries a large image.
func (s *sink) accept(req *clarifaipb.PostInputsRequest) *clarifaipb.MultiInputResponse {
	resp := &clarifaipb.MultiInputResponse{Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_SUCCESS, Description: "Ok"}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range req.GetInputs() {
		s.received[in.GetId()] = true
		resp.Inputs = append(resp.Inputs, &clarifaipb.Input{
			Id:     in.GetId(),
			Status: &clarifaipb.Status{Code: clarifaipb.StatusCode_INPUT_PENDING, Description: "Input pending"},
		})
	}
	return resp
}

func writeStatus(w http.ResponseWriter, code int, msg *clarifaipb.MultiInputResponse) {
	data, _ := protojson.Marshal(msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// stallReport is the set of figures the stall mode measured.
type stallReport struct {
	// The peaks are kept per phase (phaseStall, phaseRecovery), because the
	// targets hold for the stall and recovery reads the backlog back.
	rssStart int64    // kB
	rssPeak  [2]int64 // kB
	// rssPeakAt is when each peak was read, since sampling began, to tell
	// a spike at the stream's fill from one at the stall's end.
	rssPeakAt     [2]time.Duration
	goroutinesMin [2]int
	goMax         [2]int
	// phase is the phase the sampler records into.
	phase              atomic.Int32
	sent, failed, shed int64
	firstError         string
	latencies          []time.Duration
	stallTook          time.Duration
	settleTook         time.Duration
	balanced           bool
	final              captureCounts
	sinkInputs         int
	held, answered     int64
}

// stallSoak loads the node through the stall, then recovers the sink and
// waits for the accounting to balance.
func stallSoak(ctx context.Context, o stallOptions, n *node, s *sink, stdout io.Writer) (*stallReport, error) {
	s.ownerKey.Store(&n.ownerKey)
	if err := waitServed(ctx, n); err != nil {
		return nil, err
	}
	rep := &stallReport{goroutinesMin: [2]int{-1, -1}}
	pid := n.cmd.Process.Pid
	if rep.rssStart, _ = readRSS(pid); rep.rssStart == 0 {
		return nil, fmt.Errorf("read VmRSS of collectord (pid %d)", pid)
	}

	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		sample(sampleCtx, n, pid, rep)
	}()

	began := time.Now()
	load := newLoad(o, n)
	load.run(ctx, o.stall, stdout, n, pid)
	rep.stallTook = time.Since(began)
	rep.sent, rep.failed, rep.shed = load.sent.Load(), load.failed.Load(), load.shed.Load()
	rep.firstError, rep.latencies = load.firstErr, load.latencies

	rep.phase.Store(phaseRecovery)
	s.recover()
	fmt.Fprintf(stdout, "sink recovered after %s; waiting for the accounting to balance\n", rep.stallTook.Round(time.Second))
	began = time.Now()
	rep.final, rep.balanced = settle(ctx, n, o.settle, stdout)
	rep.settleTook = time.Since(began)

	stopSampling()
	<-sampled
	rep.sinkInputs, rep.held, rep.answered = s.inputs(), s.held.Load(), s.answered.Load()
	return rep, ctx.Err()
}

// waitServed sends image predicts until one is served, so the load starts
// on a ready node.
func waitServed(ctx context.Context, n *node) error {
	client := &http.Client{Timeout: 10 * time.Second}
	payload := imagePayload(64)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := predictImage(ctx, client, n, stallMarker+"ready", payload)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no predict served within 30 s of the start (see %s): %w", n.logPath, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Phases of a stall soak, as indexes of the per-phase peaks.
const (
	phaseStall    = 0
	phaseRecovery = 1
)

// sample reads the child's RSS and goroutines every second until ctx ends.
func sample(ctx context.Context, n *node, pid int, rep *stallReport) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	began := time.Now()
	for {
		phase := rep.phase.Load()
		if rss, err := readRSS(pid); err == nil && rss > rep.rssPeak[phase] {
			rep.rssPeak[phase] = rss
			rep.rssPeakAt[phase] = time.Since(began).Round(time.Second)
		}
		if g, err := n.metric(ctx, "go_goroutines", ""); err == nil {
			if rep.goroutinesMin[phase] < 0 || g < rep.goroutinesMin[phase] {
				rep.goroutinesMin[phase] = g
			}
			rep.goMax[phase] = max(rep.goMax[phase], g)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// readRSS returns VmRSS of a process in kB.
func readRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// load sends predicts at a fixed rate from a bounded pool of clients.
type load struct {
	rate    int
	workers int
	payload []byte
	client  *http.Client

	seq, sent, failed, shed atomic.Int64
	mu                      sync.Mutex
	firstErr                string
	latencies               []time.Duration
}

func newLoad(o stallOptions, n *node) *load {
	transport := &http.Transport{MaxIdleConns: o.workers, MaxIdleConnsPerHost: o.workers, IdleConnTimeout: time.Minute}
	return &load{
		rate: o.rate, workers: o.workers, payload: imagePayload(o.size),
		client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
	}
}

// run paces jobs every 10 ms for d. A job that finds every client busy is
// shed, so a slow node lowers the offered rate instead of queueing here.
func (l *load) run(ctx context.Context, d time.Duration, stdout io.Writer, n *node, pid int) {
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				l.one(ctx, n)
			}
		}()
	}

	const tick = 10 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	began := time.Now()
	lastProgress := began
	due := 0.0
	for time.Since(began) < d && ctx.Err() == nil {
		<-ticker.C
		due += float64(l.rate) * tick.Seconds()
		for ; due >= 1; due-- {
			select {
			case jobs <- struct{}{}:
			default:
				l.shed.Add(1)
			}
		}
		if time.Since(lastProgress) >= 15*time.Second {
			lastProgress = time.Now()
			rss, _ := readRSS(pid)
			fmt.Fprintf(stdout, "  %s: %d predicts sent, %d failed, %d shed, RSS %d MiB\n",
				time.Since(began).Round(time.Second), l.sent.Load(), l.failed.Load(), l.shed.Load(), rss>>10)
		}
	}
	close(jobs)
	wg.Wait()
}

func (l *load) one(ctx context.Context, n *node) {
	marker := fmt.Sprintf("%s%08d", stallMarker, l.seq.Add(1))
	began := time.Now()
	err := predictImage(ctx, l.client, n, marker, l.payload)
	took := time.Since(began)

	l.sent.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed.Add(1)
		if l.firstErr == "" {
			l.firstErr = err.Error()
		}
		return
	}
	l.latencies = append(l.latencies, took)
}

// imagePayload returns size bytes that start like a PNG file.
func imagePayload(size int) []byte {
	payload := bytes.Repeat([]byte{0x5a, 0xc3, 0x17, 0x9e}, size/4+1)[:size]
	copy(payload, "\x89PNG\r\n\x1a\n")
	return payload
}

// predictImage sends one echo-size predict with the payload as image bytes.
func predictImage(ctx context.Context, client *http.Client, n *node, marker string, payload []byte) error {
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"id": marker, "data": map[string]any{"image": map[string]any{"base64": payload}},
	}}})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+n.proxy+echoModelPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Key "+n.callerKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", marker)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("predict: HTTP %d", resp.StatusCode)
	}
	return nil
}

// captureCounts are the collectord_captures_total series by outcome, and
// the drops by reason.
type captureCounts struct {
	byOutcome map[string]int
	drops     map[string]int
}

// engineDropReasons are the drop reasons the capture engine counts before
// matching, so those drops are not part of offered.
var engineDropReasons = []string{"assembler_queue_full", "engine_closed"}

// offered is the records the capture engine handed to the publisher.
func (c captureCounts) offered() int {
	return c.byOutcome["matched"] - c.byOutcome["sampled_out"] - c.byOutcome["output_failed"]
}

// publisherDrops is the drops counted once a record was offered.
func (c captureCounts) publisherDrops() int {
	total := 0
	for reason, v := range c.drops {
		if !slices.Contains(engineDropReasons, reason) {
			total += v
		}
	}
	return total
}

// balanced reports whether every offered record was delivered,
// dead-lettered or counted as dropped.
func (c captureCounts) balanced() bool {
	return c.offered() > 0 &&
		c.byOutcome["delivered"]+c.byOutcome["failed"]+c.publisherDrops() == c.offered() &&
		c.byOutcome["enqueued"] == c.byOutcome["delivered"]+c.byOutcome["failed"]
}

// settle polls /metrics every second until the accounting balances or the
// timeout passes.
func settle(ctx context.Context, n *node, timeout time.Duration, stdout io.Writer) (captureCounts, bool) {
	deadline := time.Now().Add(timeout)
	lastProgress := time.Now()
	var counts captureCounts
	for {
		c, err := scrapeCaptures(ctx, n)
		if err == nil {
			counts = c
			if c.balanced() {
				return c, true
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return counts, false
		}
		if time.Since(lastProgress) >= 15*time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(stdout, "  %d of %d offered delivered so far\n", counts.byOutcome["delivered"], counts.offered())
		}
		time.Sleep(time.Second)
	}
}

var labelPattern = regexp.MustCompile(`(\w+)="([^"]*)"`)

// scrapeCaptures reads every collectord_captures_total series.
func scrapeCaptures(ctx context.Context, n *node) (captureCounts, error) {
	c := captureCounts{byOutcome: map[string]int{}, drops: map[string]int{}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+n.admin+"/metrics", nil)
	if err != nil {
		return c, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()

	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "collectord_captures_total{") {
			continue
		}
		labels := map[string]string{}
		for _, m := range labelPattern.FindAllStringSubmatch(line, -1) {
			labels[m[1]] = m[2]
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return c, fmt.Errorf("metric line %q: %w", line, err)
		}
		c.byOutcome[labels["outcome"]] += int(v)
		if labels["outcome"] == "dropped" {
			c.drops[labels["reason"]] += int(v)
		}
	}
	return c, scanner.Err()
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func (r *stallReport) print(w io.Writer) error {
	slices.Sort(r.latencies)
	c := r.final
	fmt.Fprintf(w, "RSS: start %d MiB, peak during the stall %d MiB (at %s), peak during recovery %d MiB (at %s)\n",
		r.rssStart>>10, r.rssPeak[phaseStall]>>10, r.rssPeakAt[phaseStall], r.rssPeak[phaseRecovery]>>10, r.rssPeakAt[phaseRecovery])
	fmt.Fprintf(w, "goroutines during the stall: min %d, max %d; during recovery: min %d, max %d\n",
		r.goroutinesMin[phaseStall], r.goMax[phaseStall], r.goroutinesMin[phaseRecovery], r.goMax[phaseRecovery])
	fmt.Fprintf(w, "predicts: %d sent in %s (%.0f/s), %d failed, %d shed by the soak's client pool\n",
		r.sent, r.stallTook.Round(time.Second), float64(r.sent)/r.stallTook.Seconds(), r.failed, r.shed)
	fmt.Fprintf(w, "predict latency: p50 %s, p99 %s\n",
		percentile(r.latencies, 0.50).Round(time.Microsecond), percentile(r.latencies, 0.99).Round(time.Microsecond))
	if r.firstError != "" {
		fmt.Fprintf(w, "first predict error: %s\n", r.firstError)
	}
	fmt.Fprintf(w, "sink: %d requests held during the stall, %d answered after, %d distinct inputs received\n", r.held, r.answered, r.sinkInputs)
	fmt.Fprintf(w, "captures: matched %d, offered %d, enqueued %d, delivered %d, dead-lettered %d, dropped %v\n",
		c.byOutcome["matched"], c.offered(), c.byOutcome["enqueued"], c.byOutcome["delivered"], c.byOutcome["failed"], c.drops)
	fmt.Fprintf(w, "accounting: delivered + dead-lettered + dropped after offer = %d of %d offered, balanced %t, settled in %s\n",
		c.byOutcome["delivered"]+c.byOutcome["failed"]+c.publisherDrops(), c.offered(), r.balanced, r.settleTook.Round(time.Second))

	var errs []error
	if r.failed > 0 {
		errs = append(errs, fmt.Errorf("%d predicts failed, first: %s", r.failed, r.firstError))
	}
	if !r.balanced {
		errs = append(errs, errors.New("the capture accounting did not balance"))
	}
	return errors.Join(errs...)
}
