package ingest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of QueueConfig.
const (
	DefaultPrefix             = "collectord"
	DefaultQueueMaxBytes      = 1 << 30
	DefaultDeadLetterMaxBytes = 256 << 20
	DefaultDuplicateWindow    = 2 * time.Minute
	DefaultConsumerName       = "collectord-ingest"
	DefaultAckWait            = 15 * time.Second
	DefaultMaxAckPending      = 10000
)

// Headers of dead-letter messages. The message data is the record exactly as
// it was queued.
const (
	HeaderReason   = "Collectord-Reason"
	HeaderAttempts = "Collectord-Attempts"
	HeaderFailedAt = "Collectord-Failed-At"
)

// QueueConfig configures the capture stream, its consumer and the
// dead-letter stream.
type QueueConfig struct {
	// Prefix starts every subject and, upper-cased, every stream name, so
	// several deployments can share a cluster. Letters, digits, '-' and '_'.
	// Default "collectord".
	Prefix string
	// MaxBytes caps the capture stream. A full stream rejects new records
	// (discard new) rather than evicting accepted ones. Default 1 GiB.
	MaxBytes int64
	// MaxMsgSize caps one record in bytes; 0 leaves the server's limit.
	MaxMsgSize int32
	// DuplicateWindow is how long JetStream remembers record IDs to drop
	// republished records. Default 2m.
	DuplicateWindow time.Duration
	// Replicas of both streams; 3 on a cluster survives the loss of a node.
	// Default 1.
	Replicas int
	// DeadLetterMaxBytes caps the dead-letter stream, which also rejects new
	// messages when full; records then stay in the capture stream. Default
	// 256 MiB.
	DeadLetterMaxBytes int64

	// ConsumerName is the durable pull consumer shared by all workers.
	// Default "collectord-ingest".
	ConsumerName string
	// AckWait is how long a fetched record may stay unacknowledged before
	// JetStream delivers it again. Workers extend it every AckWait/2 while a
	// post is in flight, so it bounds only how long the records of a
	// crashed worker wait before another delivery. Default 15s. With
	// BackOff set, JetStream uses BackOff[0] instead.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one record; the worker dead-letters a
	// record at its last delivery instead of letting JetStream drop it.
	// Default -1: unlimited.
	//
	// NOTE: a record whose last delivery ends in an ack timeout (a worker
	// stopped mid-batch) is never delivered again and stays in the stream
	// without reaching the dead-letter stream.
	MaxDeliver int
	// BackOff spaces redeliveries after an ack timeout (a worker that
	// stopped without acknowledging). Explicit retries use their own delay.
	BackOff []time.Duration
	// MaxAckPending bounds records delivered but not yet acknowledged,
	// including those waiting for a retry. Default 10000.
	//
	// NOTE: all destinations share this one consumer, so one app that keeps
	// failing with retryable errors can fill MaxAckPending with its delayed
	// records and stall delivery to every other app until they are retried.
	MaxAckPending int

	// Logger receives the report of records the server lost, found when
	// the queue is opened. Default: discard.
	Logger *slog.Logger
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c *QueueConfig) setDefaults() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !prefixPattern.MatchString(c.Prefix) {
		return fmt.Errorf("queue prefix %q is invalid: use letters, digits, '-' and '_'", c.Prefix)
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultQueueMaxBytes
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DeadLetterMaxBytes <= 0 {
		c.DeadLetterMaxBytes = DefaultDeadLetterMaxBytes
	}
	if c.ConsumerName == "" {
		c.ConsumerName = DefaultConsumerName
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = -1
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Queue is the capture stream, its durable pull consumer and the dead-letter
// stream on one NATS connection.
type Queue struct {
	cfg      QueueConfig
	nc       *nats.Conn
	js       jetstream.JetStream
	consumer jetstream.Consumer
}

// OpenQueue creates or updates the streams and the consumer described by
// cfg. It is safe to call from several processes at once.
func OpenQueue(ctx context.Context, nc *nats.Conn, cfg QueueConfig) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("queue: open JetStream: %w", err)
	}
	q := &Queue{cfg: cfg, nc: nc, js: js}

	captures, err := js.CreateOrUpdateStream(ctx, q.captureStreamConfig())
	if err != nil {
		return nil, fmt.Errorf("queue: create stream %s: %w", q.StreamName(), err)
	}
	q.reportLost(captures.CachedInfo())
	if _, err := js.CreateOrUpdateStream(ctx, q.deadLetterStreamConfig()); err != nil {
		return nil, fmt.Errorf("queue: create stream %s: %w", q.DeadLetterStreamName(), err)
	}

	consumer, err := js.CreateOrUpdateConsumer(ctx, q.StreamName(), q.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("queue: create consumer %s on %s: %w", cfg.ConsumerName, q.StreamName(), err)
	}
	q.consumer = consumer
	return q, nil
}

func (q *Queue) captureStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:     q.StreamName(),
		Subjects: []string{q.cfg.Prefix + ".captures.>"},
		Storage:  jetstream.FileStorage,
		// A work queue removes a record once acknowledged, so MaxBytes
		// bounds the backlog, not the history.
		Retention:  jetstream.WorkQueuePolicy,
		Discard:    jetstream.DiscardNew,
		MaxBytes:   q.cfg.MaxBytes,
		MaxMsgSize: q.cfg.MaxMsgSize,
		Duplicates: q.cfg.DuplicateWindow,
		Replicas:   q.cfg.Replicas,
	}
}

func (q *Queue) deadLetterStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       q.DeadLetterStreamName(),
		Subjects:   []string{q.cfg.Prefix + ".deadletter.>"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardNew,
		MaxBytes:   q.cfg.DeadLetterMaxBytes,
		Duplicates: q.cfg.DuplicateWindow,
		Replicas:   q.cfg.Replicas,
	}
}

func (q *Queue) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       q.cfg.ConsumerName,
		FilterSubject: q.cfg.Prefix + ".captures.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       q.cfg.AckWait,
		MaxDeliver:    q.cfg.MaxDeliver,
		BackOff:       q.cfg.BackOff,
		MaxAckPending: q.cfg.MaxAckPending,
	}
}

// reportLost logs the records the server found damaged or missing when it
// recovered the capture stream's files, such as after a crash that cut a
// write short. The server has already dropped them, so they can be neither
// delivered nor dead-lettered; collectord_queue_lost_records counts them.
func (q *Queue) reportLost(info *jetstream.StreamInfo) {
	lost := info.State.Lost
	if lost == nil || len(lost.Msgs) == 0 {
		return
	}
	first := lost.Msgs[:min(len(lost.Msgs), 10)]
	q.cfg.Logger.Error("capture stream lost records while recovering its files; they cannot be delivered",
		"stream", q.StreamName(), "lost_records", len(lost.Msgs), "lost_bytes", lost.Bytes, "first_sequences", first)
}

// Lost returns how many records of the capture stream the server reported
// lost while recovering its files.
func (q *Queue) Lost(ctx context.Context) (uint64, error) {
	s, err := q.js.Stream(ctx, q.StreamName())
	if err != nil {
		return 0, fmt.Errorf("queue: stream %s: %w", q.StreamName(), err)
	}
	if lost := s.CachedInfo().State.Lost; lost != nil {
		return uint64(len(lost.Msgs)), nil
	}
	return 0, nil
}

// StreamName returns the capture stream's name, e.g. COLLECTORD_CAPTURES.
func (q *Queue) StreamName() string {
	return strings.ToUpper(q.cfg.Prefix) + "_CAPTURES"
}

// DeadLetterStreamName returns the dead-letter stream's name, e.g.
// COLLECTORD_DEADLETTER.
func (q *Queue) DeadLetterStreamName() string {
	return strings.ToUpper(q.cfg.Prefix) + "_DEADLETTER"
}

// Subject returns the capture subject of a destination app.
func (q *Queue) Subject(userID, appID string) string {
	return q.cfg.Prefix + ".captures." + SubjectToken(userID) + "." + SubjectToken(appID)
}

// DeadLetterSubject returns the dead-letter subject of a destination app.
func (q *Queue) DeadLetterSubject(userID, appID string) string {
	return q.cfg.Prefix + ".deadletter." + SubjectToken(userID) + "." + SubjectToken(appID)
}

// JetStream returns the JetStream context the queue uses.
func (q *Queue) JetStream() jetstream.JetStream { return q.js }

// Depth returns the records waiting in the consumer: not yet delivered plus
// delivered and not yet acknowledged.
func (q *Queue) Depth(ctx context.Context) (uint64, error) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("queue: consumer info: %w", err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// DeleteStreams removes both streams with their records; tests against a
// shared cluster use it to clean up.
func (q *Queue) DeleteStreams(ctx context.Context) error {
	errCapture := q.js.DeleteStream(ctx, q.StreamName())
	errDead := q.js.DeleteStream(ctx, q.DeadLetterStreamName())
	return errors.Join(errCapture, errDead)
}

// SubjectToken encodes an ID as one subject token. IDs made only of letters,
// digits, '-' and '_' are kept as they are. Any other ID, including the
// empty one, becomes '~' followed by its unpadded base64url form. Because no
// kept ID contains '~', two different IDs never share a token.
func SubjectToken(id string) string {
	if id != "" && plainToken(id) {
		return id
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func plainToken(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}
