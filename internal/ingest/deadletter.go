package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/capturepb"
)

// AttachQueue opens the streams of an existing queue without creating or
// changing them or the consumer, for tools that inspect a queue another
// process configured. Depth is not available on an attached queue.
func AttachQueue(ctx context.Context, nc *nats.Conn, cfg QueueConfig) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("queue: open JetStream: %w", err)
	}
	q := &Queue{cfg: cfg, nc: nc, js: js}
	for _, name := range []string{q.StreamName(), q.DeadLetterStreamName()} {
		if _, err := js.Stream(ctx, name); err != nil {
			return nil, fmt.Errorf("queue: stream %s: %w; check the data directory or the prefix", name, err)
		}
	}
	return q, nil
}

// DeadLetter is one record of the dead-letter stream.
type DeadLetter struct {
	// Sequence is the message's sequence in the dead-letter stream.
	Sequence uint64 `json:"sequence"`
	// RecordID is the capture record's ID, which is also the ID of the
	// input it becomes at the destination.
	RecordID    string `json:"id"`
	UserID      string `json:"user_id"`
	AppID       string `json:"app_id"`
	CollectorID string `json:"collector_id"`
	// Reason is the bounded failure reason, such as "bad_request".
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
	// Size is the record's encoded size in bytes.
	Size int `json:"size"`

	subject string
	data    []byte
	// records is the HeaderRecords of a packed message dead-lettered whole.
	records string
}

// ListDeadLetters returns every message of the dead-letter stream in
// stream order.
func (q *Queue) ListDeadLetters(ctx context.Context) ([]DeadLetter, error) {
	stream, err := q.js.Stream(ctx, q.DeadLetterStreamName())
	if err != nil {
		return nil, fmt.Errorf("dead letters: stream %s: %w", q.DeadLetterStreamName(), err)
	}
	state := stream.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}

	var out []DeadLetter
	for seq := state.FirstSeq; seq <= state.LastSeq && uint64(len(out)) < state.Msgs; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dead letters: read sequence %d: %w", seq, err)
		}
		out = append(out, q.parseDeadLetter(msg))
	}
	return out, nil
}

// parseDeadLetter reads a dead letter's headers and, when the data is a
// record, its destination. A record that cannot be decoded keeps the
// destination its subject names.
func (q *Queue) parseDeadLetter(msg *jetstream.RawStreamMsg) DeadLetter {
	d := DeadLetter{
		Sequence: msg.Sequence,
		RecordID: msg.Header.Get(jetstream.MsgIDHeader),
		Reason:   msg.Header.Get(HeaderReason),
		Size:     len(msg.Data),
		subject:  msg.Subject,
		data:     msg.Data,
		records:  msg.Header.Get(HeaderRecords),
	}
	d.Attempts, _ = strconv.Atoi(msg.Header.Get(HeaderAttempts))
	d.FailedAt, _ = time.Parse(time.RFC3339Nano, msg.Header.Get(HeaderFailedAt))

	// A packed message that could not be split is dead-lettered whole; its
	// first record, if any decodes, names the destination.
	data := msg.Data
	if parts, err := messageRecords(msg.Header, msg.Data); err == nil {
		data = parts[0]
	}
	rec := &capturepb.Record{}
	if err := proto.Unmarshal(data, rec); err == nil {
		d.UserID, d.AppID, d.CollectorID = rec.GetUserId(), rec.GetAppId(), rec.GetCollectorId()
		if d.RecordID == "" {
			d.RecordID = rec.GetId()
		}
	}
	return d
}

// ReplayResult counts what ReplayDeadLetters did.
type ReplayResult struct {
	// Replayed records went back to the capture stream and left the
	// dead-letter stream.
	Replayed int
	// Duplicates were dropped by the capture stream because a record with
	// the same ID was stored within the duplicate window; they stay in the
	// dead-letter stream, to be replayed once the window has passed.
	Duplicates int
}

// ReplayDeadLetters publishes dead letters back to the capture stream with
// their record IDs and removes each one the capture stream stored. ids
// selects records by ID; empty selects all.
func (q *Queue) ReplayDeadLetters(ctx context.Context, ids []string) (ReplayResult, error) {
	var res ReplayResult
	letters, err := q.selectDeadLetters(ctx, ids)
	if err != nil {
		return res, err
	}
	stream, err := q.js.Stream(ctx, q.DeadLetterStreamName())
	if err != nil {
		return res, fmt.Errorf("dead letters: stream %s: %w", q.DeadLetterStreamName(), err)
	}

	for _, d := range letters {
		msg := nats.NewMsg(q.captureSubjectOf(d.subject))
		msg.Data = d.data
		if d.records != "" {
			msg.Header.Set(HeaderRecords, d.records)
		}
		var opts []jetstream.PublishOpt
		if d.RecordID != "" {
			opts = append(opts, jetstream.WithMsgID(d.RecordID))
		}
		ack, err := q.js.PublishMsg(ctx, msg, opts...)
		if err != nil {
			return res, fmt.Errorf("dead letters: replay %s: %w", d.RecordID, err)
		}
		if ack.Duplicate {
			res.Duplicates++
			continue
		}
		if err := stream.DeleteMsg(ctx, d.Sequence); err != nil {
			return res, fmt.Errorf("dead letters: remove replayed %s (sequence %d): %w", d.RecordID, d.Sequence, err)
		}
		res.Replayed++
	}
	return res, nil
}

// PurgeDeadLetters deletes dead letters and returns how many. ids selects
// records by ID; empty deletes them all.
func (q *Queue) PurgeDeadLetters(ctx context.Context, ids []string) (int, error) {
	stream, err := q.js.Stream(ctx, q.DeadLetterStreamName())
	if err != nil {
		return 0, fmt.Errorf("dead letters: stream %s: %w", q.DeadLetterStreamName(), err)
	}
	if len(ids) == 0 {
		n := stream.CachedInfo().State.Msgs
		if err := stream.Purge(ctx); err != nil {
			return 0, fmt.Errorf("dead letters: purge %s: %w", q.DeadLetterStreamName(), err)
		}
		return int(n), nil
	}

	letters, err := q.selectDeadLetters(ctx, ids)
	if err != nil {
		return 0, err
	}
	for i, d := range letters {
		if err := stream.DeleteMsg(ctx, d.Sequence); err != nil {
			return i, fmt.Errorf("dead letters: delete %s (sequence %d): %w", d.RecordID, d.Sequence, err)
		}
	}
	return len(letters), nil
}

// selectDeadLetters lists the dead letters whose record ID is in ids, or
// all of them when ids is empty. An ID that matches nothing is an error, so
// a typo does not pass silently.
func (q *Queue) selectDeadLetters(ctx context.Context, ids []string) ([]DeadLetter, error) {
	all, err := q.ListDeadLetters(ctx)
	if err != nil || len(ids) == 0 {
		return all, err
	}

	want := map[string]bool{}
	for _, id := range ids {
		want[id] = false
	}
	var out []DeadLetter
	for _, d := range all {
		if _, ok := want[d.RecordID]; ok {
			want[d.RecordID] = true
			out = append(out, d)
		}
	}
	var missing []string
	for _, id := range ids {
		if !want[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("dead letters: no dead letter has the ID %s; see the list command", strings.Join(missing, ", "))
	}
	return out, nil
}

// deadLetterSubjectOf maps a capture subject to the dead-letter subject of
// the same destination.
func (q *Queue) deadLetterSubjectOf(captureSubject string) string {
	rest, _ := strings.CutPrefix(captureSubject, q.cfg.Prefix+".captures.")
	return q.cfg.Prefix + ".deadletter." + rest
}

// captureSubjectOf maps a dead-letter subject to the capture subject of the
// same destination.
func (q *Queue) captureSubjectOf(deadSubject string) string {
	rest, _ := strings.CutPrefix(deadSubject, q.cfg.Prefix+".deadletter.")
	return q.cfg.Prefix + ".captures." + rest
}
