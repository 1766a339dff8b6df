// Command collectord-soak checks that a collectord node loses no accepted
// capture when it is killed. It builds collectord and the demo model and
// runs `collectord run` as a child process with the demo model as
// upstream. In each trial it sends predicts through the interceptor,
// SIGKILLs the child at a random point and restarts it on the same data
// directory. At the
// end it checks that every capture the node had accepted reached the local
// app, and prints the trials, the records lost and the time from each
// restart to the first served predict.
//
// A capture counts as accepted once it is durable, which is what the node
// promises to deliver: after each kill, with the child stopped, the soak
// reads the records the capture stream holds and the inputs the app holds.
// Both sets must be in the app at the end. Predicts whose capture was still
// in memory (the engine's queue or the publisher's hand-off) are not
// promised and are reported apart. As a second check, the enqueued counter
// scraped from /metrics shortly before each kill is a lower bound of the
// records that process stored, so the app must end with at least their sum.
//
// Usage:
//
//	go run ./cmd/collectord-soak --trials 3
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "collectord-soak:", err)
		os.Exit(1)
	}
}
