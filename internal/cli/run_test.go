package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the logger's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRun_DrainsOnCancel starts `collectord run` on random ports and cancels
// its context, as SIGTERM does in main: Main must drain and return nil.
func TestRun_DrainsOnCancel(t *testing.T) {
	t.Setenv("COLLECTORD_API", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"run",
			"--data-dir", t.TempDir(),
			"--extproc-listen", "127.0.0.1:0",
			"--api-listen", "127.0.0.1:0",
			"--grpc-listen", "127.0.0.1:0",
			"--admin-listen", "127.0.0.1:0",
		}, &bytes.Buffer{}, &stderr)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "collectord running") {
		select {
		case err := <-done:
			t.Fatalf("run ended before it was running: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not start within 30 s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel, want nil\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not drain within 30 s of cancel:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Errorf("run logs lack the stop line:\n%s", stderr.String())
	}
}

// TestRun_ManyPodModesNeedSharedParts checks that sidecar, ingest and api
// refuse to start on the embedded store or queue, which they cannot share.
func TestRun_ManyPodModesNeedSharedParts(t *testing.T) {
	cases := []struct {
		mode string
		args []string
		want string
	}{
		{"sidecar", nil, "--postgres-url"},
		{"api", nil, "--postgres-url"},
		{"ingest", []string{"--postgres-url", "postgres://127.0.0.1:5432/test"}, "--nats-url"},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Main(context.Background(), append([]string{tc.mode, "--data-dir", t.TempDir()}, tc.args...), &bytes.Buffer{}, &stderr)
			if err == nil {
				t.Fatal("started without the shared parts")
			}
			if ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", ExitCode(err))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}
