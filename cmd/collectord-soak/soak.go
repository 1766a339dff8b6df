package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// options are the soak's command-line settings.
type options struct {
	trials  int
	clients int
	minKill time.Duration
	maxKill time.Duration
	seed    uint64
	workDir string
	keep    bool
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("collectord-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	mode := fs.String("mode", "kill", "kill: SIGKILL and restart the node in trials; stall: hold the remote destination (run with --mode stall -h for its flags)")
	fs.IntVar(&o.trials, "trials", 3, "kill-and-restart trials")
	fs.IntVar(&o.clients, "clients", 4, "concurrent predict clients")
	fs.DurationVar(&o.minKill, "min-kill-after", 300*time.Millisecond, "earliest kill after load starts")
	fs.DurationVar(&o.maxKill, "max-kill-after", 2500*time.Millisecond, "latest kill after load starts")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed of the kill points; 0 picks one and prints it")
	fs.StringVar(&o.workDir, "work-dir", "", "directory for binaries, data and logs (default a new temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory after the run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if *mode != "kill" {
		return o, fmt.Errorf("unknown --mode %q: use kill or stall", *mode)
	}
	if o.trials < 1 || o.clients < 1 || o.minKill <= 0 || o.maxKill < o.minKill {
		return o, errors.New("invalid flags: need --trials >= 1, --clients >= 1 and 0 < --min-kill-after <= --max-kill-after")
	}
	if o.seed == 0 {
		o.seed = rand.Uint64()
	}
	return o, nil
}

// report is the outcome of a soak run.
type report struct {
	trials       int
	completed    int
	acknowledged map[string]bool
	delivered    map[string]bool
	enqueuedMin  int
	restarts     []time.Duration
}

func (r *report) lost() []string {
	var lost []string
	for id := range r.acknowledged {
		if !r.delivered[id] {
			lost = append(lost, id)
		}
	}
	slices.Sort(lost)
	return lost
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if modeOf(args) == "stall" {
		return runStall(ctx, args, stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	work, cleanup, err := prepareWorkDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "seed %d, work directory %s\n", o.seed, work)

	began := time.Now()
	bins, err := buildBinaries(ctx, work)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built collectord and the demo model in %s\n", time.Since(began).Round(time.Millisecond))
	modelAddr, stopModel, err := startModel(ctx, bins.model, work)
	if err != nil {
		return err
	}
	defer stopModel()

	n, err := newNode(bins.collectord, work, modelAddr)
	if err != nil {
		return err
	}
	began = time.Now()
	if err := n.setup(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created keys, app and collector in %s\n", time.Since(began).Round(time.Millisecond))

	rep, err := soak(ctx, o, n, stdout)
	if err != nil {
		return err
	}
	return printReport(stdout, rep)
}

func prepareWorkDir(o options) (string, func(), error) {
	if o.workDir != "" {
		if err := os.MkdirAll(o.workDir, 0o750); err != nil {
			return "", nil, err
		}
		return o.workDir, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "collectord-soak-")
	if err != nil {
		return "", nil, err
	}
	if o.keep {
		return dir, func() {}, nil
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// binaries are the programs the soak builds.
type binaries struct {
	collectord string
	model      string
}

// buildBinaries builds collectord and the demo model with `go build` from
// the module this command belongs to.
func buildBinaries(ctx context.Context, work string) (binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("find the module: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	b := binaries{collectord: filepath.Join(work, "collectord"), model: filepath.Join(work, "demomodel")}
	for pkg, dst := range map[string]string{"./cmd/collectord": b.collectord, "./examples/demomodel": b.model} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dst, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return b, nil
}

func startModel(ctx context.Context, bin, work string) (string, func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	logFile, err := os.Create(filepath.Join(work, "demomodel.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--listen", addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", nil, fmt.Errorf("start the demo model: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
	}
	if err := waitTCP(ctx, addr, 10*time.Second); err != nil {
		stop()
		return "", nil, fmt.Errorf("demo model on %s: %w", addr, err)
	}
	return addr, stop, nil
}

// soak runs the trials: start, load, kill at a random point, record what
// was durable; then a final start that drains the queue.
func soak(ctx context.Context, o options, n *node, stdout io.Writer) (*report, error) {
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x5eed))
	rep := &report{trials: o.trials, acknowledged: map[string]bool{}}
	var seq atomic.Int64

	for trial := 1; trial <= o.trials; trial++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		served, err := n.start(ctx, &seq)
		if err != nil {
			return nil, fmt.Errorf("trial %d: %w", trial, err)
		}
		rep.restarts = append(rep.restarts, served)

		killAfter := o.minKill + time.Duration(rng.Int64N(int64(o.maxKill-o.minKill)+1))
		completed, enqueued, err := loadThenKill(ctx, n, o.clients, killAfter, &seq)
		if err != nil {
			return nil, fmt.Errorf("trial %d: %w", trial, err)
		}
		rep.completed += completed
		rep.enqueuedMin += enqueued

		began := time.Now()
		durable, err := n.durableCaptures(ctx)
		if err != nil {
			return nil, fmt.Errorf("trial %d: read the stopped node's store: %w", trial, err)
		}
		for id := range durable {
			rep.acknowledged[id] = true
		}
		fmt.Fprintf(stdout, "trial %d: killed after %s; %d predicts completed, %d enqueued by then (at least), %d captures durable; first predict %s after start; store read in %s\n",
			trial, killAfter.Round(time.Millisecond), completed, enqueued, len(durable), served.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}

	served, err := n.start(ctx, &seq)
	if err != nil {
		return nil, fmt.Errorf("final start: %w", err)
	}
	rep.restarts = append(rep.restarts, served)
	began := time.Now()
	delivered, err := n.drain(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "final start drained the queue in %s\n", time.Since(began).Round(time.Millisecond))
	rep.delivered = delivered
	return rep, n.stop()
}

// loadThenKill drives predicts from several clients, scrapes the enqueued
// counter every 100 ms, and SIGKILLs the node after killAfter. It returns
// the predicts that completed and the last enqueued count read.
func loadThenKill(ctx context.Context, n *node, clients int, killAfter time.Duration, seq *atomic.Int64) (int, int, error) {
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()

	var completed atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				if n.predict(loadCtx, fmt.Sprintf("soak-%08d", seq.Add(1))) == nil {
					completed.Add(1)
				}
			}
		}()
	}

	var enqueued int
	deadline := time.Now().Add(killAfter)
	for time.Now().Before(deadline) {
		if v, err := n.enqueued(ctx); err == nil {
			enqueued = v
		}
		time.Sleep(min(100*time.Millisecond, time.Until(deadline)))
	}

	err := n.kill()
	stopLoad()
	wg.Wait()
	return int(completed.Load()), enqueued, err
}

func printReport(w io.Writer, r *report) error {
	lost := r.lost()
	restarts := slices.Clone(r.restarts)
	slices.Sort(restarts)
	median := restarts[len(restarts)/2]

	fmt.Fprintf(w, "trials: %d\n", r.trials)
	fmt.Fprintf(w, "predicts completed during trials: %d\n", r.completed)
	fmt.Fprintf(w, "captures durable at a kill: %d\n", len(r.acknowledged))
	fmt.Fprintf(w, "inputs in the app at the end: %d\n", len(r.delivered))
	fmt.Fprintf(w, "enqueued before the kills (lower bound): %d\n", r.enqueuedMin)
	fmt.Fprintf(w, "restart to first served predict: min %s, median %s, max %s\n",
		restarts[0].Round(time.Millisecond), median.Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
	fmt.Fprintf(w, "records lost: %d\n", len(lost))

	var errs []error
	if len(lost) > 0 {
		errs = append(errs, fmt.Errorf("%d durable captures never reached the app, first %s", len(lost), lost[0]))
	}
	if len(r.delivered) < r.enqueuedMin {
		errs = append(errs, fmt.Errorf("the app holds %d inputs, fewer than the %d the nodes counted as enqueued", len(r.delivered), r.enqueuedMin))
	}
	return errors.Join(errs...)
}
