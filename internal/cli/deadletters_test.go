package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/cli"
	"github.com/collectord/collectord/internal/ingest"
	"github.com/collectord/collectord/internal/pb/capturepb"
)

// seedDeadLetters leaves a stopped node's data directory whose dead-letter
// stream holds the given record IDs, stored as the workers store them.
func seedDeadLetters(t *testing.T, ids ...string) string {
	t.Helper()
	dataDir := t.TempDir()
	e, err := ingest.OpenEmbedded(ingest.EmbeddedConfig{Dir: filepath.Join(dataDir, "jetstream"), MaxStoreBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	// A short duplicate window lets the replay test pass it.
	q, err := ingest.OpenQueue(ctx, e.Conn(), ingest.QueueConfig{MaxBytes: 8 << 20, DeadLetterMaxBytes: 8 << 20, DuplicateWindow: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		rec := &capturepb.Record{Id: id, UserId: "u1", AppId: "a1", CollectorId: "c1"}
		data, err := proto.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(q.DeadLetterSubject("u1", "a1"))
		msg.Data = data
		msg.Header.Set(ingest.HeaderReason, ingest.ReasonBadRequest)
		msg.Header.Set(ingest.HeaderAttempts, "2")
		msg.Header.Set(ingest.HeaderFailedAt, time.Date(2026, 3, 4, 5, 6, i, 0, time.UTC).Format(time.RFC3339Nano))
		if _, err := q.JetStream().PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir
}

func runDeadLettersCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Main(context.Background(), args, &stdout, &stderr)
	if err != nil {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func TestDeadLetters_ListTable(t *testing.T) {
	dataDir := seedDeadLetters(t, "rec-1", "rec-2")

	out, err := runDeadLettersCLI(t, "deadletters", "list", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("deadletters list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("list printed %d lines, want a header and 2 rows:\n%s", len(lines), out)
	}
	for _, col := range []string{"ID", "DESTINATION", "REASON", "ATTEMPTS", "FAILED AT"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header %q lacks column %s", lines[0], col)
		}
	}
	for _, want := range []string{"rec-1", "u1/a1/c1", ingest.ReasonBadRequest, "2", "2026-03-04T05:06:00Z"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
}

func TestDeadLetters_ListJSON(t *testing.T) {
	dataDir := seedDeadLetters(t, "rec-1", "rec-2", "rec-3")

	out, err := runDeadLettersCLI(t, "deadletters", "list", "--data-dir", dataDir, "-o", "json", "--id", "rec-2")
	if err != nil {
		t.Fatalf("deadletters list -o json: %v", err)
	}
	var got struct {
		DeadLetters []struct {
			ID          string `json:"id"`
			AppID       string `json:"app_id"`
			CollectorID string `json:"collector_id"`
			Reason      string `json:"reason"`
			Attempts    int    `json:"attempts"`
			FailedAt    string `json:"failed_at"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(got.DeadLetters) != 1 {
		t.Fatalf("listed %d, want only rec-2:\n%s", len(got.DeadLetters), out)
	}
	d := got.DeadLetters[0]
	if d.ID != "rec-2" || d.AppID != "a1" || d.CollectorID != "c1" || d.Reason != ingest.ReasonBadRequest || d.Attempts != 2 || d.FailedAt == "" {
		t.Errorf("dead letter = %+v, want rec-2 of a1/c1, bad_request, 2 attempts, a failure time", d)
	}
}

func TestDeadLetters_ReplayAndPurge(t *testing.T) {
	dataDir := seedDeadLetters(t, "rec-1", "rec-2", "rec-3")
	time.Sleep(300 * time.Millisecond) // past the duplicate window

	out, err := runDeadLettersCLI(t, "deadletters", "replay", "--data-dir", dataDir, "--id", "rec-1,rec-3")
	if err != nil {
		t.Fatalf("deadletters replay: %v", err)
	}
	if !strings.Contains(out, "replayed 2") {
		t.Errorf("replay printed %q, want replayed 2", out)
	}

	// The replayed records are on the capture stream with their own IDs.
	e, err := ingest.OpenEmbedded(ingest.EmbeddedConfig{Dir: filepath.Join(dataDir, "jetstream"), MaxStoreBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	q, err := ingest.AttachQueue(context.Background(), e.Conn(), ingest.QueueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := q.JetStream().Stream(context.Background(), q.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	var requeued []string
	for seq := uint64(1); seq <= 2; seq++ {
		msg, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("capture stream sequence %d: %v", seq, err)
		}
		requeued = append(requeued, msg.Header.Get(jetstream.MsgIDHeader))
	}
	if strings.Join(requeued, ",") != "rec-1,rec-3" {
		t.Errorf("capture stream holds IDs %v, want rec-1 and rec-3", requeued)
	}
	_ = e.Close()

	out, err = runDeadLettersCLI(t, "deadletters", "list", "--data-dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "rec-1") || !strings.Contains(out, "rec-2") {
		t.Errorf("after replay the list is:\n%s\nwant only rec-2", out)
	}

	out, err = runDeadLettersCLI(t, "deadletters", "purge", "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "purged 1") {
		t.Fatalf("deadletters purge = %q, %v; want purged 1", out, err)
	}
	out, _ = runDeadLettersCLI(t, "deadletters", "list", "--data-dir", dataDir)
	if strings.Contains(out, "rec-2") {
		t.Errorf("after purge the list still shows rec-2:\n%s", out)
	}
}

func TestDeadLetters_Errors(t *testing.T) {
	if _, err := runDeadLettersCLI(t, "deadletters", "list", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no JetStream store") {
		t.Errorf("list on an empty directory: err = %v, want one naming the missing store", err)
	}
	dataDir := seedDeadLetters(t, "rec-1")
	if _, err := runDeadLettersCLI(t, "deadletters", "purge", "--data-dir", dataDir, "--id", "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("purge of an unknown ID: err = %v, want one naming it", err)
	}
	if _, err := runDeadLettersCLI(t, "deadletters", "list", "--data-dir", dataDir, "-o", "yaml"); cli.ExitCode(err) != 2 {
		t.Errorf("-o yaml: err = %v, want a usage error", err)
	}
	if _, err := runDeadLettersCLI(t, "deadletters", "frobnicate"); cli.ExitCode(err) != 2 {
		t.Errorf("unknown subcommand: err = %v, want a usage error", err)
	}
}
